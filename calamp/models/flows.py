"""Normalizing flows with exact log density: spline coupling flow, masked autoregressive flow.

Both map events x (N, dim) to a standard normal z. The coupling flow needs one network pass per
layer in both directions, so it samples as fast as it evaluates densities; the autoregressive
flow evaluates densities in one pass but samples dimension by dimension (dim passes per layer,
slow for 100-dimensional showers, see ``benchmarks/``).

References: rational-quadratic spline couplings, Durkan et al., arXiv:1906.04032 (TFP's
``tfb.RationalQuadraticSpline``); affine couplings, Dinh et al., arXiv:1605.08803; MAF,
Papamakarios et al., arXiv:1705.07057 (TFP's ``tfb.MaskedAutoregressiveFlow``).

Size (~470 lines): two generator classes that share the conditioner networks, the VI
variants and the bijector plumbing of TFP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from calamp._tf import tf, tf_keras, tfb
from calamp.bayes.vi import VIConfig, dense
from calamp.models.base import Generator, dense_apply, dense_layout, register_generator

__all__ = ["CouplingFlow", "MAFlow", "rqs_forward", "rqs_inverse"]

_TRANSFORMS = ("spline", "affine")
_LOG_2PI = math.log(2.0 * math.pi)
_MIN_BIN = 1e-3  # minimal bin width / height as a fraction of the interval
_MIN_SLOPE = 1e-3
_AFFINE_CLIP = 3.0  # |log scale| <= 3 per affine coupling


def _std_normal_log_prob(z: tf.Tensor) -> tf.Tensor:
    return -0.5 * tf.reduce_sum(tf.square(z), axis=-1) - 0.5 * _LOG_2PI * tf.cast(
        tf.shape(z)[-1], z.dtype
    )


def _knots(sizes: tf.Tensor, bound: float) -> tf.Tensor:
    """Knot positions (..., K+1) from bin sizes (..., K) that sum to 2*bound."""
    cum = tf.cumsum(sizes, axis=-1)
    knots = tf.concat([tf.zeros_like(cum[..., :1]), cum], axis=-1) - bound
    # pin the last knot exactly to +bound (the cumulative sum carries rounding)
    return tf.concat([knots[..., :-1], tf.fill(tf.shape(knots[..., -1:]), bound)], axis=-1)


def _spline_bin(
    v: tf.Tensor, knots_v: tf.Tensor, xk: tf.Tensor, yk: tf.Tensor, dk: tf.Tensor
) -> tuple[tf.Tensor, ...]:
    """Gather the bin of every element: (x_k, w, y_k, h, d_k, d_k+1), each shaped like v."""
    inner = knots_v[..., 1:-1]
    idx = tf.reduce_sum(tf.cast(v[..., None] >= inner, tf.int32), axis=-1)[..., None]

    def take(t: tf.Tensor, shift: int = 0) -> tf.Tensor:
        return tf.gather(t, idx + shift, batch_dims=v.shape.rank)[..., 0]

    x0, x1, y0, y1 = take(xk), take(xk, 1), take(yk), take(yk, 1)
    return x0, x1 - x0, y0, y1 - y0, take(dk), take(dk, 1)


def rqs_forward(
    x: tf.Tensor, widths: tf.Tensor, heights: tf.Tensor, slopes: tf.Tensor, *, bound: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """Monotone rational-quadratic spline on [-bound, bound], identity outside.

    The transform of ``tfb.RationalQuadraticSpline`` (Durkan et al., arXiv:1906.04032, eqs. 4-5,
    boundary derivatives 1), written out in a few vectorised ops because TFP's version takes
    ~20 s to trace with its gradient for a 6-layer flow. Tested against TFP.

    Args:
        x: (...) inputs.
        widths, heights: (..., K) positive bin sizes summing to 2*bound.
        slopes: (..., K-1) positive interior knot derivatives.

    Returns:
        y (...) and log dy/dx (...).
    """
    xk, yk = _knots(widths, bound), _knots(heights, bound)
    ones = tf.ones_like(slopes[..., :1])
    dk = tf.concat([ones, slopes, ones], axis=-1)
    inside = tf.abs(x) < bound
    xc = tf.where(inside, x, tf.zeros_like(x))
    x0, w, y0, h, d0, d1 = _spline_bin(xc, xk, xk, yk, dk)
    s = h / w
    xi = (xc - x0) / w
    t = xi * (1.0 - xi)
    denom = s + (d1 + d0 - 2.0 * s) * t
    y = y0 + h * (s * xi * xi + d0 * t) / denom
    dnum = tf.square(s) * (d1 * xi * xi + 2.0 * s * t + d0 * tf.square(1.0 - xi))
    logdet = tf.math.log(dnum) - 2.0 * tf.math.log(denom)
    return tf.where(inside, y, x), tf.where(inside, logdet, tf.zeros_like(x))


def rqs_inverse(
    y: tf.Tensor, widths: tf.Tensor, heights: tf.Tensor, slopes: tf.Tensor, *, bound: float
) -> tf.Tensor:
    """Inverse of :func:`rqs_forward` (closed-form root of a quadratic), same shapes."""
    xk, yk = _knots(widths, bound), _knots(heights, bound)
    ones = tf.ones_like(slopes[..., :1])
    dk = tf.concat([ones, slopes, ones], axis=-1)
    inside = tf.abs(y) < bound
    yc = tf.where(inside, y, tf.zeros_like(y))
    x0, w, y0, h, d0, d1 = _spline_bin(yc, yk, xk, yk, dk)
    s = h / w
    dy = yc - y0
    a = h * (s - d0) + dy * (d1 + d0 - 2.0 * s)
    b = h * d0 - dy * (d1 + d0 - 2.0 * s)
    c = -s * dy
    disc = tf.maximum(tf.square(b) - 4.0 * a * c, 0.0)
    xi = 2.0 * c / (-b - tf.sqrt(disc))
    return tf.where(inside, x0 + xi * w, y)


def _mlp(
    n_in: int,
    n_out: int,
    hidden: Sequence[int],
    activation: str,
    *,
    bayesian: str | None,
    vi: VIConfig | None,
    seed: int,
    name: str,
) -> tf_keras.Sequential:
    layers = [
        dense(h, activation, bayesian=bayesian, vi=vi, seed=seed * 1009 + j)
        for j, h in enumerate(hidden)
    ]
    layers.append(
        dense(n_out, None, bayesian=bayesian, vi=vi, seed=seed * 1009 + 997, zero_init=True)
    )
    net = tf_keras.Sequential(layers, name=name)
    net(tf.zeros([1, n_in]))
    return net


@register_generator("coupling_flow")
class CouplingFlow(Generator):
    """Coupling flow: rational-quadratic spline (or affine) couplings with alternating masks.

    Coupling layer i splits the dimensions into a conditioning set A_i and a transformed set B_i;
    B_i is transformed element-wise with parameters from an MLP of (x_A, c). Layers come in pairs
    that swap A and B, and every pair draws a fresh fixed permutation (from ``seed``) for
    dim > 2, so every dimension is transformed and mixed with every other. Splines act on
    [-bound, bound] with identity tails (boundary derivatives 1); the last conditioner layer
    starts at zero, so the untrained flow is the identity. Data should be roughly standardised.

    Args:
        dim: event dimension (>= 2).
        context_dim: context dimension (0 = unconditional); c is concatenated to x_A.
        bayesian: ``"vi"`` makes every conditioner layer a VI layer, ``None`` deterministic.
        vi: :class:`~calamp.bayes.vi.VIConfig` for ``bayesian="vi"``.
        seed: initialisation and permutation seed.
        n_couplings: number of coupling layers (even numbers transform every dimension equally).
        hidden: hidden layer widths of each conditioner MLP.
        activation: hidden activation (Keras name).
        transform: ``"spline"`` (rational-quadratic) or ``"affine"``.
        n_bins: spline bins K.
        bound: spline interval half-width B.
    """

    @property
    def xla(self) -> bool:  # type: ignore[override]
        """XLA-compiled training (fits of at least :data:`~calamp.models.base.XLA_MIN_STEPS`
        steps) and sampling for showers (8x128 couplings, 101 dims, batch 256: 182 -> 65 ms per
        step, benchmarks/bench_shower_flow.py); 2D toys keep the plain step
        (compiling costs more than it saves there, and their numbers stay those of earlier
        releases)."""
        return self.dim > 3

    def __init__(
        self,
        dim: int,
        context_dim: int = 0,
        *,
        bayesian: str | None = None,
        vi: VIConfig | dict[str, Any] | None = None,
        seed: int = 0,
        n_couplings: int = 6,
        hidden: Sequence[int] = (64, 64),
        activation: str = "elu",
        transform: str = "spline",
        n_bins: int = 8,
        bound: float = 5.0,
        name: str | None = None,
    ) -> None:
        super().__init__(dim, context_dim, bayesian=bayesian, vi=vi, seed=seed, name=name)
        if self.dim < 2:
            msg = f"`dim` must be >= 2 for a coupling flow, got {dim}"
            raise ValueError(msg)
        if int(n_couplings) < 1:
            msg = f"`n_couplings` must be positive, got {n_couplings}"
            raise ValueError(msg)
        if transform not in _TRANSFORMS:
            msg = f"`transform` must be one of {_TRANSFORMS}, got {transform!r}"
            raise ValueError(msg)
        if int(n_bins) < 2:
            msg = f"`n_bins` must be >= 2, got {n_bins}"
            raise ValueError(msg)
        if not bound > 0:
            msg = f"`bound` must be positive, got {bound}"
            raise ValueError(msg)
        self.n_couplings = int(n_couplings)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = str(activation)
        self.transform = transform
        self.n_bins = int(n_bins)
        self.bound = float(bound)
        n_par = 3 * self.n_bins - 1 if transform == "spline" else 2

        split = self.dim // 2
        masks_a, masks_b, inverse_perm = [], [], []
        for i in range(self.n_couplings):
            if self.dim > 2:
                perm = np.random.default_rng([self.seed, i // 2]).permutation(self.dim)
            else:
                perm = np.arange(self.dim)
            a, b = (perm[:split], perm[split:]) if i % 2 == 0 else (perm[split:], perm[:split])
            masks_a.append(a)
            masks_b.append(b)
            inverse_perm.append(np.argsort(np.concatenate([a, b])))
        self._idx_a = [tf.constant(a, tf.int32) for a in masks_a]
        self._idx_b = [tf.constant(b, tf.int32) for b in masks_b]
        self._inv = [tf.constant(p, tf.int32) for p in inverse_perm]
        self._n_b = [len(b) for b in masks_b]
        self.conditioners = [
            _mlp(
                len(masks_a[i]) + self.context_dim,
                len(masks_b[i]) * n_par,
                self.hidden,
                self.activation,
                bayesian=self.bayesian,
                vi=self.vi,
                seed=self.seed * 100 + i,
                name=f"coupling_{i}",
            )
            for i in range(self.n_couplings)
        ]

    def _constructor_args(self) -> dict[str, Any]:
        return {
            "n_couplings": self.n_couplings,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "transform": self.transform,
            "n_bins": self.n_bins,
            "bound": self.bound,
        }

    # -- element-wise transforms ---------------------------------------------------------------
    def _params(self, i: int, xa: tf.Tensor, c: tf.Tensor | None) -> tf.Tensor:
        h = xa if c is None else tf.concat([xa, c], axis=-1)
        out = self.conditioners[i](h)
        return tf.reshape(out, [-1, self._n_b[i], out.shape[-1] // self._n_b[i]])

    def _spline_knots(self, p: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        k = self.n_bins
        width = 2.0 * self.bound
        scale = 1.0 - _MIN_BIN * k
        widths = width * (_MIN_BIN + scale * tf.nn.softmax(p[..., :k], axis=-1))
        heights = width * (_MIN_BIN + scale * tf.nn.softmax(p[..., k : 2 * k], axis=-1))
        shift = math.log(math.expm1(1.0 - _MIN_SLOPE))  # zero input -> slope 1
        slopes = _MIN_SLOPE + tf.nn.softplus(p[..., 2 * k :] + shift)
        return widths, heights, slopes

    def _transform_forward(self, xb: tf.Tensor, p: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if self.transform == "affine":
            log_s = _AFFINE_CLIP * tf.tanh(p[..., 0] / _AFFINE_CLIP)
            return xb * tf.exp(log_s) + p[..., 1], tf.reduce_sum(log_s, axis=-1)
        yb, ld = rqs_forward(xb, *self._spline_knots(p), bound=self.bound)
        return yb, tf.reduce_sum(ld, axis=-1)

    def _transform_inverse(self, yb: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
        if self.transform == "affine":
            log_s = _AFFINE_CLIP * tf.tanh(p[..., 0] / _AFFINE_CLIP)
            return (yb - p[..., 1]) * tf.exp(-log_s)
        return rqs_inverse(yb, *self._spline_knots(p), bound=self.bound)

    # -- flow --------------------------------------------------------------------------------
    def to_latent(self, x: Any, c: Any = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Map events to the latent space: z (N, dim) and log|det dz/dx| (N,)."""
        x = self._check_x(x)
        c = self._check_c(c)
        logdet = tf.zeros(tf.shape(x)[:1], x.dtype)
        for i in range(self.n_couplings):
            xa = tf.gather(x, self._idx_a[i], axis=1)
            xb = tf.gather(x, self._idx_b[i], axis=1)
            yb, ld = self._transform_forward(xb, self._params(i, xa, c))
            x = tf.gather(tf.concat([xa, yb], axis=1), self._inv[i], axis=1)
            logdet = logdet + ld
        return x, logdet

    def from_latent(self, z: Any, c: Any = None) -> tf.Tensor:
        """Map latent points z (N, dim) to events (N, dim), one pass per layer."""
        z = self._check_x(z, "z")
        c = self._check_c(c)
        for i in reversed(range(self.n_couplings)):
            za = tf.gather(z, self._idx_a[i], axis=1)
            zb = tf.gather(z, self._idx_b[i], axis=1)
            xb = self._transform_inverse(zb, self._params(i, za, c))
            z = tf.gather(tf.concat([za, xb], axis=1), self._inv[i], axis=1)
        return z

    def log_prob(self, x: Any, c: Any = None) -> tf.Tensor:
        """Exact log density log p(x | c), (N,), in one pass."""
        z, logdet = self.to_latent(x, c)
        return _std_normal_log_prob(z) + logdet

    def _sample(self, n: tf.Tensor, c: tf.Tensor | None, seed: tf.Tensor) -> tf.Tensor:
        z = tf.random.stateless_normal(tf.stack([n, self.dim]), seed=seed, alg="philox")
        return self.from_latent(z, c)

    # -- functional form: B weight vectors at once (batched SG-MCMC chains) -----------------
    def batched_log_prob(self, theta: Any, x: Any, c: Any = None) -> tf.Tensor:
        """log p(x | c; θ_b) for B weight vectors at once, in one pass (graph-friendly).

        Args:
            theta: (B, P) flat weights in the order of ``trainable_variables`` (deterministic
                flows only: the SG-MCMC state).
            x: (B, N, dim) events, row b evaluated under θ_b.
            c: (B, N, context_dim) context or None.

        Returns:
            (B, N) log-densities, row b equal to ``log_prob(x[b], c[b])`` with θ_b loaded.
        """
        if self.bayesian is not None:
            msg = "batched_log_prob needs a deterministic flow (bayesian=None)"
            raise ValueError(msg)
        theta = tf.convert_to_tensor(theta, tf.float32)
        x = tf.convert_to_tensor(x, tf.float32)
        c = None if c is None else tf.convert_to_tensor(c, tf.float32)
        variables = self.trainable_variables
        layout = [dense_layout(variables, net.layers) for net in self.conditioners]
        logdet = tf.zeros(tf.shape(x)[:2], x.dtype)
        for i in range(self.n_couplings):
            xa = tf.gather(x, self._idx_a[i], axis=2)
            xb = tf.gather(x, self._idx_b[i], axis=2)
            h = dense_apply(theta, xa if c is None else tf.concat([xa, c], axis=-1), layout[i])
            p = tf.reshape(h, tf.concat([tf.shape(h)[:2], [self._n_b[i], -1]], 0))
            yb, ld = self._transform_forward(xb, p)
            x = tf.gather(tf.concat([xa, yb], axis=2), self._inv[i], axis=2)
            logdet = logdet + ld
        return _std_normal_log_prob(x) + logdet


class _MADE(tf_keras.layers.Layer):
    """Masked autoencoder (Germain et al., arXiv:1502.03509) giving (shift, log scale) per dim.

    Output d depends only on inputs < d (left-to-right) and on the context. The masks multiply
    the kernels in the forward pass (not a Keras constraint), so any optimiser, SG-MCMC sampler
    or ``set_eval_weights`` keeps the autoregressive structure. Last layer starts at zero.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        hidden: Sequence[int],
        activation: str,
        seed: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dim, self.context_dim = dim, context_dim
        self.act = tf_keras.activations.get(activation)
        deg_in = np.concatenate([np.arange(1, dim + 1), np.zeros(context_dim, int)])
        degrees = [deg_in]
        for h in hidden:
            degrees.append(np.arange(h) % max(dim - 1, 1) + 1 if dim > 1 else np.zeros(h, int))
        masks = [
            (d_out[None, :] >= d_in[:, None])
            for d_in, d_out in zip(degrees[:-1], degrees[1:], strict=True)
        ]
        deg_out = np.repeat(np.arange(1, dim + 1), 2)  # (dim*2,): (shift, log_scale) of dim d
        masks.append(deg_out[None, :] > degrees[-1][:, None])
        self.masks = [tf.constant(m.astype(np.float32)) for m in masks]
        self.kernels, self.biases = [], []
        for j, m in enumerate(masks):
            n_in, n_out = m.shape
            last = j == len(masks) - 1
            init: Any = "zeros" if last else tf_keras.initializers.GlorotUniform(seed=seed * 31 + j)
            self.kernels.append(
                self.add_weight(name=f"kernel_{j}", shape=[n_in, n_out], initializer=init)
            )
            self.biases.append(
                self.add_weight(name=f"bias_{j}", shape=[n_out], initializer="zeros")
            )

    def call(self, x: tf.Tensor, conditional_input: tf.Tensor | None = None) -> tf.Tensor:
        h = x if conditional_input is None else tf.concat([x, conditional_input], axis=-1)
        n = len(self.kernels)
        for j in range(n):
            h = tf.linalg.matmul(h, self.kernels[j] * self.masks[j]) + self.biases[j]
            if j < n - 1:
                h = self.act(h)
        return tf.reshape(h, tf.concat([tf.shape(x), [2]], axis=0))


@register_generator("maf")
class MAFlow(Generator):
    """Masked autoregressive flow (affine MADE layers with reversed orderings in between).

    Density evaluation is one network pass per layer; sampling needs ``dim`` passes per layer.
    The MADE is calamp's own (masks applied in the forward pass, so SG-MCMC updates cannot break
    the autoregressive structure, unlike TFP's ``AutoregressiveNetwork`` whose masks are Keras
    kernel constraints that only Keras optimisers apply). Only deterministic weights are
    supported (``bayesian=None``): a Bayesian MAF is obtained with SG-MCMC or a deep ensemble,
    which act on its ordinary trainable variables; use ``CouplingFlow(bayesian="vi")`` for VI.

    Args:
        dim: event dimension.
        context_dim: context dimension (0 = unconditional), fed to every MADE layer.
        bayesian: must be ``None``.
        vi: must be ``None``.
        seed: initialisation seed.
        n_layers: number of MADE layers.
        hidden: hidden widths of each MADE.
        activation: hidden activation.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int = 0,
        *,
        bayesian: str | None = None,
        vi: VIConfig | dict[str, Any] | None = None,
        seed: int = 0,
        n_layers: int = 5,
        hidden: Sequence[int] = (64, 64),
        activation: str = "elu",
        name: str | None = None,
    ) -> None:
        if bayesian is not None:
            msg = (
                f"MAFlow supports only `bayesian=None` (got {bayesian!r}); use SG-MCMC or a deep "
                "ensemble for a Bayesian MAF, or CouplingFlow(bayesian='vi') for VI"
            )
            raise ValueError(msg)
        super().__init__(dim, context_dim, bayesian=None, vi=vi, seed=seed, name=name)
        if int(n_layers) < 1:
            msg = f"`n_layers` must be positive, got {n_layers}"
            raise ValueError(msg)
        self.n_layers = int(n_layers)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = str(activation)
        cond = self.context_dim > 0
        self.mades = []
        for i in range(self.n_layers):
            made = _MADE(
                self.dim,
                self.context_dim,
                self.hidden,
                self.activation,
                self.seed * 100 + i,
                name=f"made_{i}",
            )
            kwargs = {"conditional_input": tf.zeros([1, self.context_dim])} if cond else {}
            made(tf.zeros([1, self.dim]), **kwargs)
            self.mades.append(made)
        reverse = tfb.Permute(permutation=list(range(self.dim))[::-1])
        self._bijectors: list[tuple[tfb.Bijector, bool]] = []
        for i, made in enumerate(self.mades):
            self._bijectors.append(
                (tfb.MaskedAutoregressiveFlow(self._shift_log_scale(made)), True)
            )
            if i < self.n_layers - 1:
                self._bijectors.append((reverse, False))

    @staticmethod
    def _shift_log_scale(made: Any) -> Any:
        def fn(x: tf.Tensor, conditional_input: tf.Tensor | None = None) -> Any:
            if conditional_input is None:
                out = made(x)
            else:
                out = made(x, conditional_input=conditional_input)
            shift, log_scale = tf.unstack(out, num=2, axis=-1)
            return shift, _AFFINE_CLIP * tf.tanh(log_scale / _AFFINE_CLIP)

        return fn

    def _constructor_args(self) -> dict[str, Any]:
        return {
            "n_layers": self.n_layers,
            "hidden": list(self.hidden),
            "activation": self.activation,
        }

    def log_prob(self, x: Any, c: Any = None) -> tf.Tensor:
        """Exact log density log p(x | c), (N,), one pass per layer."""
        y = self._check_x(x)
        c = self._check_c(c)
        logdet = tf.zeros(tf.shape(y)[:1], y.dtype)
        for bij, is_maf in reversed(self._bijectors):
            kw = {"conditional_input": c} if (is_maf and c is not None) else {}
            logdet = logdet + bij.inverse_log_det_jacobian(y, event_ndims=1, **kw)
            y = bij.inverse(y, **kw)
        return _std_normal_log_prob(y) + logdet

    def _sample(self, n: tf.Tensor, c: tf.Tensor | None, seed: tf.Tensor) -> tf.Tensor:
        z = tf.random.stateless_normal(tf.stack([n, self.dim]), seed=seed)
        for bij, is_maf in self._bijectors:
            kw = {"conditional_input": c} if (is_maf and c is not None) else {}
            z = bij.forward(z, **kw)
        return z
