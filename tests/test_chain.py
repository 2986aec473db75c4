"""The default SG-MCMC schedule on a known posterior: measured thinning gives nearly independent
draws whose moments match the exact posterior within ESS-derived errors; a thin-1 chain is
flagged. Bayesian linear regression y = Xw + ε (3 correlated weights, 100 points, unit noise
and prior): posterior N(μ, Σ), Σ = (XᵀX + I)⁻¹, μ = Σ Xᵀy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from calamp._tf import tf
from calamp.bayes.chain import draw_posterior
from calamp.bayes.diagnostics import (
    chain_summary,
    effective_sample_size,
    split_rhat,
    warning_for,
)
from calamp.bayes.samplers import AdamMCMC
from calamp.config import RunConfig


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 3))
    x[:, 1] = 0.5 * x[:, 0] + math.sqrt(0.75) * x[:, 1]
    y = x @ np.array([0.5, -1.0, 0.3]) + rng.normal(size=100)
    cov = np.linalg.inv(x.T @ x + np.eye(3))
    return x, y, cov @ x.T @ y, cov


def _chain(regression, *, draws, thin, seed=3):
    x, y, mu, _ = regression
    xt, yt = tf.constant(x, tf.float32), tf.constant(y, tf.float32)
    w = tf.Variable(mu.astype(np.float32))

    def energy():
        r = yt - tf.linalg.matvec(xt, w)
        return 0.5 * tf.reduce_sum(r * r) + 0.5 * tf.reduce_sum(w * w)

    sampler = AdamMCMC(
        [w], energy, lr=0.02, sigma=0.15, sigma_delta=3.0, seed=seed, adapt_steps=RunConfig.burn_in
    )
    return draw_posterior(
        sampler,
        lambda step: (),
        draws=draws,
        burn_in=RunConfig.burn_in,
        thin=thin,
        max_thin=RunConfig.max_thin,
        seed=seed,
    )


def test_default_schedule_mixes_and_matches_the_posterior(regression) -> None:
    _, _, mu, cov = regression
    s = 200
    post = _chain(regression, draws=s, thin=RunConfig.mcmc_thin)  # the default: measured
    info = post.info
    assert info["thin_measured"] and info["thin"] >= 2, info
    assert info["warning"] is None, info
    z = np.linalg.solve(np.linalg.cholesky(cov), (post.samples - mu).T).T  # ~ N(0, I)
    ess = effective_sample_size(z)
    # nearly independent draws: ESS of the kept states at least s/2
    assert np.all(ess >= s / 2), ess
    n_eff = float(ess.min())
    # moments within 5 ESS-derived standard errors: mean 1/√n_eff, variance √(2/n_eff)
    assert np.all(np.abs(z.mean(axis=0)) < 5 / math.sqrt(n_eff))
    np.testing.assert_array_less(np.abs(z.var(axis=0, ddof=1) - 1), 5 * math.sqrt(2 / n_eff))
    assert np.all(split_rhat(z) < 1.1)


def test_thin_one_chain_is_flagged(regression) -> None:
    post = _chain(regression, draws=200, thin=1)
    assert post.info["warning"] is not None and "correlated" in post.info["warning"]
    # and the summary statistic agrees: the kept states' ESS is far below s
    assert post.info["ess_theta_min"] < 100


def test_warning_rules() -> None:
    assert warning_for({"ess_min": 40.0, "rhat_max": 1.0}, 50) is None
    assert "ESS 20" in warning_for({"ess_min": 20.0, "rhat_max": 1.0}, 50)
    assert "R-hat" in warning_for({"ess_min": 40.0, "rhat_max": 1.2}, 50)


def test_between_chain_rhat_flags_chains_that_disagree() -> None:
    # 4 chains of 100 independent states of 3 components: R-hat ~ 1 + O(1/n) and ESS ~ 400
    rng = np.random.default_rng(8)
    x = rng.standard_normal((100, 4, 3))
    ok = chain_summary(x, chains=4)
    assert ok["n"] == 400 and ok["rhat_max"] < 1.05 and ok["ess_min"] > 200, ok
    assert warning_for(ok, 400) is None
    # one chain stuck one standard deviation away (another mode): R-hat ~ 1.1, flagged
    x[:, 0] += 1.0
    bad = chain_summary(x, chains=4)
    assert bad["rhat_max"] > 1.05, bad
    assert "R-hat" in warning_for(bad, 400)
