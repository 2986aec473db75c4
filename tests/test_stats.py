"""Oracle tests of calamp.stats (definitions: DESIGN.md "Statistical definitions").

Tolerances are derived in comments: for s draws, the sample variance obeys
(s-1) var̂/var ~ chi2_{s-1}, so 1/var̂ has relative std ≈ sqrt(2/(s-5)) and mean
(s-1)/(s-3) / var. Bounding the correlation between bins by 1 (all bins move together), a
per-network total has at most that relative std, and an average over K independent networks
sqrt(K) less.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from calamp.stats import (
    REFERENCE_LEVELS,
    amplification,
    bootstrap_amplification,
    bootstrap_coverage,
    closure,
    coverage,
    critical_level,
    equivalent_sample_size,
    expected_jsd,
    jsd,
)


def _multinomial_draws(rng: np.random.Generator, m: int, p: np.ndarray, shape: tuple) -> np.ndarray:
    """Fractions of independent multinomial truth samples of size m, shape (*shape, B)."""
    return rng.multinomial(m, p, size=shape) / m


def _rel_tol(k: int, s: int, n_sigma: float = 4.0) -> float:
    return n_sigma * np.sqrt(2.0 / (s - 5)) / np.sqrt(k)


# ------------------------------------------------------------------------------------------------
# amplification
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("m", "p"),
    [
        (1_000, np.full(4, 0.25)),
        (5_000, np.full(20, 0.05)),
        (20_000, np.full(100, 0.01)),
        (3_000, np.array([0.5, 0.25, 0.15, 0.07, 0.03])),
    ],
)
def test_amplification_oracle_recovers_sample_size(m: int, p: np.ndarray) -> None:
    # each draw is an independent truth sample of size m: the ideal posterior ensemble
    rng = np.random.default_rng(m + p.size)
    k, s = 8, 500
    v = _multinomial_draws(rng, m, p, (k, s))
    bias = (s - 1) / (s - 3)  # E[1/var̂] for s draws
    tol = _rel_tol(k, s)  # 4 sigma ≈ 0.09
    binom = amplification(v, form="binomial")
    assert binom.total.shape == (k,) and binom.per_bin.shape == (k, p.size)
    assert abs(binom.total.mean() / (m * bias) - 1) < tol
    # Poisson form: n'_j = p/var = m/(1-p_j), total = m Σ p_j/(1-p_j)
    pois = amplification(v)
    assert abs(pois.total.mean() / (m * bias * np.sum(p / (1 - p))) - 1) < tol
    # per bin the ratio is exactly 1/(1 - mean_j)
    np.testing.assert_allclose(pois.per_bin / binom.per_bin, 1 / (1 - pois.mean))
    assert pois.n_masked.sum() == 0 and not pois.corrected


def test_poisson_form_is_one_third_high_at_four_bins() -> None:
    rng = np.random.default_rng(11)
    v = _multinomial_draws(rng, 2_000, np.full(4, 0.25), (4, 300))
    ratio = amplification(v).total / amplification(v, form="binomial").total
    # ratio = Σ mean²/var / Σ mean²(1-mean)/var with mean_j = 1/4 ± 0.01/√300: 4/3 to 1e-3
    np.testing.assert_allclose(ratio, 4 / 3, rtol=2e-3)


def test_finite_generation_correction_recovers_model_size() -> None:
    # model histogram q^(i) has the spread of m events; each draw then generates g = m events
    rng = np.random.default_rng(12)
    m = g = 5_000
    p = np.full(20, 0.05)
    k, s = 8, 500
    q = _multinomial_draws(rng, m, p, (k, s))
    counts = rng.binomial(g, q)  # per-bin binomial thinning ≈ multinomial(g, q) per bin marginal
    v = counts / g
    raw = amplification(v, form="binomial")
    cor = amplification(v, n_generated=g, form="binomial")
    bias = (s - 1) / (s - 3)
    # Var ĥ = p(1-p)[1/m + 1/g - 1/(m g)] -> raw ≈ m g/(m + g - 1) ≈ m/2
    assert abs(raw.total.mean() / (bias * m * g / (m + g - 1)) - 1) < _rel_tol(k, s)
    # after subtracting mean(1-mean)/g: n' = m g/(g-1). The corrected variance is half the raw
    # one with the same absolute noise, so its relative error doubles: tolerance 2x.
    assert abs(cor.total.mean() / (bias * m * g / (g - 1)) - 1) < 2 * _rel_tol(k, s)
    np.testing.assert_allclose(cor.total_raw, raw.total)
    assert cor.corrected and cor.n_floored.sum() == 0
    d = json.loads(json.dumps(cor.to_dict(per_bin=False)))
    assert d["n_generated"] == g and len(d["total"]) == k


def test_zero_variance_bins_are_masked_not_inf() -> None:
    rng = np.random.default_rng(13)
    v = _multinomial_draws(rng, 1_000, np.array([0.3, 0.3, 0.4, 0.0]), (50,))  # (s, B)
    v[:, 0] = 0.3  # constant bin (the others keep their spread)
    res = amplification(v, n_generated=1e6)
    assert isinstance(res.total, float) and np.isfinite(res.total)
    np.testing.assert_array_equal(res.masked, [True, False, False, True])
    assert res.n_masked == 2 and np.isnan(res.per_bin[[0, 3]]).all()
    # all bins constant: nothing estimable, total 0 with every bin masked
    flat = amplification(np.full((10, 3), 1 / 3))
    assert flat.total == 0.0 and flat.n_masked == 3
    with pytest.raises(ValueError, match="form"):
        amplification(v, form="gauss")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        amplification(np.full((3, 2), np.nan))


def test_bootstrap_amplification_matches_sampling_spread() -> None:
    rng = np.random.default_rng(14)
    p = np.full(10, 0.1)
    s, m = 60, 2_000
    # true sampling spread of the single-network total over 40 repetitions
    totals = [amplification(_multinomial_draws(rng, m, p, (s,))).total for _ in range(40)]
    true_std = np.std(totals, ddof=1)  # itself uncertain by ≈ 1/sqrt(2*39) = 11%
    v = _multinomial_draws(rng, m, p, (s,))
    boot = bootstrap_amplification(v, n_boot=300, seed=1)
    assert boot.estimate == pytest.approx(amplification(v).total)
    assert boot.low < boot.estimate < boot.high
    # bootstrap std from one sample of 60 draws: spread ≈ 20% (chi2 of the draws), plus 11%
    # for true_std; accept a factor 2
    assert 0.5 < boot.std / true_std < 2.0
    again = bootstrap_amplification(v, n_boot=300, seed=1)
    np.testing.assert_array_equal(again.replicas, boot.replicas)


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


# ------------------------------------------------------------------------------------------------
# JSD and closure
# ------------------------------------------------------------------------------------------------
def test_jsd_known_values() -> None:
    p, q = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    analytic = 0.5 * np.log(4 / 3) + 0.25 * np.log(2 / 3) + 0.25 * np.log(2.0)
    assert jsd(p, q) == pytest.approx(analytic, rel=1e-12)
    assert jsd(q, p) == pytest.approx(analytic, rel=1e-12)
    assert jsd(np.array([1.0, 0, 0]), np.array([0, 0.5, 0.5])) == pytest.approx(np.log(2))
    rng = np.random.default_rng(30)
    a = rng.dirichlet(np.ones(10), size=200)
    b = rng.dirichlet(np.ones(10), size=200)
    j = jsd(a, b)
    assert j.shape == (200,) and np.all((j >= 0) & (j <= np.log(2)))
    np.testing.assert_allclose(j, jsd(b, a))
    np.testing.assert_allclose(jsd(a, a), 0.0, atol=1e-15)


def test_expected_jsd_matches_asymptotic_formula() -> None:
    p = np.full(50, 1 / 50)
    n = 100_000
    e = expected_jsd(n, p, n_mc=200, seed=1)
    # E ≈ (B-1)/(8n); JSD ≈ chi2_{B-1}/(8n): MC mean rel. std = sqrt(2/49)/sqrt(200) = 1.4%
    assert e == pytest.approx(49 / (8 * n), rel=4 * 0.014)
    assert expected_jsd(np.array([10, 1000]), p, n_mc=20).shape == (2,)


def test_equivalent_sample_size_of_a_truth_sample() -> None:
    rng = np.random.default_rng(31)
    b, m = 400, 20_000
    p = np.full(b, 1 / b)
    mean_j = np.mean(jsd(_multinomial_draws(rng, m, p, (20,)), p))
    res = equivalent_sample_size(mean_j, p, n_mc=100, seed=2)
    # rel. std of the mean of 20 JSDs sqrt(2/399)/sqrt(20) = 1.6%, MC curve 0.7%: 4 sigma ≈ 7%
    assert res.n_eq == pytest.approx(m, rel=0.07)
    assert not res.below_grid and not res.above_grid
    assert res.n_eq == pytest.approx((b - 1) / (8 * mean_j), rel=0.1)
    clipped = equivalent_sample_size(np.array([0.0, np.log(2)]), p, sizes=[10, 1e6], n_mc=10)
    np.testing.assert_array_equal(clipped.above_grid, [True, False])
    np.testing.assert_array_equal(clipped.below_grid, [False, True])
    np.testing.assert_array_equal(clipped.n_eq, [1e6, 10])


def test_closure_of_ideal_ensemble() -> None:
    # mean of s independent truth samples of size m is a truth sample of s*m events
    rng = np.random.default_rng(32)
    b, m, s, k = 100, 2_000, 20, 4
    p = np.full(b, 1 / b)
    v = _multinomial_draws(rng, m, p, (k, s))
    res = closure(v, p, n_train=1_000, n_mc=100, seed=3)
    # per network rel. std of one JSD sqrt(2/99) = 14%; mean of 4: 7% -> 4 sigma 28%, and the
    # mean of n_eq/n over networks
    assert res.n_eq.shape == (k,)
    assert np.mean(res.amplification) == pytest.approx(s * m / 1_000, rel=0.28)
    single = closure(v[0], p, n_train=1_000, n_mc=50)
    assert isinstance(single.jsd, float) and isinstance(single.n_eq, float)
    json.dumps(res.to_dict())
