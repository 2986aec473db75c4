"""Tests of calamp.bayes.vi: VI dense layers, KL conventions and frozen posterior draws."""

from __future__ import annotations

import numpy as np
import pytest

from calamp._tf import tf, tf_keras, tfd
from calamp.bayes import vi


def _net(kl_convention: str = "sum") -> tf_keras.Sequential:
    cfg = vi.VIConfig(kl_convention=kl_convention)
    net = tf_keras.Sequential(
        [
            vi.dense(16, "elu", bayesian="vi", vi=cfg, seed=1),
            vi.dense(3, bayesian="vi", vi=cfg, seed=2),
        ]
    )
    net(tf.zeros([1, 4]))
    return net


X = tf.random.stateless_normal([32, 4], seed=[5, 6])


def test_vi_config_validation_and_roundtrip() -> None:
    cfg = vi.VIConfig.from_k(10, 1000, kl_convention="mean")
    assert cfg.kl_weight == pytest.approx(0.01)
    assert vi.VIConfig.from_dict(cfg.to_dict()) == cfg
    assert vi.VIConfig().init_scale == pytest.approx(np.log1p(np.exp(-3.0)))
    with pytest.raises(ValueError, match="kl_convention"):
        vi.VIConfig(kl_convention="average")
    with pytest.raises(ValueError, match="prior_scale"):
        vi.VIConfig(prior_scale=0.0)
    with pytest.raises(ValueError, match="unknown VIConfig keys"):
        vi.VIConfig.from_dict({"kl_factor": 1.0})
    with pytest.raises(ValueError, match="scale_lr_factor"):
        vi.VIConfig(scale_lr_factor=0.0)
    # configs stored before the field existed load with the old behaviour (factor 1)
    old = {k: v for k, v in cfg.to_dict().items() if k != "scale_lr_factor"}
    assert vi.VIConfig.from_dict(old).scale_lr_factor == 1.0


def test_dense_factory() -> None:
    plain = vi.dense(4, bayesian=False, seed=0)
    assert type(plain) is tf_keras.layers.Dense
    assert isinstance(vi.dense(4, bayesian="vi"), vi.VIDense)
    assert isinstance(vi.dense(4, bayesian=True), vi.VIDense)
    with pytest.raises(ValueError, match="bayesian"):
        vi.dense(4, bayesian="mcmc")


def test_initial_posterior_and_variables() -> None:
    net = _net()
    layer = vi.vi_layers(net)[0]
    # P = 4*16 + 16 weights; initial scale softplus(-3), bias means 0
    assert layer.posterior_loc.shape == (80,)
    np.testing.assert_allclose(layer.posterior_scale.numpy(), np.log1p(np.exp(-3.0)), rtol=1e-6)
    np.testing.assert_array_equal(layer.posterior_loc.numpy()[64:], 0.0)
    assert len(net.trainable_variables) == 4  # loc and rho of two layers


def test_kl_sum_is_closed_form_and_mean_is_sum_over_size_per_tensor() -> None:
    net_sum, net_mean = _net("sum"), _net("mean")
    # same seeds -> identical posteriors
    for a, b in zip(vi.vi_layers(net_sum), vi.vi_layers(net_mean), strict=True):
        np.testing.assert_array_equal(a.posterior_loc.numpy(), b.posterior_loc.numpy())
        a.posterior_rho.assign(tf.random.stateless_normal(a.posterior_rho.shape, [1, 2]) - 2.0)
        b.posterior_rho.assign(a.posterior_rho)
    total_sum, total_mean = 0.0, 0.0
    for layer in vi.vi_layers(net_sum):
        mu = layer.posterior_loc.numpy().astype(np.float64)
        sd = layer.posterior_scale.numpy().astype(np.float64)
        # KL(N(mu, sd^2) || N(0, 1)) element-wise, closed form
        kl = -np.log(sd) + 0.5 * (sd**2 + mu**2) - 0.5
        np.testing.assert_allclose(layer.kl_divergence().numpy(), kl.sum(), rtol=1e-5)
        k = layer.input_spec.axes[-1] * layer.units
        total_sum += kl.sum()
        total_mean += kl[:k].sum() / k + kl[k:].sum() / (kl.size - k)
    np.testing.assert_allclose(vi.kl_divergence(net_sum).numpy(), total_sum, rtol=1e-5)
    np.testing.assert_allclose(vi.kl_divergence(net_mean).numpy(), total_mean, rtol=1e-5)
    # the "sum" convention equals TFP's KL of the whole mean-field distribution
    layer = vi.vi_layers(net_sum)[0]
    q = layer._posterior(X)
    p = layer._prior(X)
    np.testing.assert_allclose(
        tfd.kl_divergence(q, p).numpy(), layer.kl_divergence().numpy(), rtol=1e-5
    )


def test_layer_loss_is_weighted_kl() -> None:
    cfg = vi.VIConfig(kl_weight=0.25)
    layer = vi.VIDense(5, config=cfg, seed=3)
    layer(X)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(layer.losses[0].numpy(), 0.25 * layer.kl_divergence().numpy())
    np.testing.assert_allclose(vi.kl_loss(layer).numpy(), 0.25 * layer.kl_divergence().numpy())


def test_frozen_draws_in_tf_function() -> None:
    net = _net()
    f = tf.function(
        lambda x: net(x, training=False), input_signature=[tf.TensorSpec([None, 4], tf.float32)]
    )

    vi.freeze_draw(net, 11)
    a1 = f(X).numpy()
    vi.set_noise_seed(net, 99)  # noise seed is ignored while frozen
    a2 = f(X).numpy()
    np.testing.assert_array_equal(a1, a2)
    # two passes over the inputs in batches use the same draw as one pass
    batched = np.concatenate([f(X[:16]).numpy(), f(X[16:]).numpy()])
    np.testing.assert_allclose(batched, a1, rtol=1e-5, atol=1e-6)
    # training mode does not unfreeze
    np.testing.assert_allclose(net(X, training=True).numpy(), a1, rtol=1e-5, atol=1e-6)

    vi.freeze_draw(net, 12)
    b = f(X).numpy()
    assert np.abs(b - a1).max() > 1e-3  # another draw (weight std ~0.05 -> output shifts ~0.1)
    vi.freeze_draw(net, 11)
    np.testing.assert_array_equal(f(X).numpy(), a1)  # same seed reproduces

    # unfrozen: weights follow the noise seed, through the same trace (no stale tf.cond)
    vi.unfreeze(net)
    assert not vi.is_frozen(net)
    vi.set_noise_seed(net, 1)
    c1 = f(X).numpy()
    np.testing.assert_array_equal(f(X).numpy(), c1)  # pure function of the seed
    vi.set_noise_seed(net, 2)
    c2 = f(X).numpy()
    assert np.abs(c2 - c1).max() > 1e-3
    assert f.experimental_get_tracing_count() == 1

    # freeze_mean reproduces a deterministic net with the posterior means
    vi.freeze_mean(net)
    l0, l1 = vi.vi_layers(net)
    w0, w1 = l0.posterior_loc.numpy(), l1.posterior_loc.numpy()
    h = X.numpy() @ w0[:64].reshape(4, 16) + w0[64:]
    h = np.where(h > 0, h, np.expm1(h))
    expected = h @ w1[:48].reshape(16, 3) + w1[48:]
    np.testing.assert_allclose(f(X).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_freeze_draw_matches_posterior_statistics() -> None:
    # one layer, 1 input 1 output: draws of (kernel, bias) must be N(loc, scale^2)
    layer = vi.VIDense(1, seed=4)
    layer(tf.ones([1, 1]))
    layer.posterior_loc.assign([0.3, -0.2])
    layer.posterior_rho.assign([0.0, -1.0])
    draws = np.array([layer.sample_weights(tf.constant([7, s])).numpy() for s in range(400)])
    scale = np.log1p(np.exp([0.0, -1.0]))
    # mean of 400 draws: standard error scale/20; allow 4 standard errors
    np.testing.assert_allclose(draws.mean(0), [0.3, -0.2], atol=4 * scale.max() / 20)
    # sample std: relative standard error 1/sqrt(2*399) ~ 3.5%; allow 4 -> 14%
    np.testing.assert_allclose(draws.std(0, ddof=1), scale, rtol=0.14)


def test_bayesian_linear_regression_recovers_closed_form_posterior() -> None:
    """Linear model y = w x + b + N(0, 1) with prior N(0, 1) on w, b.

    With x symmetric about 0 the exact posterior factorises (X^T X is diagonal), so the
    mean-field family contains it and the optimum of the per-event negative ELBO
    (Gaussian NLL mean + KL/N, i.e. "sum" convention with kl_weight 1/N) is the exact posterior.
    """
    n, sigma = 20, 1.0
    x = np.linspace(-1.0, 1.0, n)
    y = 0.7 * x - 0.3 + sigma * np.random.default_rng(0).normal(size=n)
    design = np.stack([x, np.ones(n)], axis=1)
    cov = np.linalg.inv(np.eye(2) + design.T @ design / sigma**2)
    mu = cov @ design.T @ y / sigma**2
    post_sd = np.sqrt(np.diag(cov))
    assert abs(cov[0, 1]) < 1e-12

    layer = vi.VIDense(1, config=vi.VIConfig.from_k(1.0, n), seed=1)
    xt, yt = tf.constant(x[:, None], tf.float32), tf.constant(y[:, None], tf.float32)
    layer(xt)
    var = layer.trainable_variables
    n_mc = 8  # weight draws per step (reduces the gradient noise)

    @tf.function
    def run(steps: tf.Tensor, lr: tf.Tensor, stream: tf.Tensor) -> None:
        for t in tf.range(steps):
            with tf.GradientTape() as tape:
                nll = 0.0
                for k in range(n_mc):
                    vi.set_noise_seed(layer, tf.stack([stream, t * n_mc + k]))
                    nll += tf.reduce_mean(0.5 * tf.square(yt - layer(xt)) / sigma**2) / n_mc
                loss = nll + vi.kl_loss(layer)
            for v, g in zip(var, tape.gradient(loss, var), strict=True):
                v.assign_sub(lr * g)

    run(tf.constant(1500), tf.constant(0.05), tf.constant(0))
    run(tf.constant(1500), tf.constant(0.01), tf.constant(1))
    # Tolerances: with this SGD schedule the stationary jitter of the parameters, measured over
    # seeds, is <= 0.02 posterior std for the means and ~1% for the stds (plus a ~2% downward
    # bias of the stds from the finite step size). We allow 0.1 posterior std and 7%.
    np.testing.assert_allclose(layer.posterior_loc.numpy(), mu, atol=0.1 * post_sd.min())
    np.testing.assert_allclose(layer.posterior_scale.numpy(), post_sd, rtol=0.07)


def test_vi_layers_order_and_errors() -> None:
    net = _net()
    layers = vi.vi_layers(net)
    assert [lay.units for lay in layers] == [16, 3]  # construction order
    assert vi.vi_layers([net, layers[0]]) == layers  # deduplicated
    with pytest.raises(RuntimeError, match="not built"):
        vi.freeze_draw(vi.VIDense(2), 0)


def test_width_learning_rate_factor_applies_to_exactly_the_widths() -> None:
    from calamp.models.flows import CouplingFlow

    model = CouplingFlow(4, 1, n_couplings=2, hidden=(8,), bayesian="vi",
                         vi=vi.VIConfig(kl_weight=1e-3, scale_lr_factor=7.0), seed=0)
    rho = {id(layer.posterior_rho) for layer in vi.vi_layers(model)}
    variables = model.fit_variables
    factors = vi.lr_factors(model, variables)
    assert len(rho) == 4 and sum(f == 7.0 for f in factors) == 4
    assert all((f == 7.0) == (id(v) in rho) for v, f in zip(variables, factors, strict=True))


@pytest.mark.parametrize("factor", [1.0, 10.0])
def test_widths_reach_the_closed_form_posterior_only_with_their_own_step_size(factor) -> None:
    """Adam (calamp.optim.Adam, as Generator.fit uses it) on the linear regression above, from
    the narrow start 1e-3 of calamp's shower flows: 1,000 cosine-scheduled steps of lr 1e-2.

    For widths << 1, softplus(rho) ~ exp(rho) and Adam moves rho by at most ~lr per step, so
    at factor 1 a width can grow at most by e^(sum of the step sizes) = e^5 (to 0.15), below
    the closed-form posterior sds 0.35 and 0.22 whatever the data say; with factor 10 the
    widths get there early and the decaying steps let them settle (within the 7 % of the SGD
    test above)."""
    from calamp.optim import Adam

    n, sigma, steps, lr = 20, 1.0, 1000, 1e-2
    x = np.linspace(-1.0, 1.0, n)
    y = 0.7 * x - 0.3 + sigma * np.random.default_rng(0).normal(size=n)
    design = np.stack([x, np.ones(n)], axis=1)
    post_sd = np.sqrt(np.diag(np.linalg.inv(np.eye(2) + design.T @ design / sigma**2)))
    layer = vi.VIDense(1, config=vi.VIConfig.from_k(1.0, n, init_scale=1e-3,
                                                    scale_lr_factor=factor), seed=1)
    xt, yt = tf.constant(x[:, None], tf.float32), tf.constant(y[:, None], tf.float32)
    layer(xt)
    var = layer.trainable_variables
    adam = Adam(var, lr, (0.9, 0.999), 1e-8, vi.lr_factors(layer, var))
    n_mc = 8

    @tf.function
    def run() -> None:
        for t in tf.range(steps):
            with tf.GradientTape() as tape:
                nll = 0.0
                for k in range(n_mc):
                    vi.set_noise_seed(layer, tf.stack([tf.constant(0), t * n_mc + k]))
                    nll += tf.reduce_mean(0.5 * tf.square(yt - layer(xt)) / sigma**2) / n_mc
                loss = nll + vi.kl_loss(layer)
            cosine = 0.5 * (1.0 + tf.cos(np.pi * tf.cast(t, tf.float32) / steps))
            adam.apply(tape.gradient(loss, var), var, cosine)

    run()
    scale = layer.posterior_scale.numpy()
    if factor == 1.0:
        assert np.all(scale <= 1e-3 * np.exp(lr * steps / 2) * 1.01)
        assert np.all(scale < 0.7 * post_sd)
    else:
        np.testing.assert_allclose(scale, post_sd, rtol=0.07)
