"""Continuous normalizing flow trained by conditional flow matching (the reference generator).

The velocity field v_θ(y, t, c) is a small MLP (PHYSICS.md §2: 3×32 ELU, input = coordinates,
context and the time features cos(kπt), sin(kπt), k = 1..3; 2,498 weights for 2D with one context
value). Training uses the conditional flow-matching objective of Lipman et al.
(arXiv:2210.02747) with the optimal-transport path

    y_t = (1 − t) x + (σ_min + (1 − σ_min) t) z,   u = (1 − σ_min) z − x,   t ~ U(0, 1),

t = 0 the data and t = 1 the standard-normal noise. Sampling integrates dy/dt = v from t = 1 to
t = 0; the exact log-likelihood integrates the state and the divergence from t = 0 to t = 1:

    log p(x) = log N(z; 0, I) + ∫_0^1 ∇·v(y_t, t) dt.

The ODE helpers (:func:`odeint`, :func:`ode_sample`, :func:`ode_log_prob`) take any velocity
function ``fn(t, y) -> (N, D)``, so they are tested against analytic linear fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from calamp._tf import tf, tfp
from calamp.bayes import vi as _vi
from calamp.models.base import (
    Generator,
    dense_apply,
    dense_layout,
    register_generator,
    stateless_seed,
)

__all__ = [
    "FlowMatchingCNF",
    "SOLVERS",
    "TRACE_ESTIMATORS",
    "divergence",
    "flow_matching_pair",
    "ode_log_prob",
    "ode_sample",
    "odeint",
    "time_features",
]

SOLVERS = ("dopri", "rk4")
"""ODE solvers: adaptive Dormand–Prince (TFP) or a fixed-step classical Runge–Kutta."""

TRACE_ESTIMATORS = ("exact", "hutchinson")
"""Divergence of the velocity field: exact (D autodiff passes) or Hutchinson (one pass)."""

VelocityFn = Callable[[Any, Any], Any]


def time_features(t: Any, n_freq: int = 3) -> Any:
    """Fourier time features [cos(kπt)_k, sin(kπt)_k], k = 1..n_freq.

    Args:
        t: (N, 1) or (N,) times in [0, 1].
        n_freq: number of frequencies.

    Returns:
        (N, 2·n_freq) float32 tensor.
    """
    t = tf.reshape(tf.convert_to_tensor(t, tf.float32), [-1, 1])
    k = tf.constant(np.arange(1, n_freq + 1) * np.pi, tf.float32)
    phase = t * k
    return tf.concat([tf.cos(phase), tf.sin(phase)], axis=-1)


def flow_matching_pair(x: Any, z: Any, t: Any, sigma_min: float = 1e-4) -> tuple[Any, Any]:
    """Point on the conditional path and its target velocity.

    Args:
        x: (N, D) data (t = 0 end).
        z: (N, D) standard-normal noise (t = 1 end).
        t: (N, 1) times in [0, 1].
        sigma_min: width of the path at t = 0.

    Returns:
        ``(y_t, u)``, both (N, D): y_t = (1 − t)x + (σ_min + (1 − σ_min)t)z, u = (1 − σ_min)z − x.
    """
    y = (1.0 - t) * x + (sigma_min + (1.0 - sigma_min) * t) * z
    u = (1.0 - sigma_min) * z - x
    return y, u


def _check_solver(solver: str, n_steps: int) -> None:
    if solver not in SOLVERS:
        msg = f"`solver` must be one of {SOLVERS}, got {solver!r}"
        raise ValueError(msg)
    if solver == "rk4" and n_steps < 1:
        msg = f"`n_steps` must be >= 1 for solver='rk4', got {n_steps}"
        raise ValueError(msg)


def odeint(
    fn: VelocityFn,
    state: Any,
    t0: float,
    t1: float,
    *,
    solver: str = "dopri",
    atol: float = 1e-6,
    rtol: float = 1e-5,
    n_steps: int = 32,
) -> Any:
    """Integrate dy/dt = fn(t, y) from t0 to t1 (either direction); graph-compatible.

    ``"dopri"`` is TFP's adaptive Dormand–Prince 5(4) (one step size for the whole batch, error
    measured as the RMS over all events and state components, scaled by atol + rtol·|y|).
    Integration backwards in time (t1 < t0) runs in s = t0 − t with dy/ds = −fn(t0 − s, y),
    because TFP's solver only steps forwards. ``"rk4"`` is the classical fixed-step Runge–Kutta
    with ``n_steps`` steps (global error O(h⁴)).

    Args:
        fn: ``fn(t, state) -> d state / dt`` with t a float32 scalar tensor; ``state`` may be a
            nested structure of tensors.
        state: initial state at t0.
        t0: initial time.
        t1: final time.
        solver: ``"dopri"`` or ``"rk4"``.
        atol: absolute tolerance (dopri).
        rtol: relative tolerance (dopri).
        n_steps: number of steps (rk4).

    Returns:
        The state at t1, same structure as ``state``.
    """
    _check_solver(solver, n_steps)
    t0 = float(t0)
    t1 = float(t1)
    if t0 == t1:
        return state
    sign = 1.0 if t1 > t0 else -1.0
    length = abs(t1 - t0)

    def forward_fn(s: Any, y: Any) -> Any:
        dy = fn(tf.constant(t0, tf.float32) + sign * s, y)
        return tf.nest.map_structure(lambda d: sign * d, dy)

    if solver == "dopri":
        ode = tfp.math.ode.DormandPrince(rtol=rtol, atol=atol)
        result = ode.solve(
            forward_fn, initial_time=0.0, initial_state=state, solution_times=[length]
        )
        return tf.nest.map_structure(lambda s: s[-1], result.states)

    h = length / n_steps

    def axpy(a: float, dx: Any, x: Any) -> Any:
        return tf.nest.map_structure(lambda u, v: v + a * u, dx, x)

    def body(i: Any, y: Any) -> tuple[Any, Any]:
        s = tf.cast(i, tf.float32) * h
        k1 = forward_fn(s, y)
        k2 = forward_fn(s + 0.5 * h, axpy(0.5 * h, k1, y))
        k3 = forward_fn(s + 0.5 * h, axpy(0.5 * h, k2, y))
        k4 = forward_fn(s + h, axpy(h, k3, y))
        incr = tf.nest.map_structure(lambda a, b, c, d: a + 2.0 * b + 2.0 * c + d, k1, k2, k3, k4)
        return i + 1, axpy(h / 6.0, incr, y)

    _, out = tf.while_loop(lambda i, _: i < n_steps, body, (tf.constant(0), state))
    return out


def divergence(fn: VelocityFn, t: Any, y: Any, eps: Any = None) -> tuple[Any, Any]:
    """Velocity and its divergence ∇·v = tr(∂v/∂y) per event.

    Exact when ``eps`` is None (one reverse-mode pass per dimension, so D passes); otherwise the
    Hutchinson estimate εᵀ(∂v/∂y)ε with ``eps`` of shape (N, D) and E[εεᵀ] = I (unbiased, noisy).
    Events must not interact inside ``fn`` (true for per-event MLPs).

    Args:
        fn: velocity function ``fn(t, y) -> (N, D)``.
        t: scalar time.
        y: (N, D) state.
        eps: optional (N, D) probe vectors.

    Returns:
        ``(v, div)`` with shapes (N, D) and (N,).
    """
    if eps is not None:
        with tf.GradientTape() as tape:
            tape.watch(y)
            v = fn(t, y)
            v_eps = tf.reduce_sum(v * eps, axis=-1)
        return v, tf.reduce_sum(tape.gradient(v_eps, y) * eps, axis=-1)
    dim = y.shape[-1]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(y)
        v = fn(t, y)
        components = tf.unstack(v, num=dim, axis=-1)
    diag = [tape.gradient(components[i], y)[:, i] for i in range(dim)]
    del tape
    return v, tf.add_n(diag)


def ode_sample(
    fn: VelocityFn,
    z: Any,
    *,
    solver: str = "dopri",
    atol: float = 1e-6,
    rtol: float = 1e-5,
    n_steps: int = 32,
) -> Any:
    """Map noise at t = 1 to data at t = 0 by integrating dy/dt = fn(t, y).

    Args:
        fn: velocity function ``fn(t, y) -> (N, D)``.
        z: (N, D) noise.
        solver, atol, rtol, n_steps: see :func:`odeint`.

    Returns:
        (N, D) samples.
    """
    return odeint(fn, z, 1.0, 0.0, solver=solver, atol=atol, rtol=rtol, n_steps=n_steps)


def ode_log_prob(
    fn: VelocityFn,
    x: Any,
    *,
    solver: str = "dopri",
    atol: float = 1e-6,
    rtol: float = 1e-5,
    n_steps: int = 32,
    trace: str = "exact",
    seed: Any = None,
) -> Any:
    """Exact (or Hutchinson-estimated) log-density of x under the flow.

    log p(x) = log N(z; 0, I) + ∫_0^1 ∇·v dt, with z the state at t = 1.

    Args:
        fn: velocity function ``fn(t, y) -> (N, D)``.
        x: (N, D) points.
        solver, atol, rtol, n_steps: see :func:`odeint`.
        trace: ``"exact"`` or ``"hutchinson"`` (Rademacher probes held fixed along the
            trajectory; unbiased for log p but noisy, for high dimension).
        seed: stateless (2,) int32 seed, required for ``"hutchinson"``.

    Returns:
        (N,) log-densities in the units of x.
    """
    if trace not in TRACE_ESTIMATORS:
        msg = f"`trace` must be one of {TRACE_ESTIMATORS}, got {trace!r}"
        raise ValueError(msg)
    x = tf.convert_to_tensor(x, tf.float32)
    eps = None
    if trace == "hutchinson":
        if seed is None:
            msg = "`seed` is required for trace='hutchinson'"
            raise ValueError(msg)
        bits = tf.random.stateless_uniform(tf.shape(x), seed, minval=0, maxval=2, dtype=tf.int32)
        eps = 2.0 * tf.cast(bits, tf.float32) - 1.0

    def augmented(t: Any, state: tuple[Any, Any]) -> tuple[Any, Any]:
        v, div = divergence(fn, t, state[0], eps)
        return v, div

    state0 = (x, tf.zeros(tf.shape(x)[:1], tf.float32))
    z, integral = odeint(
        augmented, state0, 0.0, 1.0, solver=solver, atol=atol, rtol=rtol, n_steps=n_steps
    )
    dim = x.shape[-1]
    log_normal = -0.5 * tf.reduce_sum(tf.square(z), axis=-1) - 0.5 * dim * math.log(2.0 * math.pi)
    return log_normal + integral


def _layer_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([int(seed), 0xC4F, i]).generate_state(1)[0] % (2**31 - 1))


@register_generator("cnf")
class FlowMatchingCNF(Generator):
    """Flow-matching continuous normalizing flow (the generator of arXiv:2408.00838).

    Velocity MLP: ``layers`` hidden layers of ``hidden`` units with ELU, input (y, c, time
    features of ``n_freq`` frequencies), output (dim,). Defaults reproduce the reference
    (3×32, 3 frequencies; 2,498 weights for dim = 2, context_dim = 1, where the reference fed the
    constant condition 4.0). With ``bayesian="vi"`` every dense layer is a VI layer; one weight
    sample is held fixed along a whole ODE trajectory (and for every event after
    :meth:`freeze_draw`).

    Args:
        dim: event dimension D.
        context_dim: conditioning dimension (0 = unconditional).
        bayesian: ``"vi"`` or ``None``.
        vi: :class:`~calamp.bayes.vi.VIConfig` (or dict) for ``bayesian="vi"``.
        seed: initialisation seed.
        hidden: units per hidden layer.
        layers: number of hidden layers.
        n_freq: time-feature frequencies k = 1..n_freq.
        sigma_min: path width at t = 0.
        solver: ``"dopri"`` (adaptive, atol/rtol) or ``"rk4"`` (``n_steps`` fixed steps) for
            sampling and log-likelihood.
        atol, rtol: Dormand–Prince tolerances (reference: 1e-6, 1e-5).
        n_steps: RK4 steps.
        trace: divergence in :meth:`log_prob`: ``"exact"`` (D autodiff passes per velocity
            evaluation) or ``"hutchinson"`` (one pass, unbiased but noisy; for large D).
    """

    def __init__(
        self,
        dim: int,
        context_dim: int = 0,
        *,
        bayesian: str | None = None,
        vi: Any = None,
        seed: int = 0,
        hidden: int = 32,
        layers: int = 3,
        n_freq: int = 3,
        sigma_min: float = 1e-4,
        solver: str = "dopri",
        atol: float = 1e-6,
        rtol: float = 1e-5,
        n_steps: int = 32,
        trace: str = "exact",
        name: str | None = None,
    ) -> None:
        super().__init__(dim, context_dim, bayesian=bayesian, vi=vi, seed=seed, name=name)
        for arg, value in (("hidden", hidden), ("layers", layers), ("n_freq", n_freq)):
            if int(value) < 1:
                msg = f"`{arg}` must be a positive integer, got {value!r}"
                raise ValueError(msg)
        if not 0.0 <= float(sigma_min) < 1.0:
            msg = f"`sigma_min` must be in [0, 1), got {sigma_min!r}"
            raise ValueError(msg)
        _check_solver(solver, int(n_steps))
        if trace not in TRACE_ESTIMATORS:
            msg = f"`trace` must be one of {TRACE_ESTIMATORS}, got {trace!r}"
            raise ValueError(msg)
        if not (atol > 0 and rtol > 0):
            msg = f"`atol` and `rtol` must be positive, got {atol!r}, {rtol!r}"
            raise ValueError(msg)
        self.hidden, self.n_layers, self.n_freq = int(hidden), int(layers), int(n_freq)
        self.sigma_min = float(sigma_min)
        self.solver, self.n_steps = solver, int(n_steps)
        self.atol, self.rtol = float(atol), float(rtol)
        self.trace = trace
        widths = [self.hidden] * self.n_layers + [self.dim]
        acts = ["elu"] * self.n_layers + [None]
        self.net = [
            _vi.dense(w, a, bayesian=bayesian, vi=self.vi, seed=_layer_seed(self.seed, i))
            for i, (w, a) in enumerate(zip(widths, acts, strict=True))
        ]
        self._mlp(tf.zeros([1, self.dim + self.context_dim + 2 * self.n_freq]))
        self._log_prob_tf: Any = None

    def _constructor_args(self) -> dict[str, Any]:
        return {
            "hidden": self.hidden,
            "layers": self.n_layers,
            "n_freq": self.n_freq,
            "sigma_min": self.sigma_min,
            "solver": self.solver,
            "atol": self.atol,
            "rtol": self.rtol,
            "n_steps": self.n_steps,
            "trace": self.trace,
        }

    def _mlp(self, h: Any) -> Any:
        for layer in self.net:
            h = layer(h)
        return h

    def velocity(self, t: Any, y: Any, c: Any = None) -> Any:
        """Velocity v_θ(y, t, c).

        Args:
            t: scalar or (N, 1) times in [0, 1].
            y: (N, dim) states.
            c: (N, context_dim) context or ``None``.

        Returns:
            (N, dim) velocities.
        """
        y = tf.convert_to_tensor(y, tf.float32)
        n = tf.shape(y)[0]
        t = tf.broadcast_to(tf.reshape(tf.cast(t, tf.float32), [-1, 1]), [n, 1])
        parts = [y] if c is None else [y, tf.cast(c, tf.float32)]
        parts.append(time_features(t, self.n_freq))
        return self._mlp(tf.concat(parts, axis=-1))

    def _ode_kwargs(self) -> dict[str, Any]:
        return {
            "solver": self.solver, "atol": self.atol, "rtol": self.rtol, "n_steps": self.n_steps
        }

    def data_loss(self, x: Any, c: Any, seed: Any) -> Any:
        """Conditional flow-matching loss: mean over events and dimensions of (v − u)²."""
        x = tf.convert_to_tensor(x, tf.float32)
        n = tf.shape(x)[0]
        t = tf.random.stateless_uniform([n, 1], tf.random.experimental.stateless_fold_in(seed, 0))
        z = tf.random.stateless_normal(
            tf.shape(x), tf.random.experimental.stateless_fold_in(seed, 1)
        )
        y, u = flow_matching_pair(x, z, t, self.sigma_min)
        return tf.reduce_mean(tf.square(self.velocity(t, y, c) - u))

    def _sample(self, n: Any, c: Any, seed: Any) -> Any:
        z = tf.random.stateless_normal(tf.stack([n, self.dim]), seed)
        return ode_sample(lambda t, y: self.velocity(t, y, c), z, **self._ode_kwargs())

    def _log_prob_impl(self, x: Any, c: Any, seed: Any) -> Any:
        return ode_log_prob(
            lambda t, y: self.velocity(t, y, c), x, trace=self.trace, seed=seed,
            **self._ode_kwargs(),
        )

    def batched_log_prob(self, theta: Any, x: Any, c: Any = None) -> Any:
        """log p(x | c; θ_b) for B weight vectors at once: one ODE solve of the (B·N) events
        with each chain's velocity net (exact trace; graph-friendly).

        Args:
            theta: (B, P) flat weights in the order of ``trainable_variables`` (deterministic
                networks: the SG-MCMC state).
            x: (B, N, dim) events, row b evaluated under θ_b.
            c: (B, N, context_dim) context or None.

        Returns:
            (B, N) log-densities, row b equal to ``log_prob(x[b], c[b])`` with θ_b loaded.
        """
        if self.bayesian is not None or self.trace != "exact":
            msg = "batched_log_prob needs a deterministic CNF with the exact trace"
            raise ValueError(msg)
        theta = tf.convert_to_tensor(theta, tf.float32)
        x = tf.convert_to_tensor(x, tf.float32)
        shape = tf.shape(x)
        layout = dense_layout(self.trainable_variables, self.net)
        ctx = None if c is None else tf.convert_to_tensor(c, tf.float32)

        def velocity(t: Any, y: Any) -> Any:
            y = tf.reshape(y, shape)  # (B·N, D) state -> (B, N, D)
            feats = time_features(tf.fill([shape[0] * shape[1], 1], t), self.n_freq)
            parts = [y] if ctx is None else [y, ctx]
            parts.append(tf.reshape(feats, [shape[0], shape[1], -1]))
            v = dense_apply(theta, tf.concat(parts, axis=-1), layout)
            return tf.reshape(v, [-1, self.dim])

        flat = tf.reshape(x, [-1, self.dim])
        lp = ode_log_prob(velocity, flat, trace="exact", **self._ode_kwargs())
        return tf.reshape(lp, shape[:2])

    def log_prob(self, x: Any, c: Any = None, *, seed: Any = None) -> Any:
        """log p(x | c) by integrating the state and the divergence from t = 0 to t = 1; (N,).

        Differentiable in the weights (TFP's adjoint method for ``"dopri"``, backpropagation
        through the steps for ``"rk4"``). ``seed`` (stateless (2,)) draws the Hutchinson probes;
        default: derived from the model seed. It is ignored for the exact trace.
        """
        x = self._check_x(x)
        c = self._check_c(c, None)
        seed = stateless_seed(self.seed if seed is None else seed)
        if self._log_prob_tf is None:
            self._log_prob_tf = tf.function(self._log_prob_impl, reduce_retracing=True)
        return self._log_prob_tf(x, c, seed)
