"""Known-answer tests of calamp.stats: the ideal (oracle) posterior must give amplification 1,
calibrated coverage and a closing verdict at every number of bins, draws, generated events and
truth size; miscalibrated draws must be flagged in the right direction.

The oracle of one network: a training set q ~ Mult(n, p)/n, draws b_i ~ Mult(n, q)/n (the
bootstrap posterior) and per draw g generated events ĥ_i ~ Mult(g, b_i)/g. Tolerances are the
estimators' own errors (jackknife over draws for n', the χ² spread of the JSD for n_eq) at
4 standard deviations, and the simulated MAD floor's 99.9 % quantile.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from calamp.stats import (
    amplification,
    closure,
    coverage,
    equivalent_sample_size,
    expected_jsd,
    jsd,
)


def _oracle(rng, k, s, b, n, g, n_truth=None):
    p = np.full(b, 1.0 / b)
    q = rng.multinomial(n, p, size=k) / n
    draws = np.stack([rng.multinomial(n, qk, size=s) / n for qk in q])
    if g is not None:
        draws = np.stack([[rng.multinomial(g, d) / g for d in net] for net in draws])
    truth = p if n_truth is None else rng.multinomial(n_truth, p) / n_truth
    return draws, truth


GRID = [
    (b, s, gm, finite)
    for b in (4, 25, 400, 10_000)
    for s in (10, 50)
    for gm in (1, 10)
    for finite in (False, True)
]


@pytest.mark.parametrize(("n_bins", "s", "g_over_n", "finite"), GRID)
def test_oracle_is_unbiased_calibrated_and_closes(n_bins, s, g_over_n, finite) -> None:
    # at least ~100 training events per bin: the bootstrap is only a posterior where the
    # training set populates the bins (an empty training bin has a zero-width posterior)
    n = 10_000 if n_bins < 1_000 else 1_000_000
    k, g = 5, g_over_n * n
    n_truth = 3 * n if finite else None
    rng = np.random.default_rng([n_bins, s, g_over_n, int(finite)])
    v, t = _oracle(rng, k, s, n_bins, n, g, n_truth)
    amp = amplification(v, g, truth=t, n_truth=n_truth)
    c = amp.combined
    assert abs(c["precision"] * n - 1) < 4 * c["precision_err"] * n, c
    assert not c["is_bound"]
    cov = coverage(v, t, n_generated=g, n_truth=n_truth)
    f = cov.mad_floor  # 99.9 % quantile plus the pool's own error (limit - q99)
    assert cov.mad < f["q999"] + f["limit"] - f["q99"], (cov.mad, f)
    clo = closure(v, t, n, n_truth=n_truth, amplification=amp).combined
    assert abs(clo["precision"] * n - 1) < 4 * clo["precision_err"] * n, clo
    assert clo["verdict"] in ("closes", "inconclusive"), clo
    if n_bins >= 25:  # at B = 4, K = 5 the JSD has 15 dof: n_eq ±37 %, often only a bound
        assert clo["verdict"] == "closes", clo


def test_closure_z_is_standard_with_a_truth_shared_by_the_networks() -> None:
    # truth of N = n events: about half of every network's JSD is the truth's own deviation,
    # common to the K networks; counted as K(B-1) independent dof, the z of the mean JSD of
    # these 300 oracles had sd 1.30. 300 oracles: sd of the sample sd 1/sqrt(600) = 0.041, of
    # the mean 0.058; both within 4 of them
    rng = np.random.default_rng(12)
    n, reps, zs = 1_000, 300, []
    for _ in range(reps):
        v, t = _oracle(rng, 5, 20, 10, n, None, n_truth=n)
        amp = amplification(v, truth=t, n_truth=n)
        zs.append(closure(v, t, n, n_truth=n, amplification=amp).combined["z"])
    z = np.asarray(zs)
    assert abs(z.std() - 1) < 4 / np.sqrt(2 * reps), z.std()
    assert abs(z.mean()) < 4 / np.sqrt(reps), z.mean()


def test_jackknife_interval_covers_at_nominal_frequency() -> None:
    # 68 % interval [1/(P+σ), 1/(P-σ)] must contain n for 68 % of independent oracles;
    # 300 replicas: binomial sd of the frequency 0.027, so ±0.1 is ~4 sd
    rng = np.random.default_rng(7)
    n, hits, reps = 5_000, 0, 300
    for _ in range(reps):
        v, t = _oracle(rng, 1, 20, 25, n, 2 * n)
        a = amplification(v[0], 2 * n, truth=t)
        hits += a.n_prime_low <= n <= a.n_prime_high
    assert abs(hits / reps - 0.68) < 0.1, hits / reps


def test_paper_form_keeps_its_known_biases() -> None:
    # Σ mean²/std² without corrections: high by 1/(1-p) = 4/3 at B = 4 and by (s-1)/(s-3),
    # low by the generation noise share (g = 10 n: 1/(1 + n/g)); std of the total over
    # K = 20 networks ≈ sqrt(2/(s-5))/sqrt(20 * 3)
    rng = np.random.default_rng(8)
    s, n = 30, 4_000
    v, t = _oracle(rng, 20, s, 4, n, 10 * n)
    a = amplification(v, 10 * n, truth=t)
    expected = n * (4 / 3) * (s - 1) / (s - 3) / (1 + 0.1)
    rel = np.sqrt(2 / (s - 5)) / np.sqrt(60)
    assert abs(np.mean(a.n_prime_paper) / expected - 1) < 4 * rel
    assert abs(a.combined["precision"] * n - 1) < 4 * a.combined["precision_err"] * n


def _gaussian_posterior(rng, k, s, b, n, width, shift=0.0):
    """A network whose mean misses the truth by N(0, p/n) (+ shift σ) and whose draws spread
    ``width`` times the honest σ = sqrt(p(1-p)/n); noise-free fractions."""
    p = np.full(b, 1.0 / b)
    sigma = np.sqrt(p * (1 - p) / n)
    centre = p + sigma * (rng.standard_normal((k, 1, b)) + shift)
    return centre + width * sigma * rng.standard_normal((k, s, b)), p


@pytest.mark.parametrize(
    ("width", "shift", "verdict", "state"),
    [
        (0.5, 0.0, "n' too high (over-confident)", "over-confident"),
        (2.0, 0.0, "n' too low (under-confident)", "under-confident"),
        (1.0, 2.0, "n' too high (over-confident)", "over-confident"),
        (1.0, 0.0, "closes", "calibrated"),
    ],
)
def test_miscalibrated_draws_are_flagged(width, shift, verdict, state) -> None:
    rng = np.random.default_rng(int(10 * width + shift))
    n = 10_000
    v, t = _gaussian_posterior(rng, 5, 50, 200, n, width, shift)
    amp = amplification(v, truth=t)
    # the estimate itself is what the draws say: n / width²
    assert abs(amp.combined["n_prime"] / (n / width**2) - 1) < 0.1
    assert closure(v, t, n, amplification=amp).combined["verdict"] == verdict
    assert coverage(v, t).state == state


def test_noise_correction_with_unequal_draw_sizes() -> None:
    rng = np.random.default_rng(9)
    n, s = 8_000, 40
    g = rng.integers(4_000, 40_000, size=(5, s))
    p = np.full(50, 0.02)
    q = rng.multinomial(n, p, size=5) / n
    v = np.stack(
        [
            [rng.multinomial(g[k, i], rng.multinomial(n, q[k]) / n) / g[k, i] for i in range(s)]
            for k in range(5)
        ]
    )
    a = amplification(v, g, truth=p)
    assert abs(a.combined["precision"] * n - 1) < 4 * a.combined["precision_err"] * n
    assert 0.1 < np.mean(a.noise_fraction) < 0.9
    with pytest.raises(ValueError, match="n_generated"):
        amplification(v, np.ones(3) * 100)


def test_single_network_shapes_and_json() -> None:
    rng = np.random.default_rng(10)
    v, t = _oracle(rng, 1, 12, 20, 2_000, 20_000)
    a = amplification(v[0], 20_000, truth=t)
    assert isinstance(a.n_prime, float) and a.per_bin.shape == (20,)
    c = closure(v[0], t, 2_000, amplification=a)
    assert isinstance(c.jsd, float)
    json.dumps(a.to_dict())
    json.dumps(c.to_dict())
    json.dumps(coverage(v[0], t, n_generated=20_000).to_dict())


def test_constant_observable_and_zero_jsd_do_not_crash() -> None:
    v = np.zeros((3, 10, 4))
    v[..., 0] = 1.0  # every event in one bin
    with pytest.raises(ValueError, match="two populated bins"):
        amplification(v)
    with pytest.raises(ValueError, match="two populated truth bins"):
        closure(v, np.array([1.0, 0, 0, 0]), 100)
    res = equivalent_sample_size(0.0, np.full(4, 0.25))
    assert res.n_eq == np.inf and res.above_grid
    res = equivalent_sample_size(np.array([0.0, np.log(2)]), np.full(4, 0.25))
    assert res.below_grid[1] and res.n_eq[1] == 1.0


# ------------------------------------------------------------------------------------------------
# JSD and its expectation
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


@pytest.mark.parametrize(("n_bins", "n"), [(5, 20), (5, 1_000), (100, 300), (3, 400_000)])
def test_expected_jsd_is_exact(n_bins, n) -> None:
    # against a Monte Carlo of 100k multinomial samples: within 4 of its standard errors
    rng = np.random.default_rng(n_bins + n)
    p = rng.dirichlet(np.full(n_bins, 5.0))
    x = jsd(rng.multinomial(n, p, size=100_000) / n, p)
    se = x.std() / np.sqrt(x.size)
    assert abs(expected_jsd(n, p) - x.mean()) < 4 * se
    # leading order (B - 1)/(8n) once every bin holds many events
    if n * p.min() > 1e4:
        assert expected_jsd(n, p) == pytest.approx((n_bins - 1) / (8 * n), rel=1e-3)


def test_expected_jsd_is_smooth_across_the_series_switch() -> None:
    p = np.full(4, 0.25)  # n p (1 - p) = 1000 at n = 5333.3: exact sum below, series above
    n = np.arange(5_330, 5_338)
    e = expected_jsd(n, p) * n * 8 / 3  # 1 + O(1/n): a smooth, slowly varying curve
    step = np.diff(e)
    # the step across the switch is like its neighbours (a jump would show up as an outlier)
    assert np.all(np.abs(step - np.median(step)) < 1e-8), step


def test_equivalent_sample_size_inverts_expected_jsd() -> None:
    p = np.random.default_rng(3).dirichlet(np.ones(30))
    sizes = np.array([3.0, 50.0, 2_000.0, 1e6])
    res = equivalent_sample_size(expected_jsd(sizes, p), p)
    np.testing.assert_allclose(res.n_eq, sizes, rtol=2e-3)


def test_generated_for_noise_reaches_the_target_share():
    """With noise variance N/g and posterior variance V, the share N/g / (V + N/g) measured at
    g predicts the g at which it is 10 %; None for noise-free or degenerate shares."""
    from calamp.analysis import generated_for_noise

    v, n_var = 2.0e-6, 0.05
    for g in (1_000, 10_000, 100_000):
        share = (n_var / g) / (v + n_var / g)
        need = generated_for_noise(g, share, 0.1)
        assert (n_var / need) / (v + n_var / need) == pytest.approx(0.1, rel=0.02)
    assert generated_for_noise(None, 0.3, 0.1) is None
    assert generated_for_noise(1000, 0.0, 0.1) is None
    assert generated_for_noise(1000, float("nan"), 0.1) is None
