"""Tests of calamp.models.batched: K batched CNFs equal K separate FlowMatchingCNFs."""

from __future__ import annotations

import numpy as np
import pytest

from calamp._tf import tf
from calamp.bayes import vi as _vi
from calamp.models.batched import BatchedCNF
from calamp.models.cnf import FlowMatchingCNF

K, D, C = 3, 2, 1
SEEDS = [11, 22, 33]


def _data(k: int = K, n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(k, n, D)).astype(np.float32)
    c = np.full((k, n, C), 4.0, np.float32)
    return x, c


def test_batched_velocity_equals_each_cnf() -> None:
    batch = BatchedCNF(K, D, C, seeds=SEEDS)
    singles = [FlowMatchingCNF(D, C, seed=s) for s in SEEDS]
    y, c = _data(n=17)
    t = np.random.default_rng(1).uniform(size=(K, 17, 1)).astype(np.float32)
    v = batch.velocity(t, y, c).numpy()
    for k, m in enumerate(singles):
        ref = m.velocity(t[k], y[k], c[k]).numpy()
        # same weights (same init seeds), float32 matmuls: rounding only
        np.testing.assert_allclose(v[k], ref, rtol=1e-5, atol=1e-6)
    # to_generators gives back models with the same velocity
    for k, m in enumerate(batch.to_generators()):
        np.testing.assert_allclose(m.velocity(t[k], y[k], c[k]).numpy(), v[k], rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize(("bayesian", "scale_lr"), [(None, 1.0), ("vi", 1.0), ("vi", 10.0)])
def test_batched_training_equals_separate_fits(bayesian: str | None, scale_lr: float) -> None:
    vi = _vi.VIConfig(kl_weight=1e-3, scale_lr_factor=scale_lr) if bayesian == "vi" else None
    x, c = _data(n=48)
    fit_seeds = [5, 6, 7]
    batch = BatchedCNF(K, D, C, seeds=SEEDS, bayesian=bayesian, vi=vi)
    # 7 steps with batch 16 crosses an epoch boundary (3 steps per epoch); blocks of 4 steps
    hist = batch.fit(x, c, steps=7, batch_size=16, learning_rate=1e-2, betas=(0.9, 0.99),
                     seeds=fit_seeds, steps_per_call=4)
    trained = batch.to_generators()
    for k in range(K):
        m = FlowMatchingCNF(D, C, seed=SEEDS[k], bayesian=bayesian, vi=vi)
        ref = m.fit(x[k], c[k], steps=7, batch_size=16, learning_rate=1e-2, betas=(0.9, 0.99),
                    seed=fit_seeds[k], progress=False)
        # identical random numbers and batches; only float32 summation order differs, which
        # after 7 Adam steps of size 1e-2 stays far below 1e-4 in the weights
        np.testing.assert_allclose(hist["loss"][:, k], ref["loss"], rtol=1e-4, atol=1e-6)
        for a, b in zip(trained[k].trainable_variables, m.trainable_variables, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("convention", ["sum", "mean"])
def test_batched_kl_equals_per_layer_sum(convention: str) -> None:
    vi = _vi.VIConfig(kl_convention=convention, prior_scale=0.7)
    batch = BatchedCNF(2, D, C, seeds=[1, 2], bayesian="vi", vi=vi)
    # perturb rho so that scales differ per entry
    for r in batch.rhos:
        r.assign(r + tf.random.stateless_normal(r.shape, [1, 2]) * 0.3)
    kl = batch.kl_divergence().numpy()
    for k, m in enumerate(batch.to_generators()):
        np.testing.assert_allclose(kl[k], _vi.kl_divergence(m).numpy(), rtol=1e-5)
        # oracle: closed-form Gaussian KL summed (or tensor-averaged) by hand in float64
        tot = 0.0
        for layer in m.net:
            loc = layer.posterior_loc.numpy().astype(np.float64)
            s = np.log1p(np.exp(layer.posterior_rho.numpy().astype(np.float64)))
            e = np.log(0.7 / s) + (s**2 + loc**2) / (2 * 0.49) - 0.5
            ks = loc.size - layer.units
            tot += e.sum() if convention == "sum" else e[:ks].mean() + e[ks:].mean()
        np.testing.assert_allclose(kl[k], tot, rtol=1e-5)


def test_batched_sampling_equals_each_model_rk4() -> None:
    singles = [FlowMatchingCNF(D, C, seed=s, solver="rk4", n_steps=8) for s in SEEDS]
    batch = BatchedCNF.from_generators(singles)
    c = np.full((50, C), 4.0, np.float32)
    out = batch.sample(50, c, seeds=[1, 2, 3]).numpy()
    assert out.shape == (K, 50, D)
    for k, m in enumerate(singles):
        # fixed-step RK4 and the same noise: only float rounding differs
        np.testing.assert_allclose(out[k], m.sample(50, c, seed=k + 1).numpy(), rtol=1e-4,
                                   atol=1e-5)
    chunks = list(batch.sample_chunks(50, c, seeds=[1, 2, 3], chunk_size=20))
    assert [ch.shape for ch in chunks] == [(K, 20, D), (K, 20, D), (K, 10, D)]
    ref = np.concatenate(list(singles[1].sample_chunks(50, c, seed=2, chunk_size=20)))
    np.testing.assert_allclose(np.concatenate(chunks, axis=1)[1], ref, rtol=1e-4, atol=1e-5)


def test_from_eval_weights_draws() -> None:
    m = FlowMatchingCNF(D, C, seed=4, solver="rk4", n_steps=4)
    w0 = m.get_eval_weights()
    draws = np.stack([w0, w0 + 0.01, w0 - 0.02])
    batch = BatchedCNF.from_eval_weights(m, draws)
    np.testing.assert_array_equal(m.get_eval_weights(), w0)  # template restored
    c = np.full((30, C), 4.0, np.float32)
    out = batch.sample(30, c, seeds=[7, 7, 7]).numpy()
    for i, w in enumerate(draws):
        m.set_eval_weights(w)
        np.testing.assert_allclose(out[i], m.sample(30, c, seed=7).numpy(), rtol=1e-4, atol=1e-5)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_networks"):
        BatchedCNF(0, D)
    batch = BatchedCNF(2, D, 0, seeds=[1, 2])
    with pytest.raises(ValueError, match="seeds"):
        batch.sample(5, seeds=[1])
    with pytest.raises(ValueError, match="`x`"):
        batch.fit(np.zeros((3, 10, D)), steps=1, batch_size=5)


def test_pipeline_trains_cnf_groups_batched_like_separate_networks(tmp_path) -> None:
    """The job trains its CNF networks in TRAINING_GROUPS batched groups (a fixed function of K,
    not of the workers); each network equals its separate training to float rounding."""
    from calamp import pipeline
    from calamp.bayes.store import DrawStore
    from calamp.config import make_config
    from calamp.posterior import network_groups, train_network
    from calamp.sources import prepare_source

    cfg = make_config(dict(
        toy="ring", model="cnf", method="vi", networks=3, draws=3, train_steps=40,
        batch_size=100, n_train=300, truth_events=2_000, generated=500, n_quantiles=(3,),
        hidden=16, layers=2, bootstrap=0, plots=False, progress=False, workers=1,
    ))
    assert network_groups(cfg) == [(0, 1), (2,)]
    assert network_groups(make_config(cfg.to_dict(), dict(method="ensemble"))) == [
        (0,), (1,), (2,)]
    res = pipeline.run_job(cfg, out=tmp_path / "job")
    fits = [net["fit"] for net in res["networks"]]
    assert fits[0]["batched_with"] == [0, 1] and fits[1]["batched_with"] == [0, 1]
    assert "batched_with" not in fits[2]
    source = prepare_source(cfg, None, None)
    for k in (0, 1):
        alone = train_network(cfg, k, source)
        assert alone.info["fit"]["final_loss"] == pytest.approx(fits[k]["final_loss"], rel=1e-4)
        weights, _ = DrawStore(tmp_path / "job" / "draws").load(k)
        np.testing.assert_allclose(weights, alone.weights, rtol=1e-3, atol=1e-5)
