"""Tests for calamp.bayes.store: round trip, handles, overwrite refusal, atomic writes."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from calamp.bayes import store as store_mod
from calamp.bayes.store import DrawHandle, DrawStore, load_draw


def _draws(s: int, p: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(s, p)).astype(np.float32)


def test_round_trip_and_meta(tmp_path):
    st = DrawStore(tmp_path / "draws")
    assert st.networks() == []
    d0, d3 = _draws(5, 7, 0), _draws(2, 7, 1)
    meta = {
        "method": "adam_mcmc",
        "sigma": 0.1,
        "seed": np.int64(3),
        "step": 50_000,
        "betas": np.array([0.9, 0.99]),
        "model": {"layers": [32, 32, 32]},
    }
    st.save(3, d3, {"method": "vi"})
    st.save(0, d0, meta)
    assert st.networks() == [0, 3]
    got, got_meta = st.load(0)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, d0)  # float32 in, float32 out: bit-exact
    assert got_meta == {
        "method": "adam_mcmc",
        "sigma": 0.1,
        "seed": 3,
        "step": 50_000,
        "betas": [0.9, 0.99],
        "model": {"layers": [32, 32, 32]},
    }
    # float64 input is stored as float32 (the documented format)
    st.save(1, d0.astype(np.float64) + 1e-12, {})
    assert st.load(1)[0].dtype == np.float32
    np.testing.assert_array_equal(st.load(1)[0], d0)
    # the JSON is plain, human-readable and carries the shape
    rec = json.loads((tmp_path / "draws" / "network_0000.json").read_text())
    assert rec["shape"] == [5, 7] and rec["network"] == 0


def test_handles_are_picklable_and_load_single_draws(tmp_path):
    st = DrawStore(tmp_path)
    d0, d2 = _draws(3, 4, 0), _draws(2, 4, 1)
    st.save(0, d0, {})
    st.save(2, d2, {})
    hs = st.handles()
    assert [(h.network, h.index) for h in hs] == [(0, 0), (0, 1), (0, 2), (2, 0), (2, 1)]
    h = pickle.loads(pickle.dumps(hs[4]))
    assert h == hs[4] and isinstance(h, DrawHandle)
    np.testing.assert_array_equal(load_draw(h), d2[1])
    np.testing.assert_array_equal(np.stack([load_draw(x) for x in hs[:3]]), d0)
    with pytest.raises(IndexError, match="index"):
        load_draw(DrawHandle(path=hs[0].path, network=0, index=3))
    with pytest.raises(AttributeError):
        h.index = 0  # frozen


def test_overwrite_refused_unless_asked(tmp_path):
    st = DrawStore(tmp_path)
    st.save(0, _draws(2, 3, 0), {"v": 1})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        st.save(0, _draws(4, 3, 1), {"v": 2})
    np.testing.assert_array_equal(st.load(0)[0], _draws(2, 3, 0))
    st.save(0, _draws(4, 3, 1), {"v": 2}, overwrite=True)
    draws, meta = st.load(0)
    np.testing.assert_array_equal(draws, _draws(4, 3, 1))
    assert meta == {"v": 2}


@pytest.mark.parametrize(
    ("network", "draws", "meta", "match"),
    [
        (-1, np.zeros((2, 3)), {}, "network"),
        (True, np.zeros((2, 3)), {}, "network"),
        (1.5, np.zeros((2, 3)), {}, "network"),
        (0, np.zeros(3), {}, "draws"),
        (0, np.full((2, 3), np.nan), {}, "draws"),
        (0, np.zeros((2, 3)), {"f": object()}, "meta"),
        (0, np.zeros((2, 3)), [1], "meta"),
    ],
)
def test_invalid_input_writes_nothing(tmp_path, network, draws, meta, match):
    st = DrawStore(tmp_path)
    with pytest.raises(ValueError, match=match):
        st.save(network, draws, meta)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_meta_is_stored_as_null(tmp_path):
    """JSON has no NaN: the package's one converter writes null (as in results.json)."""
    st = DrawStore(tmp_path)
    st.save(0, _draws(2, 3, 0), {"x": float("nan"), "y": np.float32(2.5)})
    assert st.load(0)[1] == {"x": None, "y": 2.5}


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    st = DrawStore(tmp_path)
    st.save(1, _draws(2, 3, 0), {})

    def broken_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        st.save(0, _draws(2, 3, 0), {})
    # No network_0000 file, no leftover temp file; network 1 untouched.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["network_0001.json", "network_0001.npz"]
    assert st.networks() == [1]
    monkeypatch.undo()
    np.testing.assert_array_equal(st.load(1)[0], _draws(2, 3, 0))


def test_missing_network_is_a_clear_error(tmp_path):
    st = DrawStore(tmp_path)
    st.save(0, _draws(1, 2, 0), {})
    with pytest.raises(FileNotFoundError, match=r"network 5 .*networks: \[0\]"):
        st.load(5)
