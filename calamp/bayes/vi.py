"""Variational-inference (VI) dense layers with frozen posterior draws.

A :class:`VIDense` layer is a :class:`tfp.layers.DenseVariational` with a mean-field Gaussian
posterior ``q(w) = N(loc, softplus(rho)^2)`` and a Gaussian prior ``N(0, prior_scale^2)`` on every
kernel and bias entry (Blundell et al., arXiv:1505.05424). On top of TFP's layer it adds what a
Bayesian *generator* needs:

* **Stateless noise.** Outside a frozen draw the weights are ``loc + scale * eps`` with
  ``eps = stateless_normal(seed=noise_seed)``. ``noise_seed`` is a non-trainable variable that the
  caller sets once per training step (:func:`set_noise_seed`), so the weights are a pure function
  of the step seed: repeated calls inside one step see the same weights, and a resumed training
  run is bit-identical. One weight sample per call is shared by the whole batch (no flipout).
* **Frozen draws.** :func:`freeze_draw` samples one concrete weight vector per layer from a seed
  (stateless RNG), stores it in the non-trainable variable ``frozen_weights`` and sets the
  boolean variable ``frozen``. While frozen every call, in training or inference, in eager mode or
  inside a ``tf.function`` (the flag is read with ``tf.cond``, so a trace never goes stale), uses
  exactly that vector. :func:`unfreeze` goes back to sampling.

KL conventions (``VIConfig.kl_convention``), with ``kl_e`` the closed-form element-wise
``KL(N(loc_e, scale_e^2) || N(0, prior_scale^2))``:

* ``"sum"``: ``KL = sum_e kl_e`` over all kernel and bias entries; the true KL of the mean-field
  posterior to the prior, what ``tfp.layers`` computes. With the per-event data loss and
  ``kl_weight = 1/N`` (N training events) the loss is the per-event negative ELBO.
* ``"mean"``: ``KL = mean_{kernel} kl_e + mean_{bias} kl_e``, the element-wise KL averaged within
  each weight tensor, then summed over tensors: the normalisation of the reference code of
  arXiv:2408.00838. It is smaller than ``"sum"`` by the tensor sizes (hundreds of times for
  typical layers), so a KL factor ``k`` means a much weaker prior pull than with ``"sum"``.

The model loss is ``data_loss + kl_weight * KL`` with ``kl_weight = k / n``: the KL factor ``k`` of
the paper (1 ... 100) divided by a normalisation ``n`` the caller chooses (training-set size for
the ELBO, batch size in the reference code); see :meth:`VIConfig.from_k`.

Size (~500 lines): the layer, its KL under both conventions, the configuration and the
frozen-draw machinery are one contract (a draw is defined by the layer's noise and freezing);
most of the length is documentation of the conventions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from calamp._tf import tf, tf_keras, tfd, tfp

__all__ = [
    "KL_CONVENTIONS",
    "VIConfig",
    "VIDense",
    "as_vi_config",
    "dense",
    "freeze_draw",
    "freeze_mean",
    "is_frozen",
    "kl_divergence",
    "kl_loss",
    "lr_factors",
    "set_noise_seed",
    "unfreeze",
    "vi_layers",
]

KL_CONVENTIONS = ("sum", "mean")
_SOFTPLUS_M3 = math.log1p(math.exp(-3.0))  # softplus(-3) ~ 0.0486, the reference initial sigma


@dataclass(frozen=True)
class VIConfig:
    """Settings of the mean-field Gaussian VI layers.

    Attributes:
        prior_scale: standard deviation sigma_p of the prior N(0, sigma_p^2) on every weight.
        init_scale: initial posterior standard deviation (softplus-parametrised), default
            softplus(-3) ~ 0.049 as in the reference code.
        kl_convention: ``"sum"`` (true KL) or ``"mean"`` (reference normalisation), see module doc.
        kl_weight: factor in front of the KL in the loss, ``k / n`` (see :meth:`from_k`).
        scale_lr_factor: the training learning rate of the width parameters ``rho`` is this
            times that of the means. For widths far below 1, softplus(rho) ≈ exp(rho), so Adam
            moves log(width) by at most about lr per step: with lr 1e-3 and 1,500 cosine steps
            a width can grow from its start by e^0.75 = 2.1x at most, whatever the data and
            the prior say (measured on the default shower flow: every width ended between
            1.04e-3 and 2.12e-3 from 1e-3). A factor > 1 lets the widths reach the ELBO's
            optimum within the same steps.
    """

    prior_scale: float = 1.0
    init_scale: float = _SOFTPLUS_M3
    kl_convention: str = "sum"
    kl_weight: float = 1.0
    scale_lr_factor: float = 1.0

    def __post_init__(self) -> None:
        if not (self.prior_scale > 0 and math.isfinite(self.prior_scale)):
            msg = f"`prior_scale` must be a positive finite number, got {self.prior_scale!r}"
            raise ValueError(msg)
        if not (self.init_scale > 0 and math.isfinite(self.init_scale)):
            msg = f"`init_scale` must be a positive finite number, got {self.init_scale!r}"
            raise ValueError(msg)
        if self.kl_convention not in KL_CONVENTIONS:
            msg = f"`kl_convention` must be one of {KL_CONVENTIONS}, got {self.kl_convention!r}"
            raise ValueError(msg)
        if not (self.kl_weight >= 0 and math.isfinite(self.kl_weight)):
            msg = f"`kl_weight` must be a non-negative finite number, got {self.kl_weight!r}"
            raise ValueError(msg)
        if not (self.scale_lr_factor > 0 and math.isfinite(self.scale_lr_factor)):
            msg = (f"`scale_lr_factor` must be a positive finite number, "
                   f"got {self.scale_lr_factor!r}")
            raise ValueError(msg)

    @classmethod
    def from_k(cls, k: float, n: int, **kwargs: Any) -> VIConfig:
        """Config with ``kl_weight = k / n``: KL factor ``k``, normalisation ``n`` (events)."""
        if n <= 0:
            msg = f"`n` must be positive, got {n!r}"
            raise ValueError(msg)
        return cls(kl_weight=float(k) / float(n), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VIConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            msg = f"unknown VIConfig keys {unknown}; expected a subset of {sorted(names)}"
            raise ValueError(msg)
        return cls(**dict(d))


def as_vi_config(vi: VIConfig | Mapping[str, Any] | None) -> VIConfig:
    """Accept a :class:`VIConfig`, its dict form, or ``None`` (defaults)."""
    if vi is None:
        return VIConfig()
    if isinstance(vi, VIConfig):
        return vi
    if isinstance(vi, Mapping):
        return VIConfig.from_dict(vi)
    msg = f"`vi` must be a VIConfig, a dict or None, got {type(vi).__name__}"
    raise TypeError(msg)


def _softplus_inverse(y: float) -> float:
    return float(y + np.log(-np.expm1(-y)))


def _seed_tensor(seed: Any) -> tf.Tensor:
    """Stateless seed (2,) int32 from an int, a pair, or a tensor."""
    if isinstance(seed, (int, np.integer)):
        state = np.random.SeedSequence(int(seed)).generate_state(2, dtype=np.uint32)
        return tf.constant(state.view(np.int32))
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        msg = f"`seed` must be an int or an integer tensor of shape (2,), got dtype {seed.dtype}"
        raise TypeError(msg)
    return tf.cast(seed, tf.int32)


class _MeanFieldNormal(tf_keras.layers.Layer):
    """Posterior of one VI layer: independent normals over the flat (kernel, bias) vector."""

    def __init__(
        self,
        kernel_size: int,
        bias_size: int,
        fan_in: int,
        fan_out: int,
        init_scale: float,
        seed: int | None,
        zero_init: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size)
        self.bias_size = int(bias_size)
        size = self.kernel_size + self.bias_size
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31))
        init_seed = _seed_tensor(seed)
        ksize = self.kernel_size

        def loc_init(shape: Any, dtype: Any = None) -> tf.Tensor:
            if zero_init:
                return tf.zeros(shape, dtype)
            kernel = tf.random.stateless_uniform(
                [ksize], init_seed, minval=-limit, maxval=limit, dtype=dtype
            )
            return tf.concat([kernel, tf.zeros([size - ksize], dtype)], axis=0)

        self.loc = self.add_weight(name="loc", shape=[size], initializer=loc_init)
        self.rho = self.add_weight(
            name="rho",
            shape=[size],
            initializer=tf_keras.initializers.Constant(_softplus_inverse(init_scale)),
        )

    @property
    def scale(self) -> tf.Tensor:
        """Posterior standard deviations, (P,)."""
        return tf.nn.softplus(self.rho)

    def call(self, inputs: Any) -> tfd.Distribution:
        del inputs
        return tfd.Independent(tfd.Normal(self.loc, self.scale), reinterpreted_batch_ndims=1)


class _GaussianPrior(tf_keras.layers.Layer):
    def __init__(self, size: int, scale: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = int(size)
        self.prior_scale = float(scale)

    def call(self, inputs: Any) -> tfd.Distribution:
        del inputs
        zeros = tf.zeros([self.size], self.dtype)
        return tfd.Independent(tfd.Normal(zeros, self.prior_scale), reinterpreted_batch_ndims=1)


_creation_counter = itertools.count()


class VIDense(tfp.layers.DenseVariational):
    """Mean-field Gaussian dense layer with stateless noise and frozen draws.

    Args:
        units: output features.
        activation: Keras activation name or callable.
        config: :class:`VIConfig` (prior, initial scale, KL convention and weight).
        seed: integer seed of the initial posterior means (Glorot-uniform kernel, zero bias).
        zero_init: start with zero posterior means (e.g. a flow's last layer, identity start).
        add_kl_loss: also register ``kl_weight * KL`` with Keras' ``add_loss`` on every call, so a
            plain ``tf_keras.Model.fit`` optimises the ELBO. calamp's generators compute the KL
            directly with :func:`kl_loss` instead and ignore ``layer.losses``.

    Input (..., in) -> output (..., units). Variables: trainable ``loc``/``rho`` (P,) with
    P = in*units + units, non-trainable ``frozen_weights`` (P,), ``frozen`` (bool) and
    ``noise_seed`` (2,) int32.
    """

    def __init__(
        self,
        units: int,
        activation: Any = None,
        *,
        config: VIConfig | Mapping[str, Any] | None = None,
        seed: int | None = None,
        zero_init: bool = False,
        add_kl_loss: bool = True,
        **kwargs: Any,
    ) -> None:
        self.vi_config = as_vi_config(config)
        self._init_seed = seed
        self._zero_init = bool(zero_init)
        self._add_kl_loss = bool(add_kl_loss)
        self.creation_index = next(_creation_counter)
        super().__init__(
            units,
            make_posterior_fn=self._make_posterior,
            make_prior_fn=self._make_prior,
            kl_weight=self.vi_config.kl_weight,
            kl_use_exact=True,
            activation=activation,
            **kwargs,
        )

    # -- construction ------------------------------------------------------------------------
    def _make_posterior(self, kernel_size: int, bias_size: int, dtype: Any) -> _MeanFieldNormal:
        fan_in = kernel_size // self.units
        return _MeanFieldNormal(
            kernel_size,
            bias_size,
            fan_in,
            self.units,
            self.vi_config.init_scale,
            self._init_seed,
            self._zero_init,
            dtype=dtype,
            name="posterior",
        )

    def _make_prior(self, kernel_size: int, bias_size: int, dtype: Any) -> _GaussianPrior:
        return _GaussianPrior(
            kernel_size + bias_size, self.vi_config.prior_scale, dtype=dtype, name="prior"
        )

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        size = self._posterior.kernel_size + self._posterior.bias_size
        self.frozen_weights = self.add_weight(
            name="frozen_weights", shape=[size], initializer="zeros", trainable=False
        )
        self.frozen = self.add_weight(
            name="frozen", shape=[], dtype=tf.bool, initializer="zeros", trainable=False
        )
        self.noise_seed = self.add_weight(
            name="noise_seed", shape=[2], dtype=tf.int32, initializer="zeros", trainable=False
        )

    # -- posterior ---------------------------------------------------------------------------
    @property
    def posterior_loc(self) -> tf.Variable:
        """Posterior means, flat (P,) = (kernel.ravel(), bias)."""
        return self._posterior.loc

    @property
    def posterior_rho(self) -> tf.Variable:
        """Unconstrained posterior scales, scale = softplus(rho), (P,)."""
        return self._posterior.rho

    @property
    def posterior_scale(self) -> tf.Tensor:
        """Posterior standard deviations (P,)."""
        return self._posterior.scale

    def _check_built(self) -> None:
        if not self.built:
            msg = f"VI layer {self.name!r} is not built yet; call the model once on an input first"
            raise RuntimeError(msg)

    def sample_weights(self, seed: Any) -> tf.Tensor:
        """One weight sample ``loc + scale * eps``, eps from the stateless seed (2,); (P,)."""
        self._check_built()
        eps = tf.random.stateless_normal(
            tf.shape(self.posterior_loc), seed=_seed_tensor(seed), dtype=self.posterior_loc.dtype,
            alg="philox",  # = the CPU default outside XLA; XLA's default is 35x slower
        )
        return self.posterior_loc + self.posterior_scale * eps

    def kl_elementwise(self) -> tf.Tensor:
        """Closed-form KL(q_e || prior_e) per weight entry, (P,)."""
        self._check_built()
        q = tfd.Normal(self.posterior_loc, self.posterior_scale)
        p = tfd.Normal(tf.zeros_like(self.posterior_loc), self.vi_config.prior_scale)
        return tfd.kl_divergence(q, p)

    def kl_divergence(self) -> tf.Tensor:
        """KL of this layer under the configured convention (unweighted), scalar."""
        kl = self.kl_elementwise()
        if self.vi_config.kl_convention == "sum":
            return tf.reduce_sum(kl)
        ksize = self._posterior.kernel_size
        total = tf.reduce_mean(kl[:ksize])
        if self._posterior.bias_size:
            total = total + tf.reduce_mean(kl[ksize:])
        return total

    # -- frozen draws ------------------------------------------------------------------------
    def freeze(self, seed: Any) -> None:
        """Sample one weight vector from ``seed`` and use it for every following call."""
        self._check_built()
        self.frozen_weights.assign(self.sample_weights(seed))
        self.frozen.assign(True)

    def freeze_to(self, weights: Any) -> None:
        """Freeze to a given weight vector (P,), e.g. the posterior mean."""
        self._check_built()
        self.frozen_weights.assign(tf.reshape(tf.cast(weights, self.frozen_weights.dtype), [-1]))
        self.frozen.assign(True)

    def unfreeze(self) -> None:
        """Go back to sampling weights from ``noise_seed``."""
        self._check_built()
        self.frozen.assign(False)

    # -- forward -----------------------------------------------------------------------------
    def _current_weights(self) -> tf.Tensor:
        return tf.cond(
            self.frozen,
            lambda: tf.identity(self.frozen_weights),
            lambda: self.sample_weights(self.noise_seed),
        )

    def call(self, inputs: Any, training: Any = None) -> tf.Tensor:  # noqa: ARG002
        dtype = self.posterior_loc.dtype
        inputs = tf.cast(inputs, dtype)
        if self._add_kl_loss:
            self.add_loss(self.vi_config.kl_weight * self.kl_divergence())
        w = self._current_weights()
        ksize = self._posterior.kernel_size
        prev_units = ksize // self.units
        kernel = tf.reshape(w[:ksize], [prev_units, self.units])
        outputs = (
            tf.linalg.matmul(inputs, kernel)
            if inputs.shape.rank == 2
            else tf.tensordot(inputs, kernel, axes=1)
        )
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, w[ksize:])
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


def dense(
    units: int,
    activation: Any = None,
    *,
    bayesian: bool | str | None = False,
    vi: VIConfig | Mapping[str, Any] | None = None,
    seed: int | None = None,
    zero_init: bool = False,
    name: str | None = None,
) -> tf_keras.layers.Layer:
    """Dense layer factory, so model code is written once for deterministic and VI networks.

    Args:
        units: output features.
        activation: Keras activation.
        bayesian: ``True``/``"vi"`` for a :class:`VIDense`, ``False``/``None`` for a plain
            ``tf_keras.layers.Dense`` (also used for SG-MCMC and ensembles, whose Bayesian-ness
            lives outside the layer).
        vi: :class:`VIConfig` (VI only).
        seed: initialisation seed (Glorot-uniform kernel, zero bias); ``None`` is unseeded.
        zero_init: zero kernel (and zero posterior means) at the start.
        name: layer name.
    """
    if bayesian in (True, "vi"):
        return VIDense(units, activation, config=vi, seed=seed, zero_init=zero_init, name=name)
    if bayesian not in (False, None):
        msg = f"`bayesian` must be True/'vi' or False/None, got {bayesian!r}"
        raise ValueError(msg)
    if zero_init:
        kernel_init: Any = "zeros"
    else:
        kernel_init = tf_keras.initializers.GlorotUniform(seed=seed)
    return tf_keras.layers.Dense(
        units, activation=activation, kernel_initializer=kernel_init, name=name
    )


# -- helpers acting on a model, a layer or a list of either ----------------------------------
def vi_layers(obj: Any) -> list[VIDense]:
    """All :class:`VIDense` layers in ``obj`` (layer, Keras model, tf.Module or iterable).

    Returned in construction order, which does not depend on Keras' global layer names, so the
    i-th layer is the same one in every process that builds the same model.
    """
    found: dict[int, VIDense] = {}

    def visit(o: Any) -> None:
        if isinstance(o, VIDense):
            found.setdefault(id(o), o)
        if isinstance(o, tf.Module):
            for m in o.submodules:
                if isinstance(m, VIDense):
                    found.setdefault(id(m), m)
        elif isinstance(o, Iterable) and not isinstance(o, (str, bytes)):
            for item in o:
                visit(item)

    visit(obj)
    return sorted(found.values(), key=lambda layer: layer.creation_index)


def set_noise_seed(obj: Any, seed: Any) -> None:
    """Set every VI layer's noise seed from one stateless seed (2,): layer i gets fold_in(seed, i).

    Works eagerly and inside ``tf.function`` (``seed`` may be a tensor).
    """
    seed = _seed_tensor(seed)
    for i, layer in enumerate(vi_layers(obj)):
        layer._check_built()
        layer.noise_seed.assign(tf.random.experimental.stateless_fold_in(seed, i))


def freeze_draw(obj: Any, seed: Any) -> None:
    """Freeze all VI layers of ``obj`` to one posterior draw, reproducible from ``seed``.

    Layer i samples with ``fold_in(seed, i)``; the same seed gives the same weights in any
    process, different seeds give different draws.
    """
    seed = _seed_tensor(seed)
    for i, layer in enumerate(vi_layers(obj)):
        layer.freeze(tf.random.experimental.stateless_fold_in(seed, i))


def freeze_mean(obj: Any) -> None:
    """Freeze all VI layers to their posterior means (a point estimate, not a posterior draw)."""
    for layer in vi_layers(obj):
        layer.freeze_to(layer.posterior_loc)


def unfreeze(obj: Any) -> None:
    """Return all VI layers of ``obj`` to sampling (training mode)."""
    for layer in vi_layers(obj):
        layer.unfreeze()


def is_frozen(obj: Any) -> bool:
    """True if ``obj`` has VI layers and all of them are frozen."""
    layers = vi_layers(obj)
    return bool(layers) and all(bool(layer.frozen.numpy()) for layer in layers)


def lr_factors(obj: Any, variables: Iterable[tf.Variable]) -> list[float]:
    """Per-variable learning-rate factors for training ``variables`` of ``obj``: the layer's
    ``VIConfig.scale_lr_factor`` for the width parameters ``rho`` of its VI layers, 1 else."""
    rho = {id(layer.posterior_rho): layer.vi_config.scale_lr_factor for layer in vi_layers(obj)}
    return [rho.get(id(v), 1.0) for v in variables]


def kl_divergence(obj: Any) -> tf.Tensor:
    """Sum of the layers' KL (each under its own convention), unweighted; scalar."""
    total = tf.constant(0.0)
    for layer in vi_layers(obj):
        total = total + tf.cast(layer.kl_divergence(), tf.float32)
    return total


def kl_loss(obj: Any) -> tf.Tensor:
    """The KL term of the loss: sum over layers of ``kl_weight * KL``; scalar."""
    total = tf.constant(0.0)
    for layer in vi_layers(obj):
        total = total + tf.cast(layer.vi_config.kl_weight * layer.kl_divergence(), tf.float32)
    return total
