"""B AdamMCMC chains in one graph: each equals the single-chain sampler of its seed, the
schedule runs them in lockstep (resumable), they sample a known posterior, and the coupling
flow's functional log-density equals its ordinary one. The pipeline runs a network's chains
batched for AdamMCMC on the coupling flow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from calamp._tf import tf
from calamp.bayes.batched import BatchedAdamMCMC
from calamp.bayes.chain import draw_posterior, run_chain
from calamp.bayes.diagnostics import effective_sample_size, split_rhat
from calamp.bayes.flat import get_flat, set_flat
from calamp.bayes.samplers import AdamMCMC
from calamp.config import RunConfig
from calamp.models.flows import CouplingFlow

# Bayesian linear regression y = Xw + ε (3 correlated weights, unit noise and prior), as in
# test_chain.py: posterior N(μ, Σ), Σ = (XᵀX + I)⁻¹, μ = Σ Xᵀy.
_RNG = np.random.default_rng(1)
_X = _RNG.normal(size=(100, 3))
_X[:, 1] = 0.5 * _X[:, 0] + math.sqrt(0.75) * _X[:, 1]
_Y = _X @ np.array([0.5, -1.0, 0.3]) + _RNG.normal(size=100)
_COV = np.linalg.inv(_X.T @ _X + np.eye(3))
_MU = _COV @ _X.T @ _Y
_XT, _YT = tf.constant(_X, tf.float32), tf.constant(_Y, tf.float32)
_KW = dict(lr=0.02, sigma=0.15, sigma_delta=3.0)


def _energy_rows(theta):
    r = _YT[None, :] - tf.linalg.matmul(theta, _XT, transpose_b=True)
    return 0.5 * tf.reduce_sum(r * r, axis=1) + 0.5 * tf.reduce_sum(theta * theta, axis=1)


def _energy_terms_rows(theta):
    """(energies (B,), per-event terms (B, 100)): the energy of ``_energy_rows`` split per event."""
    r = _YT[None, :] - tf.linalg.matmul(theta, _XT, transpose_b=True)
    terms = 0.5 * r * r
    return tf.reduce_sum(terms, axis=1) + 0.5 * tf.reduce_sum(theta * theta, axis=1), terms


@pytest.mark.parametrize("penalty", [False, True])
def test_each_batched_chain_is_the_single_chain_of_its_seed(penalty) -> None:
    seeds = [3, 17, 40]
    start = np.tile(_MU.astype(np.float32) + 0.3, (3, 1))
    rows = _energy_terms_rows if penalty else _energy_rows
    kw = dict(_KW, noise_penalty=penalty)
    batched = BatchedAdamMCMC(start, rows, seeds=seeds, adapt_steps=100, **kw)

    def single_energy(w):
        out = rows(w[None])
        return (out[0][0], out[1][0]) if penalty else out[0]

    singles = []
    for b, seed in enumerate(seeds):
        w = tf.Variable(start[b])
        singles.append(
            (w, AdamMCMC([w], lambda w=w: single_energy(w), seed=seed, adapt_steps=100, **kw))
        )
    for step in range(300):  # past the moment freezing at step 100
        out = batched.step()
        for b, (_, single) in enumerate(singles):
            one = single.step()
            assert bool(one["accepted"]) == bool(out["accepted"][b]), (step, b)
            np.testing.assert_allclose(one["energy"], out["energy"][b], rtol=1e-5)
    for b, (w, single) in enumerate(singles):
        np.testing.assert_allclose(batched.state()[b], w.numpy(), rtol=1e-5, atol=1e-6)
        assert batched.acceptance_rate[b] == pytest.approx(single.acceptance_rate)
    assert 0.2 < batched.acceptance_rate.mean() < 0.95  # a chain that moves, not a stuck one


def test_batched_schedule_samples_the_exact_posterior_in_lockstep() -> None:
    chains, s = 4, 100
    sampler = BatchedAdamMCMC(
        np.tile(_MU.astype(np.float32), (chains, 1)),
        _energy_rows,
        seeds=list(range(chains)),
        adapt_steps=RunConfig.burn_in,
        **_KW,
    )
    posts = draw_posterior(
        sampler, lambda step: (), draws=s, burn_in=RunConfig.burn_in, max_thin=RunConfig.max_thin,
        seed=3,
    )
    assert len(posts) == chains
    thins = {p.info["thin"] for p in posts}
    assert len(thins) == 1 and posts[0].info["thin_measured"] and posts[0].info["thin"] >= 2
    taus = [p.info["tau_burn_in_steps"] for p in posts]
    assert posts[0].info["thin"] == math.ceil(2 * max(taus))  # the slowest chain sets it
    samples = np.stack([p.samples for p in posts], axis=1)  # (s, C, 3)
    z = np.linalg.solve(np.linalg.cholesky(_COV), (samples.reshape(-1, 3) - _MU).T).T
    z = z.reshape(s, chains, 3)
    ess = effective_sample_size(z, chains=chains)
    assert np.all(ess >= chains * s / 2), ess
    n_eff = float(ess.min())
    flat = z.reshape(-1, 3)
    # moments within 5 ESS-derived standard errors: mean 1/√n_eff, variance √(2/n_eff)
    assert np.all(np.abs(flat.mean(axis=0)) < 5 / math.sqrt(n_eff))
    np.testing.assert_array_less(np.abs(flat.var(axis=0, ddof=1) - 1), 5 * math.sqrt(2 / n_eff))
    assert np.all(split_rhat(z, chains=chains) < 1.1)


def test_batched_run_chain_resumes_bit_identically(tmp_path) -> None:
    def make():
        return BatchedAdamMCMC(
            np.tile(_MU.astype(np.float32), (2, 1)), _energy_rows, seeds=[1, 2], **_KW
        )

    full = run_chain(make(), lambda step: (), n_steps=60, burn_in=10, thin=5, progress=False)
    assert full.samples.shape == (10, 2, 3) and full.energies.shape == (60, 2)
    assert full.acceptance_rate.shape == (2,)
    part = make()
    run_chain(part, lambda step: (), n_steps=60, burn_in=10, thin=5, progress=False,
              checkpoint_dir=tmp_path, checkpoint_every=20)
    resumed = make()
    again = run_chain(resumed, lambda step: (), n_steps=60, burn_in=10, thin=5,
                      progress=False, checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(again.samples, full.samples)
    with pytest.raises(ValueError, match="B\\)"):
        run_chain(
            BatchedAdamMCMC(np.zeros((3, 3), np.float32), _energy_rows, seeds=[1, 2, 3], **_KW),
            lambda step: (), n_steps=60, burn_in=10, thin=5, progress=False,
            checkpoint_dir=tmp_path,
        )


def test_batched_sampler_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="theta0"):
        BatchedAdamMCMC(np.zeros(3), _energy_rows, seeds=[0])
    with pytest.raises(ValueError, match="seeds"):
        BatchedAdamMCMC(np.zeros((2, 3)), _energy_rows, seeds=[0])
    with pytest.raises(ValueError, match="batch_fn"):
        run_chain(BatchedAdamMCMC(np.zeros((1, 3), np.float32), _energy_rows, seeds=[0]),
                  None, n_steps=2, progress=False)


@pytest.mark.parametrize("transform,context", [("spline", 0), ("affine", 2)])
def test_coupling_flow_batched_log_prob_equals_log_prob(transform, context) -> None:
    rng = np.random.default_rng(0)
    model = CouplingFlow(3, context, n_couplings=4, hidden=(16, 16), transform=transform, seed=2)
    start = get_flat(model.trainable_variables)
    thetas = np.stack([start + 0.1 * rng.standard_normal(start.shape) for _ in range(3)])
    thetas = thetas.astype(np.float32)
    x = rng.standard_normal((3, 40, 3)).astype(np.float32)
    c = rng.standard_normal((3, 40, context)).astype(np.float32) if context else None
    rows = model.batched_log_prob(thetas, x, c).numpy()
    assert rows.shape == (3, 40)
    for b in range(3):
        set_flat(model.trainable_variables, thetas[b])
        want = model.log_prob(x[b], None if c is None else c[b]).numpy()
        np.testing.assert_allclose(rows[b], want, rtol=1e-5, atol=1e-5)
    vi = CouplingFlow(2, bayesian="vi", n_couplings=2, hidden=(8,), seed=0)
    with pytest.raises(ValueError, match="deterministic"):
        vi.batched_log_prob(np.zeros((1, 10), np.float32), np.zeros((1, 5, 2), np.float32))


def test_cnf_batched_log_prob_equals_log_prob() -> None:
    from calamp.models.cnf import FlowMatchingCNF

    rng = np.random.default_rng(1)
    model = FlowMatchingCNF(2, 1, hidden=16, layers=2, solver="rk4", n_steps=4, seed=3)
    start = get_flat(model.trainable_variables)
    thetas = np.stack([start + 0.1 * rng.standard_normal(start.shape) for _ in range(2)])
    thetas = thetas.astype(np.float32)
    x = rng.standard_normal((2, 30, 2)).astype(np.float32)
    c = rng.standard_normal((2, 30, 1)).astype(np.float32)
    rows = model.batched_log_prob(thetas, x, c).numpy()
    for b in range(2):
        set_flat(model.trainable_variables, thetas[b])
        np.testing.assert_allclose(rows[b], model.log_prob(x[b], c[b]).numpy(), rtol=1e-4,
                                   atol=1e-4)
