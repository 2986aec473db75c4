"""Tests for calamp.bayes.flat and calamp.bayes.samplers.

Known answer: Bayesian linear regression y = Xw + ε, ε ~ N(0, σ_n²), prior w ~ N(0, σ_p² I)
has the Gaussian posterior N(μ, Σ), Σ = (XᵀX/σ_n² + I/σ_p²)⁻¹, μ = Σ Xᵀy/σ_n², and the
tempered target exp(−λU) is N(μ, Σ/λ). AdamMCMC with Metropolis–Hastings (frozen Adam moments
after burn-in) samples it exactly. SGLD and SGHMC without correction are, for a full-batch
linear-Gaussian problem, linear AR processes whose stationary law is known exactly: mean μ and
the covariance solving a discrete Lyapunov equation (which differs from Σ/λ by O(lr)).

Statistical tolerances: samples are whitened, z = L⁻¹(θ − m) with LLᵀ the oracle covariance,
so z ~ N(0, I). With an effective sample size n_eff (Sokal's windowed autocorrelation time, the
minimum over all z_i, z_i², z_i z_j series), the standard errors are 1/√n_eff for mean(z_i),
√(2/n_eff) for var(z_i) and 1/√n_eff for cov(z_i, z_j), i ≠ j. Every check allows 5 standard
errors (two-sided Gaussian tail 5.7e-7 per check, < 1e-5 for all checks of a chain); the seeds
are fixed, so the outcome is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from calamp._tf import tf, tfd
from calamp.bayes.chain import ChainResult, run_chain
from calamp.bayes.flat import assign_flat, flatten, get_flat, num_params, set_flat
from calamp.bayes.samplers import SGHMC, SGLD, AdamMCMC, rank_one_normal_log_prob

# --------------------------------------------------------------------------------------
# calamp.bayes.flat
# --------------------------------------------------------------------------------------


def test_flat_round_trip_order_and_graph_mode():
    a = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3))
    b = tf.Variable(np.array([10.0], np.float32))
    c = tf.Variable(np.arange(4, dtype=np.float32).reshape(2, 1, 2) + 20)
    vs = [a, b, c]
    assert num_params(vs) == 11
    np.testing.assert_array_equal(
        get_flat(vs), [0, 1, 2, 3, 4, 5, 10, 20, 21, 22, 23]
    )  # list order, row-major within each variable
    new = np.arange(11, dtype=np.float32) * -1
    set_flat(vs, new)
    np.testing.assert_array_equal(a.numpy(), new[:6].reshape(2, 3))
    np.testing.assert_array_equal(c.numpy(), new[7:].reshape(2, 1, 2))

    @tf.function
    def double():
        assign_flat(vs, 2.0 * flatten(vs))

    double()
    np.testing.assert_array_equal(get_flat(vs), 2 * new)


def test_flat_errors():
    a = tf.Variable(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="array"):
        set_flat([a], np.zeros(4))
    with pytest.raises(ValueError, match="variables"):
        num_params([])
    with pytest.raises(ValueError, match="dtype"):
        flatten([a, tf.Variable(np.zeros(2, np.float64))])


# --------------------------------------------------------------------------------------
# Rank-one Gaussian log-density
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("s", "sd"), [(0.3, 0.0), (0.3, 2.0), (0.05, 40.0)])
def test_rank_one_log_prob_matches_full_covariance(s, sd):
    rng = np.random.default_rng(7)
    p = 5
    mean, u = rng.normal(size=p), rng.normal(size=p)
    x = mean + rng.normal(size=(4, p)) * 0.5
    cov = s**2 * np.eye(p) + sd**2 * np.outer(u, u)
    expected = scipy.stats.multivariate_normal(mean, cov).logpdf(x)
    got = rank_one_normal_log_prob(tf.constant(x), tf.constant(mean), tf.constant(u), s, sd)
    # float64; the dense references lose cond(cov)·ε ≲ 3e6 · 2e-16 ≈ 1e-9 relative
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-8)
    mvn = tfd.MultivariateNormalTriL(loc=mean, scale_tril=np.linalg.cholesky(cov))
    np.testing.assert_allclose(got.numpy(), mvn.log_prob(x).numpy(), rtol=1e-8)


# --------------------------------------------------------------------------------------
# Linear-regression oracle
# --------------------------------------------------------------------------------------

SIGMA_N, SIGMA_P = 1.0, 1.0


class Problem:
    """y = Xw + ε with 3 weights, 100 points; posterior N(mu, cov)."""

    def __init__(self, n: int = 100, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, 3))
        x[:, 1] = 0.5 * x[:, 0] + math.sqrt(0.75) * x[:, 1]  # correlated posterior
        y = x @ np.array([0.5, -1.0, 0.3]) + SIGMA_N * rng.normal(size=n)
        self.n = n
        self.x, self.y = x, y
        self.precision = x.T @ x / SIGMA_N**2 + np.eye(3) / SIGMA_P**2
        self.cov = np.linalg.inv(self.precision)
        self.mu = self.cov @ x.T @ y / SIGMA_N**2
        self.xt = tf.constant(x, tf.float32)
        self.yt = tf.constant(y, tf.float32)

    def full_batch(self, w: tf.Variable):
        def energy() -> tf.Tensor:
            r = self.yt - tf.linalg.matvec(self.xt, w)
            return 0.5 * tf.reduce_sum(r * r) / SIGMA_N**2 + 0.5 * tf.reduce_sum(w * w) / SIGMA_P**2

        return energy

    def minibatch(self, w: tf.Variable):
        def energy(xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
            r = yb - tf.linalg.matvec(xb, w)
            scale = self.n / tf.cast(tf.shape(yb)[0], tf.float32)
            return (
                scale * 0.5 * tf.reduce_sum(r * r) / SIGMA_N**2
                + 0.5 * tf.reduce_sum(w * w) / SIGMA_P**2
            )

        return energy

    def batch_fn(self, size: int = 20):
        def fn(step: int):
            idx = np.random.default_rng([11, step]).choice(self.n, size, replace=False)
            return tf.gather(self.xt, idx), tf.gather(self.yt, idx)

        return fn


@pytest.fixture(scope="module")
def problem() -> Problem:
    return Problem()


def _tau(x: np.ndarray) -> float:
    """Integrated autocorrelation time, Sokal's automatic window (c = 5)."""
    x = x - x.mean()
    n = len(x)
    f = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(f * np.conj(f))[:n]
    acf /= acf[0]
    taus = 2.0 * np.cumsum(acf) - 1.0
    window = np.arange(n) >= 5.0 * taus
    m = int(np.argmax(window)) if window.any() else n - 1
    return max(float(taus[m]), 1.0)


def _check_gaussian(samples: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    """Assert samples ~ N(mean, cov) within 5 standard errors (module docstring); n_eff."""
    z = np.linalg.solve(np.linalg.cholesky(cov), (samples - mean).T).T
    p = z.shape[1]
    series = [z[:, i] for i in range(p)] + [
        z[:, i] * z[:, j] for i in range(p) for j in range(i, p)
    ]
    n_eff = len(z) / max(_tau(s) for s in series)
    assert n_eff > 300, f"chain too short for the test: n_eff = {n_eff:.0f}"
    np.testing.assert_array_less(np.abs(z.mean(0)), 5.0 / math.sqrt(n_eff))
    dev = np.cov(z.T) - np.eye(p)
    tol = np.where(np.eye(p, dtype=bool), math.sqrt(2.0 / n_eff), math.sqrt(1.0 / n_eff))
    np.testing.assert_array_less(np.abs(dev), 5.0 * tol)
    return n_eff


def _start(problem: Problem) -> tf.Variable:
    return tf.Variable(problem.mu.astype(np.float32))


# --------------------------------------------------------------------------------------
# AdamMCMC: exact posterior, tempering, acceptance, NaN handling
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [1.0, 4.0])
def test_adam_mcmc_samples_tempered_posterior(problem, lam):
    w = _start(problem)
    burn = 500
    sampler = AdamMCMC(
        [w],
        problem.full_batch(w),
        lr=0.02,
        sigma=0.15,
        sigma_delta=3.0,
        inverse_temperature=lam,
        adapt_steps=burn,
        seed=3,
    )  # sigma_delta = 3 makes the rank-one part of the proposal matter: |σ_Δ u| ≈ 0.5 s
    res = run_chain(sampler, None, n_steps=20_500, burn_in=burn, thin=4, progress=False)
    assert isinstance(res, ChainResult)
    assert res.samples.shape == (5_000, 3) and res.samples.dtype == np.float32
    assert res.energies.shape == (20_500,) and res.steps == 20_500
    assert 0.1 < res.acceptance_rate < 1.0
    assert res.n_nonfinite == 0
    assert sampler.steps == 20_500
    assert sampler.acceptance_rate == pytest.approx(res.acceptance_rate)
    n_eff = _check_gaussian(res.samples, problem.mu, problem.cov / lam)
    # std scales as 1/√λ; for λ = 4 the std is half the posterior's (relative SE of a std is
    # 1/√(2 n_eff); 5 SE)
    ratio = res.samples.std(0) / np.sqrt(np.diag(problem.cov))
    np.testing.assert_allclose(ratio, 1 / math.sqrt(lam), rtol=5 / math.sqrt(2 * n_eff))


def _minibatch_chain(n: int, batch: int, steps: int, penalty: bool) -> tuple[np.ndarray, float]:
    """AdamMCMC on minibatches of the regression problem with n events: (whitened z, n_eff)."""
    prob = Problem(n=n)
    w = _start(prob)

    def energy(xb: tf.Tensor, yb: tf.Tensor):
        r = yb - tf.linalg.matvec(xb, w)
        terms = n / tf.cast(tf.shape(yb)[0], tf.float32) * 0.5 * r * r / SIGMA_N**2
        u = tf.reduce_sum(terms) + 0.5 * tf.reduce_sum(w * w) / SIGMA_P**2
        return (u, terms) if penalty else u

    sampler = AdamMCMC([w], energy, lr=0.005, sigma=0.05, sigma_delta=3.0, adapt_steps=500,
                       seed=3, noise_penalty=penalty, population=n)
    res = run_chain(sampler, prob.batch_fn(batch), n_steps=steps + 500, burn_in=500, thin=4,
                    progress=False)
    z = np.linalg.solve(np.linalg.cholesky(prob.cov), (res.samples - prob.mu).T).T
    return z, len(z) / max(_tau(z[:, i]) for i in range(3))


def test_adam_mcmc_minibatch_penalty_samples_the_posterior():
    """Minibatches of B = 200 of N = 1,000 events: with the noise penalty the chain samples the
    posterior (mean within 5/√n_eff, std within 5·√(1/(2 n_eff)) of 1 per whitened coordinate);
    the plain minibatch ratio samples standard deviations ≈ 1.6x too large, outside the same
    tolerance (so the first check can fail)."""
    z, n_eff = _minibatch_chain(1_000, 200, 50_000, penalty=True)
    assert n_eff > 150, f"chain too short for the test: n_eff = {n_eff:.0f}"
    np.testing.assert_array_less(np.abs(z.mean(0)), 5.0 / math.sqrt(n_eff))
    np.testing.assert_array_less(np.abs(z.std(0) - 1.0), 5.0 / math.sqrt(2.0 * n_eff))
    z0, n_eff0 = _minibatch_chain(1_000, 200, 20_000, penalty=False)
    assert np.all(z0.std(0) - 1.0 > 5.0 / math.sqrt(2.0 * n_eff0)), z0.std(0)


def test_noise_penalty_contract(problem):
    w = _start(problem)
    with pytest.raises(ValueError, match="per-event terms"):
        sampler = AdamMCMC([w], problem.minibatch(w), noise_penalty=True)
        sampler.step(*problem.batch_fn()(0))
    with pytest.raises(ValueError, match="population"):
        AdamMCMC([w], problem.minibatch(w), noise_penalty=True, population=0)


def test_adam_mcmc_rejects_nan_region(problem):
    """Energy NaN for w0 > μ0: MH must sample the truncated posterior, never store NaN."""
    w = _start(problem)
    w.assign(w - [0.05, 0.0, 0.0])
    base = problem.full_batch(w)
    c = float(problem.mu[0])

    def energy():
        return tf.where(w[0] > c, tf.constant(np.nan, tf.float32), base())

    sampler = AdamMCMC([w], energy, lr=0.02, sigma=0.15, adapt_steps=200, seed=5)
    res = run_chain(sampler, None, n_steps=10_200, burn_in=200, thin=2, progress=False)
    assert np.all(np.isfinite(res.samples)) and np.all(np.isfinite(res.energies))
    assert np.all(res.samples[:, 0] <= c)
    assert res.n_nonfinite > 500  # about half the proposals near the edge cross it
    assert 0.0 < res.acceptance_rate < 1.0
    # Marginal of a Gaussian cut at its mean: mean μ0 − σ0 √(2/π), std σ0 √(1 − 2/π)
    s0 = math.sqrt(problem.cov[0, 0])
    x0 = res.samples[:, 0]
    n_eff = len(x0) / _tau(x0)
    assert n_eff > 300
    assert abs(x0.mean() - (c - s0 * math.sqrt(2 / math.pi))) < 5 * s0 * math.sqrt(
        1 - 2 / math.pi
    ) / math.sqrt(n_eff)


# --------------------------------------------------------------------------------------
# SGLD / SGHMC against the exact stationary law of the discretised dynamics
# --------------------------------------------------------------------------------------


def test_sgld_matches_discretised_oracle(problem):
    lr, lam = 0.002, 1.0
    w = _start(problem)
    res = run_chain(
        SGLD([w], problem.full_batch(w), lr=lr, seed=1),
        None,
        n_steps=20_500,
        burn_in=500,
        thin=4,
        progress=False,
    )
    # θ' − μ = (I − (lr/2)λA)(θ − μ) + N(0, lr I)  ⇒  Σ_h = B Σ_h Bᵀ + lr I
    b = np.eye(3) - 0.5 * lr * lam * problem.precision
    cov_h = scipy.linalg.solve_discrete_lyapunov(b, lr * np.eye(3))
    # the oracle is the posterior up to the O(lr) bias 1/(1 − lr λ a/4) ≤ 1.07 per eigenvalue
    np.testing.assert_allclose(np.diag(cov_h), np.diag(problem.cov), rtol=0.07)
    assert res.acceptance_rate == 1.0 and res.n_nonfinite == 0
    _check_gaussian(res.samples, problem.mu, cov_h)


def test_sghmc_matches_discretised_oracle(problem):
    lr, friction, lam = 0.0005, 0.2, 4.0
    w = _start(problem)
    res = run_chain(
        SGHMC([w], problem.full_batch(w), lr=lr, friction=friction, inverse_temperature=lam),
        None,
        n_steps=20_500,
        burn_in=500,
        thin=4,
        progress=False,
    )
    # (e, v) with e = θ − μ:  v' = (1−α)v − ηλA e + ξ,  e' = e + v',  ξ ~ N(0, 2αη I)
    i3 = np.eye(3)
    m = np.block(
        [
            [i3 - lr * lam * problem.precision, (1 - friction) * i3],
            [-lr * lam * problem.precision, (1 - friction) * i3],
        ]
    )
    q = 2 * friction * lr * np.block([[i3, i3], [i3, i3]])
    cov_h = scipy.linalg.solve_discrete_lyapunov(m, q)[:3, :3]
    np.testing.assert_allclose(np.diag(cov_h), np.diag(problem.cov) / lam, rtol=0.1)
    _check_gaussian(res.samples, problem.mu, cov_h)


@pytest.mark.parametrize("cls", [SGLD, SGHMC])
def test_sg_samplers_skip_nonfinite_steps(problem, cls):
    w = _start(problem)
    flag = tf.Variable(True)
    base = problem.full_batch(w)

    def energy():
        return tf.where(flag, tf.constant(np.inf, tf.float32), base())

    sampler = cls([w], energy, lr=1e-3, seed=0)
    before = get_flat([w])
    for _ in range(3):
        out = sampler.step()
        assert bool(out["nonfinite"]) and not bool(out["accepted"])
    np.testing.assert_array_equal(get_flat([w]), before)  # θ kept
    assert sampler.n_nonfinite == 3 and sampler.steps == 3
    if cls is SGHMC:
        np.testing.assert_array_equal(sampler.momentum.numpy(), 0.0)
    flag.assign(False)
    out = sampler.step()
    assert bool(out["accepted"]) and np.all(np.isfinite(get_flat([w])))
    assert not np.array_equal(get_flat([w]), before)
    assert sampler.acceptance_rate == 0.25


# --------------------------------------------------------------------------------------
# Stateless randomness: resume is bit-identical
# --------------------------------------------------------------------------------------

FACTORIES = {
    "adam_mcmc": lambda vs, e: AdamMCMC(vs, e, lr=0.01, sigma=0.1, seed=9),
    "adam_no_mh": lambda vs, e: AdamMCMC(vs, e, lr=0.01, sigma=0.1, metropolis=False, seed=9),
    "sgld": lambda vs, e: SGLD(vs, e, lr=1e-3, seed=9),
    "sghmc": lambda vs, e: SGHMC(vs, e, lr=1e-3, friction=0.1, seed=9),
}


def _state(sampler) -> list[np.ndarray]:
    return [v.numpy() for v in sampler.variables]  # θ and every sampler variable


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_checkpoint_resume_is_bit_identical(problem, tmp_path, name):
    make, n = FACTORIES[name], 15
    batch_fn = problem.batch_fn()

    def fresh():
        w = tf.Variable(np.zeros(3, np.float32))
        return w, make([w], problem.minibatch(w))

    w_a, a = fresh()
    e_a = [a.step(*batch_fn(a.steps))["energy"].numpy() for _ in range(2 * n)]

    w_b, b = fresh()
    e_b = [b.step(*batch_fn(b.steps))["energy"].numpy() for _ in range(n)]
    path = tf.train.Checkpoint(**b.checkpoint_items()).save(str(tmp_path / "ckpt"))
    w_c, c = fresh()
    tf.train.Checkpoint(**c.checkpoint_items()).restore(path).assert_consumed()
    assert c.steps == n
    e_b += [c.step(*batch_fn(c.steps))["energy"].numpy() for _ in range(n)]

    np.testing.assert_array_equal(e_a, e_b)
    np.testing.assert_array_equal(w_a.numpy(), w_c.numpy())
    for x, y in zip(_state(a), _state(c), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(w_a.numpy(), 0.0)


@pytest.mark.parametrize("name", ["adam_mcmc", "sghmc"])
@pytest.mark.parametrize("full_batch", [True, False])
def test_run_chain_interrupted_and_resumed_equals_uninterrupted(
    problem, tmp_path, name, full_batch
):
    make = FACTORIES[name]
    energy_of = problem.full_batch if full_batch else problem.minibatch
    batches = problem.batch_fn()

    def fresh():
        w = tf.Variable(np.zeros(3, np.float32))
        return make([w], energy_of(w))

    def batch_fn(fail_at=None):
        if full_batch and fail_at is None:
            return None

        def fn(step):
            if step == fail_at:
                raise KeyboardInterrupt
            return () if full_batch else batches(step)

        return fn

    kw = dict(n_steps=47, burn_in=5, thin=3, progress=False, checkpoint_every=10)
    ref = run_chain(fresh(), batch_fn(), **kw)
    assert ref.samples.shape == (14, 3)  # (47 − 5) // 3
    np.testing.assert_array_equal(ref.kept_steps, 5 + 3 * np.arange(1, 15))

    with pytest.raises(KeyboardInterrupt):
        run_chain(fresh(), batch_fn(fail_at=33), checkpoint_dir=tmp_path, **kw)
    resumed = run_chain(fresh(), batch_fn(), checkpoint_dir=tmp_path, **kw)
    for field in ("samples", "kept_steps", "energies"):
        np.testing.assert_array_equal(getattr(resumed, field), getattr(ref, field))
    assert resumed.acceptance_rate == ref.acceptance_rate
    # A finished run is returned from the checkpoint without new steps.
    again = run_chain(fresh(), batch_fn(), checkpoint_dir=tmp_path, **kw)
    np.testing.assert_array_equal(again.samples, ref.samples)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        run_chain(fresh(), batch_fn(), checkpoint_dir=tmp_path, **(kw | {"n_steps": 50}))


def test_compiled_segments_equal_single_steps(problem):
    """batch_fn=None (compiled loop) gives the same chain as stepping one by one."""
    results = []
    for fn in (None, lambda step: ()):
        w = tf.Variable(np.zeros(3, np.float32))
        s = AdamMCMC([w], problem.full_batch(w), lr=0.01, sigma=0.1, seed=4)
        results.append(run_chain(s, fn, n_steps=60, burn_in=10, thin=5, progress=False))
    np.testing.assert_allclose(results[0].samples, results[1].samples, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0].energies, results[1].energies, rtol=1e-5)


def test_argument_validation(problem):
    w = _start(problem)
    e = problem.full_batch(w)
    with pytest.raises(ValueError, match="inverse_temperature"):
        SGLD([w], e, lr=1e-3, inverse_temperature=0.0)
    with pytest.raises(ValueError, match="friction"):
        SGHMC([w], e, lr=1e-3, friction=1.5)
    with pytest.raises(ValueError, match="betas"):
        AdamMCMC([w], e, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="burn_in"):
        run_chain(SGLD([w], e, lr=1e-3), None, n_steps=10, burn_in=10)
    bad = SGLD([w], lambda: w * 2.0, lr=1e-3)  # keep a reference: tf.function holds a weakref
    with pytest.raises(ValueError, match="scalar"):
        bad.step()
    s = AdamMCMC([w], e)
    assert s.scale == pytest.approx(0.1 / math.sqrt(3))
    assert s.sigma_delta == pytest.approx(math.sqrt(3) / 50)
