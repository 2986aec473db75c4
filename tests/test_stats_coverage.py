"""Tests of calamp.stats.coverage: the credible-set definition, calibration and its floor."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calamp.stats import (
    REFERENCE_LEVELS,
    bootstrap_coverage,
    coverage,
    critical_level,
    mad_floor,
)


# ------------------------------------------------------------------------------------------------
# coverage
# ------------------------------------------------------------------------------------------------
def _brute_coverage(v: np.ndarray, t: np.ndarray, lev: np.ndarray) -> np.ndarray:
    q_lo = np.quantile(v, (1 - lev) / 2, axis=-2)  # (L, K, B)
    q_hi = np.quantile(v, (1 + lev) / 2, axis=-2)
    return ((q_lo <= t) & (t <= q_hi)).mean(axis=(1, 2))


@pytest.mark.parametrize("ties", [False, True])
def test_coverage_equals_np_quantile_definition(ties: bool) -> None:
    rng = np.random.default_rng(20 + ties)
    if ties:  # count-like values, truth often equal to draws
        v = rng.integers(0, 6, size=(3, 9, 400)) / 10
        t = rng.integers(0, 6, size=400) / 10
    else:
        v = rng.normal(size=(3, 9, 400))
        t = rng.normal(size=400)
    lev = np.sort(rng.uniform(0, 1, 37))
    np.testing.assert_allclose(
        coverage(v, t, lev).empirical, _brute_coverage(v, t, lev), atol=1e-12
    )
    c_star = critical_level(v, t)
    assert c_star.shape == (3, 400)


def _calibrated(rng: np.random.Generator, k: int, s: int, b: int, width: float) -> tuple:
    """Posterior centre offset from the truth by N(0, sigma²); draws spread width * sigma."""
    sigma = 1e-3
    t = np.full(b, 1 / b)
    centre = t + sigma * rng.normal(size=(k, 1, b))
    return centre + width * sigma * rng.normal(size=(k, s, b)), t


def test_calibrated_oracle_has_small_mad() -> None:
    rng = np.random.default_rng(22)
    k, s, b = 5, 50, 4_000
    v, t = _calibrated(rng, k, s, b, 1.0)
    res = coverage(v, t)
    # the truth is an exchangeable (s+1)-th point: E[c̄(c)] ≈ c (s-1)/(s+1); indicators are
    # independent over (k, j): std ≤ 0.5/sqrt(K B) = 0.0035 -> 4 sigma band
    band = 4 * 0.5 / np.sqrt(k * b)
    lev = REFERENCE_LEVELS
    assert np.all(np.abs(res.empirical - lev * (s - 1) / (s + 1)) < band + 0.003)
    # MAD ≤ mean_c 2c/(s+1) + band = 1/(s+1) + band
    assert res.mad < 1 / (s + 1) + band
    assert res.per_network.shape == (k, lev.size) and res.per_bin.shape == (b, lev.size)
    json.dumps(res.to_dict())


def test_too_narrow_is_overconfident_too_wide_underconfident() -> None:
    rng = np.random.default_rng(23)
    lev = np.linspace(0.05, 0.95, 19)
    narrow = coverage(*_calibrated(rng, 5, 50, 2_000, 0.5), lev)
    wide = coverage(*_calibrated(rng, 5, 50, 2_000, 2.0), lev)
    # Gaussian: truth - centre ~ N(0, σ²); interval ± z w σ => c̄ = 2Φ(w z) - 1; far from c
    assert np.all(narrow.empirical < lev)
    assert np.all(wide.empirical > lev)
    assert narrow.mad > 0.1 and wide.mad > 0.1


def test_grid_mad_axis_and_profile() -> None:
    rng = np.random.default_rng(24)
    n_r, n_phi, k, s = 20, 100, 5, 50
    v, t = _calibrated(rng, k, s, n_r * n_phi, 1.0)
    g = v.reshape(k, s, n_r, n_phi)
    centre = g.mean(axis=1, keepdims=True)
    g[:, :, :5] = centre[:, :, :5] + 0.3 * (g[:, :, :5] - centre[:, :, :5])  # too narrow
    g[:, :, 5:10] = centre[:, :, 5:10] + 3.0 * (g[:, :, 5:10] - centre[:, :, 5:10])  # too wide
    res = coverage(g.reshape(k, s, -1), t, grid_shape=(n_r, n_phi))
    assert res.profile.shape == (n_r,)
    # per row K*n_phi = 500 independent bins: std of a row's c̄ ≤ 0.5/sqrt(500) = 0.022
    assert np.all(res.profile[:5] < -0.2) and np.all(res.profile[5:10] > 0.1)
    assert np.all(np.abs(res.profile[10:]) < 0.02 + 4 * 0.022)
    mad_r, mad_phi = res.mad_axis
    # opposite-sign rows cancel when averaged over r first (MAD_phi), not over phi (MAD_r)
    assert mad_r > mad_phi + 0.05
    with pytest.raises(ValueError, match="grid_shape"):
        coverage(v, t, grid_shape=(3, 3))


def test_bootstrap_coverage() -> None:
    rng = np.random.default_rng(25)
    v, t = _calibrated(rng, 5, 30, 500, 1.0)
    lev = np.linspace(0.1, 0.9, 9)
    boot = bootstrap_coverage(v, t, lev, n_boot=50, seed=3)
    np.testing.assert_allclose(boot.estimate, coverage(v, t, lev).empirical)
    assert boot.std.shape == (9,) and np.all(boot.std > 0)
    assert np.all(boot.low <= boot.high)
    assert boot.mad is not None and boot.mad.std > 0
    # resampling draws with duplicates narrows the intervals: replicas cover less on average
    assert boot.replicas.mean() < boot.estimate.mean()
    json.dumps(boot.to_dict())


def test_mad_floor_matches_oracles_that_share_a_finite_truth() -> None:
    # bootstrap oracles of K = 5 training sets of n = 600 against one held-out truth of
    # N = 3000 (rho = (1/N)/(1/n + 1/N) = 1/6), 10 quantile bins of the truth, s = 30 draws:
    # the simulated floor must describe the MAD of 120 such experiments (mean within 4 SE)
    rng = np.random.default_rng(41)
    n, n_t, k, s, b = 600, 3000, 5, 30, 10
    mads = []
    for _ in range(120):
        x = rng.standard_normal(n_t + k * n)
        truth, rest = x[:n_t], x[n_t:]
        edges = np.quantile(truth, np.linspace(0, 1, b + 1))
        edges[0], edges[-1] = -np.inf, np.inf
        t = np.histogram(truth, edges)[0] / n_t
        v = np.array(
            [
                [np.histogram(tr[rng.integers(0, n, n)], edges)[0] / n for _ in range(s)]
                for tr in rest.reshape(k, n)
            ]
        )
        mads.append(coverage(v, t, n_truth=n_t).mad)
    mads = np.asarray(mads)
    floor = mad_floor(s, b, n_networks=k, rho=1 / 6)
    assert abs(mads.mean() - floor["mean"]) < 4 * mads.std() / np.sqrt(mads.size), (
        mads.mean(),
        floor,
    )
    assert np.mean(mads > floor["q95"]) < 0.05 + 4 * np.sqrt(0.05 * 0.95 / mads.size)
