"""Known answers of calamp.observables on hand-made images."""

from __future__ import annotations

import numpy as np
import pytest

from calamp.observables import OBSERVABLES, observable_info, shower_observables

NAMES = {
    "e_total",
    "e_ratio",
    "n_hit",
    "e_max",
    "e_max_frac",
    "x_centroid",
    "y_centroid",
    "x_width",
    "y_width",
    "f_core3x3",
}


def _img(cells: dict[tuple[int, int], float], n: int = 10) -> np.ndarray:
    e = np.zeros((1, n, n))
    for (iy, ix), v in cells.items():
        e[0, iy, ix] = v
    return e


def test_single_hot_cell() -> None:
    obs = shower_observables(_img({(2, 7): 10.0}), incident_energy=20.0, cell_size=5.0)
    assert set(obs) == NAMES
    # cell centres at (i - 4.5) * 5 mm
    expected = {
        "e_total": 10.0,
        "e_ratio": 0.5,
        "n_hit": 1.0,
        "e_max": 10.0,
        "e_max_frac": 1.0,
        "x_centroid": 12.5,
        "y_centroid": -12.5,
        "x_width": 0.0,
        "y_width": 0.0,
        "f_core3x3": 1.0,
    }
    for k, v in expected.items():
        assert obs[k].shape == (1,)
        np.testing.assert_allclose(obs[k][0], v, atol=1e-12, err_msg=k)


def test_symmetric_blob_and_outlier() -> None:
    # 2x2 block around the grid centre, 1 GeV each, plus 0.5 GeV in the corner (0, 0)
    cells = {(4, 4): 1.0, (4, 5): 1.0, (5, 4): 1.0, (5, 5): 1.0}
    blob = shower_observables(_img(cells))
    np.testing.assert_allclose(blob["x_centroid"], 0.0, atol=1e-12)
    np.testing.assert_allclose(blob["y_centroid"], 0.0, atol=1e-12)
    np.testing.assert_allclose(blob["x_width"], 2.5)  # half a cell: x = ±2.5 mm
    np.testing.assert_allclose(blob["y_width"], 2.5)
    np.testing.assert_allclose(blob["e_max_frac"], 0.25)
    np.testing.assert_allclose(blob["f_core3x3"], 1.0)
    assert blob["n_hit"][0] == 4

    obs = shower_observables(_img({**cells, (0, 0): 0.5}))
    np.testing.assert_allclose(obs["e_total"], 4.5)
    np.testing.assert_allclose(obs["f_core3x3"], 4.0 / 4.5)
    # centroid pulled to the corner (-22.5, -22.5) mm with weight 0.5 / 4.5
    np.testing.assert_allclose(obs["x_centroid"], -22.5 * 0.5 / 4.5)
    x2 = (4 * 2.5**2 + 0.5 * 22.5**2) / 4.5
    np.testing.assert_allclose(obs["x_width"], np.sqrt(x2 - (22.5 * 0.5 / 4.5) ** 2))


def test_core_window_is_shifted_inside_at_border() -> None:
    # hottest cell in the corner: window = rows 0..2, cols 0..2; (3, 3) is outside
    obs = shower_observables(_img({(0, 0): 5.0, (2, 2): 1.0, (3, 3): 4.0}))
    np.testing.assert_allclose(obs["f_core3x3"], 6.0 / 10.0)


def test_empty_image_is_defined() -> None:
    obs = shower_observables(np.zeros((3, 10, 10)), incident_energy=np.full(3, 50.0))
    for k, v in obs.items():
        assert v.shape == (3,)
        assert np.all(v == 0.0), k


def test_threshold_is_strict_and_cells() -> None:
    e = _img({(1, 1): 1e-3, (1, 2): 2e-3, (5, 5): 1.0})
    obs = shower_observables(e, threshold=1e-3, cells=True)
    assert obs["n_hit"][0] == 2
    assert obs["cell_1_2"][0] == 2e-3 and obs["cell_5_5"][0] == 1.0
    assert sum(k.startswith("cell_") for k in obs) == 100
    assert "e_ratio" not in obs


def test_batch_matches_direct_formulas() -> None:
    rng = np.random.default_rng(3)
    e = rng.exponential(1.0, size=(50, 10, 10))
    obs = shower_observables(e, cell_size=4.0)
    x = (np.arange(10) - 4.5) * 4.0
    w = e.sum(axis=1)  # (N, nx)
    xc = (w * x).sum(1) / w.sum(1)
    xw = np.sqrt((w * (x - xc[:, None]) ** 2).sum(1) / w.sum(1))
    np.testing.assert_allclose(obs["x_centroid"], xc, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(obs["x_width"], xw, rtol=1e-10)
    for n in range(5):  # 3x3 around the hottest cell, clamped inside
        iy, ix = np.unravel_index(np.argmax(e[n]), (10, 10))
        iy, ix = np.clip(iy, 1, 8), np.clip(ix, 1, 8)
        core = e[n, iy - 1 : iy + 2, ix - 1 : ix + 2].sum() / e[n].sum()
        np.testing.assert_allclose(obs["f_core3x3"][n], core)


def test_registry_and_errors() -> None:
    assert NAMES <= set(OBSERVABLES)
    assert OBSERVABLES["n_hit"].discrete and not OBSERVABLES["e_total"].discrete
    assert observable_info("cell_3_4").unit == "GeV"
    with pytest.raises(KeyError, match="unknown observable"):
        observable_info("nope")
    with pytest.raises(ValueError, match="energy"):
        shower_observables(np.zeros((10, 10)))
    with pytest.raises(ValueError, match="incident_energy"):
        shower_observables(np.zeros((1, 10, 10)), incident_energy=0.0)
