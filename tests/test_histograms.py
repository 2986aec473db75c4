"""Known answers of calamp.histograms: quantile cells have probability 1/B, fast fill equals the
searchsorted reference, accumulators merge exactly."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy import stats as sps

from calamp.histograms import (
    DrawHistograms,
    HistogramSet,
    QuantileBinning,
    make_hist,
    quantile_binning,
    regular_binning,
    to_hist,
    to_polar,
)


def _ring(n: int, rng: np.random.Generator) -> np.ndarray:
    """Ring toy (PHYSICS.md): r = 4 + Gamma(2, 0.5), phi ~ U(0, 2 pi), Cartesian (n, 2)."""
    r = 4.0 + rng.gamma(2.0, 0.5, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    return np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)


def _chi2_uniform_ok(counts: np.ndarray, n_truth: int) -> bool:
    """Counts of a fresh sample vs n/B with B-1 dof.

    The edges come from a truth sample of size N, so the true cell probabilities scatter by
    Var(p_j) ≈ p_j/N around 1/B; this inflates chi2 by (1 + n/N). Accept within the two-sided
    99.9% band of the inflated chi2 (false-alarm rate 0.2% per call at fixed seed: deterministic).
    """
    n, b = counts.sum(), counts.size
    chi2 = np.sum((counts - n / b) ** 2 / (n / b))
    infl = 1.0 + n / n_truth
    lo, hi = sps.chi2.ppf([0.001, 0.999], b - 1)
    return bool(lo / infl <= chi2 <= hi * infl)


def test_quantile_cells_have_probability_one_over_b_1d() -> None:
    rng = np.random.default_rng(1)
    n_truth = 1_000_000
    b = quantile_binning(rng.normal(size=n_truth), 50)
    assert b.n_bins == 50 and b.shape == (50,)
    assert _chi2_uniform_ok(b.counts(rng.normal(size=100_000)), n_truth)
    # a shifted sample must fail the same test (power check)
    assert not _chi2_uniform_ok(b.counts(rng.normal(0.05, 1.0, size=100_000)), n_truth)


def test_ring_polar_grid_cells_have_probability_one_over_b() -> None:
    rng = np.random.default_rng(2)
    n_truth = 1_000_000
    b = quantile_binning(to_polar(_ring(n_truth, rng)), 20, names=("r", "phi"))
    assert b.shape == (20, 20) and b.n_bins == 400 and b.names == ("r", "phi")
    counts = b.counts(to_polar(_ring(200_000, rng)))
    assert counts.sum() == 200_000
    assert _chi2_uniform_ok(counts, n_truth)
    np.testing.assert_allclose(b.truth_fractions(to_polar(_ring(10_000, rng))).sum(), 1.0)


def test_discrete_observable_dedups_edges_and_truth_fractions() -> None:
    rng = np.random.default_rng(3)
    truth = rng.poisson(3.0, size=200_000).astype(float)
    b = quantile_binning(truth, 20)
    assert b.n_bins < 20  # colliding edges merged
    assert np.all(np.diff(b.edges[0]) > 0)
    p = b.truth_fractions(truth)
    np.testing.assert_allclose(p.sum(), 1.0)
    assert np.ptp(p) > 0.05  # not 1/B
    # fresh sample consistent with p (chi2, B-1 dof, 99.9% two-sided, inflation 1 + n/N)
    n = 50_000
    c = b.counts(rng.poisson(3.0, size=n).astype(float))
    chi2 = np.sum((c - n * p) ** 2 / (n * p))
    lo, hi = sps.chi2.ppf([0.001, 0.999], b.n_bins - 1)
    assert lo / 1.25 <= chi2 <= hi * 1.25


def test_fast_fill_equals_searchsorted_reference_and_open_ended() -> None:
    rng = np.random.default_rng(4)
    b = quantile_binning(rng.normal(size=(5_000, 2)), [7, 5])
    x = rng.normal(0.0, 3.0, size=(20_000, 2))  # many events outside the truth range
    x[:3] = [[np.inf, -np.inf], [-1e300, 1e300], [np.nan, 0.0]]
    idx = b.index(x)
    assert idx[2] == -1
    ref = np.bincount(idx[idx >= 0], minlength=b.n_bins)
    c = b.counts(x)
    np.testing.assert_array_equal(c, ref)
    assert c.sum() == len(x) - 1  # only the NaN event is lost
    # C order: axis 0 slowest
    assert idx[0] == (b.shape[0] - 1) * b.shape[1] + 0
    r = regular_binning(4, 0.0, 1.0)
    np.testing.assert_array_equal(r.counts(np.array([-5, 0.1, 0.3, 0.6, 0.99, 7.0])), [2, 1, 1, 2])


def test_to_polar() -> None:
    xy = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, -1.0], [1.0, -1e-300]])
    rp = to_polar(xy)
    np.testing.assert_allclose(rp[:, 0], [1, 2, 3, 1, 1])
    np.testing.assert_allclose(rp[:4, 1], [0, np.pi / 2, np.pi, 1.5 * np.pi])
    assert np.all((rp[:, 1] >= 0) & (rp[:, 1] < 2 * np.pi))
    pts = np.random.default_rng(5).normal(size=(1000, 2))
    rp = to_polar(pts)
    back = rp[:, :1] * np.stack([np.cos(rp[:, 1]), np.sin(rp[:, 1])], axis=1)
    np.testing.assert_allclose(back, pts, atol=1e-12)


def test_draw_histograms_merge_and_chunks_equal_one_shot() -> None:
    rng = np.random.default_rng(6)
    b = quantile_binning(rng.normal(size=(10_000, 2)), 6)
    data = {
        (k, i): rng.normal(size=(rng.integers(100, 2000), 2)) for k in range(2) for i in range(3)
    }
    full = DrawHistograms(b, 2, 3)
    for (k, i), x in data.items():
        full.fill(k, i, x)
    # chunked filling
    chunked = DrawHistograms(b, 2, 3)
    for (k, i), x in data.items():
        for part in np.array_split(x, 7):
            chunked.fill(k, i, part)
    np.testing.assert_array_equal(chunked.counts, full.counts)
    # two workers with disjoint draws, merged (and pickled, as dask would)
    w1, w2 = DrawHistograms(b, 2, 3), DrawHistograms(b, 2, 3)
    for (k, i), x in data.items():
        (w1 if i < 2 else w2).fill(k, i, x)
    merged = pickle.loads(pickle.dumps(w1)) + w2
    np.testing.assert_array_equal(merged.counts, full.counts)
    np.testing.assert_array_equal(merged.n_filled, full.n_filled)
    np.testing.assert_array_equal(
        full.n_filled, [[len(data[k, i]) for i in range(3)] for k in range(2)]
    )
    f = full.fractions()
    assert f.shape == (2, 3, 36)
    np.testing.assert_allclose(f.sum(-1), 1.0)
    np.testing.assert_array_equal(f[1, 2], b.fractions(data[1, 2]))
    h = full.to_hist()
    np.testing.assert_array_equal(h.values().reshape(2, 3, -1), full.counts)
    w1 += w2
    np.testing.assert_array_equal(w1.counts, full.counts)


def test_draw_histograms_errors_and_unfilled() -> None:
    b1 = quantile_binning(np.arange(100.0), 4)
    b2 = quantile_binning(np.arange(100.0), 5)
    d = DrawHistograms(b1, 1, 2).fill(0, 0, np.arange(10.0))
    assert np.isnan(d.fractions()[0, 1]).all()
    with pytest.raises(ValueError, match="different binnings"):
        d + DrawHistograms(b2, 1, 2)
    with pytest.raises(IndexError):
        d.fill(1, 0, np.arange(3.0))
    with pytest.raises(ValueError, match="shape"):
        d.fill(0, 0, np.zeros((3, 2)))
    d.fill(0, 1, np.array([np.nan, 1.0]))
    assert d.n_nan[0, 1] == 1


def test_histogram_set() -> None:
    rng = np.random.default_rng(7)
    binnings = {
        "a": quantile_binning(rng.normal(size=1000), 5),
        "ab": regular_binning([3, 2], 0, 1),
    }
    s1 = HistogramSet(binnings, 1, 2)
    obs = {"a": rng.normal(size=300), "ab": rng.uniform(size=(300, 2)), "extra": np.zeros(300)}
    s1.fill(0, 1, obs)
    assert set(s1) == {"a", "ab"} and len(s1) == 2
    np.testing.assert_array_equal(s1["ab"].counts[0, 1], binnings["ab"].counts(obs["ab"]))
    s2 = HistogramSet(binnings, 1, 2).fill(0, 0, obs)
    tot = s1 + s2
    np.testing.assert_array_equal(tot["a"].n_filled, [[300, 300]])
    assert tot.fractions()["ab"].shape == (1, 2, 6)
    with pytest.raises(KeyError, match="lacks"):
        s1.fill(0, 0, {"a": obs["a"]})


def test_make_hist_and_to_hist() -> None:
    b = QuantileBinning((np.array([0.0, 1.0, 3.0]), np.array([0.0, 2.0, 4.0, 5.0])), ("u", "v"))
    h = make_hist(b)
    np.testing.assert_array_equal(h.axes[0].edges, [0, 1, 3])
    np.testing.assert_array_equal(h.axes[1].edges, [0, 2, 4, 5])
    vals = np.arange(6.0)
    h2 = to_hist(b, vals, variances=vals / 10)
    np.testing.assert_array_equal(h2.values(), vals.reshape(2, 3))
    np.testing.assert_array_equal(h2.variances(), (vals / 10).reshape(2, 3))
    assert b == QuantileBinning(b.edges, ("u", "v")) and hash(b) == hash(
        QuantileBinning(b.edges, ("u", "v"))
    )
    with pytest.raises(ValueError, match="strictly increasing"):
        QuantileBinning((np.array([0.0, 0.0, 1.0]),))
