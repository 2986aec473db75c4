"""K flow-matching CNFs trained and sampled as one batched computation.

A :class:`BatchedCNF` holds K copies of the :class:`~calamp.models.cnf.FlowMatchingCNF` velocity
MLP with every weight carrying a leading network axis, kernel (K, in, out) and bias (K, out), so
one batched matmul per layer evaluates all K networks. It trains them together
(:meth:`BatchedCNF.fit`: one compiled step for all K with a hand-written Adam on the batched
variables) and samples them together (:meth:`BatchedCNF.sample`, :meth:`BatchedCNF.sample_chunks`),
e.g. the s posterior draws of one network at once (:meth:`BatchedCNF.from_eval_weights`).
:meth:`BatchedCNF.to_generators` returns K ordinary ``FlowMatchingCNF`` objects with identical
weights, so the rest of calamp keeps using the normal :class:`~calamp.models.base.Generator`
interface.

Equivalence with K separate models. Network k is a pure function of its own initialisation seed,
data, and run seed: built with ``seeds[k]`` it starts from exactly the weights of
``FlowMatchingCNF(..., seed=seeds[k])``; :meth:`fit` with ``fit_seeds[k]`` uses the minibatches and
the stateless step seeds of ``FlowMatchingCNF.fit(..., seed=fit_seeds[k])`` (same epoch
permutations, same flow-matching times/noise, same VI weight noise), the same loss (flow-matching
MSE + ``kl_weight`` · KL under the configured convention of :mod:`calamp.bayes.vi`) and the same
Adam (torch epsilon convention, per-network step counter, non-finite steps not applied). The K
trained networks therefore equal K separate ``fit`` runs to float rounding (the batched matmul sums
in another order). The random numbers are drawn outside the XLA cluster, because XLA's stateless
RNG gives other numbers than TensorFlow's kernels.

Weight layout of VI networks: per layer the posterior ``loc``/``rho`` (K, P_l) with
P_l = in·out + out, flat as in :class:`~calamp.bayes.vi.VIDense` (kernel row-major, then bias).

Size (~590 lines): one class that mirrors :class:`~calamp.models.cnf.FlowMatchingCNF` method by
method (construction from and to single models, training, sampling) with a network axis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from calamp._tf import tf
from calamp.bayes import vi as _vi
from calamp.models.base import block_spans, fold_seed, rechunk, stateless_seed
from calamp.models.cnf import FlowMatchingCNF, flow_matching_pair, odeint, time_features
from calamp.models.training import (
    EpochBatches,
    TrainingError,
    check_schedule,
    lr_factor,
    step_seed,
)
from calamp.optim import adam_update

__all__ = ["BatchedCNF"]


def _seeds_tensor(seeds: Any, k: int, argname: str) -> tf.Tensor:
    """(K, 2) int32 stateless seeds from K ints or a (K, 2) array."""
    if isinstance(seeds, (tf.Tensor, np.ndarray)) and np.ndim(seeds) == 2:
        out = tf.cast(tf.convert_to_tensor(seeds), tf.int32)
    else:
        seeds = list(seeds)
        out = tf.stack([stateless_seed(s) for s in seeds]) if seeds else tf.zeros([0, 2], tf.int32)
    if out.shape != (k, 2):
        msg = f"`{argname}` must hold {k} seeds (ints or a (K, 2) array), got shape {out.shape}"
        raise ValueError(msg)
    return out


class BatchedCNF(tf.Module):
    """K flow-matching CNFs (the reference velocity MLP) with a leading network axis.

    Args:
        n_networks: K.
        dim: event dimension D.
        context_dim: conditioning dimension C (0 = unconditional).
        bayesian: ``"vi"`` (mean-field Gaussian layers, KL conventions of
            :mod:`calamp.bayes.vi`) or ``None``.
        vi: :class:`~calamp.bayes.vi.VIConfig` (or dict) for ``bayesian="vi"``.
        seeds: K initialisation seeds (default 0..K−1); network k starts from the weights of
            ``FlowMatchingCNF(..., seed=seeds[k])``.
        hidden, layers, n_freq, sigma_min, solver, atol, rtol, n_steps: as
            :class:`~calamp.models.cnf.FlowMatchingCNF`.
        jit_compile: compile the training block with XLA (measured faster on CPU, see
            benchmarks/RESULTS.md).

    Attributes:
        kernels, biases: lists of tf.Variable (K, in, out) and (K, out) (deterministic), or
        locs, rhos: lists of tf.Variable (K, P_l) (VI).
    """

    def __init__(
        self,
        n_networks: int,
        dim: int,
        context_dim: int = 0,
        *,
        bayesian: str | None = None,
        vi: Any = None,
        seeds: Sequence[int] | None = None,
        hidden: int = 32,
        layers: int = 3,
        n_freq: int = 3,
        sigma_min: float = 1e-4,
        solver: str = "dopri",
        atol: float = 1e-6,
        rtol: float = 1e-5,
        n_steps: int = 32,
        jit_compile: bool = True,
        _models: Sequence[FlowMatchingCNF] | None = None,
    ) -> None:
        super().__init__(name="batched_cnf")
        if int(n_networks) < 1:
            msg = f"`n_networks` must be a positive integer, got {n_networks!r}"
            raise ValueError(msg)
        k = int(n_networks)
        if _models is None:
            seeds = list(range(k)) if seeds is None else [int(s) for s in seeds]
            if len(seeds) != k:
                msg = f"`seeds` must have n_networks={k} entries, got {len(seeds)}"
                raise ValueError(msg)
            kwargs = dict(
                bayesian=bayesian, vi=vi, hidden=hidden, layers=layers, n_freq=n_freq,
                sigma_min=sigma_min, solver=solver, atol=atol, rtol=rtol, n_steps=n_steps,
            )
            _models = [FlowMatchingCNF(dim, context_dim, seed=s, **kwargs) for s in seeds]
        first = _models[0]
        self.n_networks = k
        self.template_config = first.config()
        self.seeds = [m.seed for m in _models]
        self.dim, self.context_dim = first.dim, first.context_dim
        self.bayesian, self.vi = first.bayesian, first.vi
        self.n_freq, self.sigma_min = first.n_freq, first.sigma_min
        self.solver, self.atol, self.rtol, self.n_steps = (
            first.solver, first.atol, first.rtol, first.n_steps
        )
        self.jit_compile = bool(jit_compile)
        self.shapes: list[tuple[int, int]] = []
        for layer in first.net:
            if self.bayesian == "vi":
                p = int(layer.posterior_loc.shape[0])
                units = int(layer.units)
                self.shapes.append(((p - units) // units, units))
            else:
                self.shapes.append(tuple(int(s) for s in layer.kernel.shape))
        if self.bayesian == "vi":
            self.locs = [
                tf.Variable(np.stack([m.net[i].posterior_loc.numpy() for m in _models]),
                            name=f"loc{i}")
                for i in range(len(self.shapes))
            ]
            self.rhos = [
                tf.Variable(np.stack([m.net[i].posterior_rho.numpy() for m in _models]),
                            name=f"rho{i}")
                for i in range(len(self.shapes))
            ]
            self.variables_list = [*self.locs, *self.rhos]
        else:
            self.kernels = [
                tf.Variable(np.stack([m.net[i].kernel.numpy() for m in _models]),
                            name=f"kernel{i}")
                for i in range(len(self.shapes))
            ]
            self.biases = [
                tf.Variable(np.stack([m.net[i].bias.numpy() for m in _models]), name=f"bias{i}")
                for i in range(len(self.shapes))
            ]
            self.variables_list = [*self.kernels, *self.biases]
        self._sample_tf: Any = None
        self._block_tf: dict[Any, Any] = {}

    # -- construction from / to ordinary generators --------------------------------------------
    @classmethod
    def from_generators(
        cls, models: Sequence[FlowMatchingCNF], *, jit_compile: bool = True
    ) -> BatchedCNF:
        """Stack K ``FlowMatchingCNF`` of one architecture (their current trainable weights)."""
        models = list(models)
        if not models or not all(isinstance(m, FlowMatchingCNF) for m in models):
            msg = "`models` must be a non-empty sequence of FlowMatchingCNF"
            raise ValueError(msg)
        ref = {k: v for k, v in models[0].config().items() if k != "seed"}
        for m in models[1:]:
            if {k: v for k, v in m.config().items() if k != "seed"} != ref:
                msg = "`models` must share one configuration (apart from the seed)"
                raise ValueError(msg)
        return cls(len(models), models[0].dim, models[0].context_dim, jit_compile=jit_compile,
                   _models=models)

    @classmethod
    def from_eval_weights(
        cls, template: FlowMatchingCNF, weights: Any, *, jit_compile: bool = True
    ) -> BatchedCNF:
        """Deterministic batch of s posterior draws: flat eval weights (s, P) of ``template``.

        ``weights[i]`` is what ``template.get_eval_weights()`` returns for draw i (deterministic,
        ensemble, SG-MCMC or frozen VI draws); the batch then samples all s draws at once.
        ``template``'s own weights are restored afterwards.
        """
        weights = np.asarray(weights, np.float32)
        if weights.ndim != 2:
            msg = f"`weights` must have shape (s, P), got {weights.shape}"
            raise ValueError(msg)
        cfg = template.config()
        cfg.update(bayesian=None, vi=None)
        del cfg["kind"]
        proto = FlowMatchingCNF(**cfg)
        saved = template.get_eval_weights() if (
            template.bayesian != "vi" or _vi.is_frozen(template)) else None
        models = []
        for w in weights:
            template.set_eval_weights(w)
            layers = []
            for layer in template.net:
                if template.bayesian == "vi":
                    flat = layer.frozen_weights.numpy()
                    units = int(layer.units)
                    ks = flat.size - units
                    layers.append((flat[:ks].reshape(ks // units, units), flat[ks:]))
                else:
                    layers.append((layer.kernel.numpy(), layer.bias.numpy()))
            models.append(layers)
        if saved is not None:
            template.set_eval_weights(saved)
        elif template.bayesian == "vi":
            template.unfreeze()
        out = cls(len(models), proto.dim, proto.context_dim, jit_compile=jit_compile,
                  _models=[proto])
        # _models=[proto] built K=len(weights) slots from one prototype: fill them now.
        for i in range(len(out.shapes)):
            out.kernels[i] = tf.Variable(np.stack([m[i][0] for m in models]), name=f"kernel{i}")
            out.biases[i] = tf.Variable(np.stack([m[i][1] for m in models]), name=f"bias{i}")
        out.variables_list = [*out.kernels, *out.biases]
        out.seeds = [template.seed] * len(models)
        return out

    def to_generators(self) -> list[FlowMatchingCNF]:
        """K ordinary ``FlowMatchingCNF`` with network k's weights (VI: posterior loc/rho)."""
        out = []
        for k in range(self.n_networks):
            cfg = dict(self.template_config)
            del cfg["kind"]
            cfg["seed"] = self.seeds[k]
            m = FlowMatchingCNF(**cfg)
            for i, layer in enumerate(m.net):
                if self.bayesian == "vi":
                    layer.posterior_loc.assign(self.locs[i][k])
                    layer.posterior_rho.assign(self.rhos[i][k])
                else:
                    layer.kernel.assign(self.kernels[i][k])
                    layer.bias.assign(self.biases[i][k])
            out.append(m)
        return out

    @property
    def num_params(self) -> int:
        """Trainable weights per network (VI: loc and rho)."""
        return int(sum(np.prod(v.shape[1:]) for v in self.variables_list))

    # -- the network -----------------------------------------------------------------------
    def _layer_weights(self, eps: Sequence[Any] | None) -> list[tuple[Any, Any]]:
        """Per layer (kernel (K, in, out), bias (K, out)); VI: loc + softplus(rho) · eps."""
        if self.bayesian != "vi":
            return list(zip(self.kernels, self.biases, strict=True))
        out = []
        for (n_in, n_out), loc, rho, e in zip(self.shapes, self.locs, self.rhos, eps,
                                              strict=True):
            w = loc + tf.nn.softplus(rho) * e
            ks = n_in * n_out
            out.append((tf.reshape(w[:, :ks], [-1, n_in, n_out]), w[:, ks:]))
        return out

    def _mlp(self, h: Any, weights: Sequence[tuple[Any, Any]]) -> Any:
        last = len(weights) - 1
        for i, (kernel, bias) in enumerate(weights):
            h = tf.linalg.matmul(h, kernel) + bias[:, None, :]
            if i < last:
                h = tf.nn.elu(h)
        return h

    def velocity(self, t: Any, y: Any, c: Any = None, *, eps: Any = None) -> Any:
        """Velocities of all K networks.

        Args:
            t: scalar or (K, N, 1) times.
            y: (K, N, D) states.
            c: (K, N, C) context or ``None``.
            eps: VI only: per layer (K, P_l) standard-normal weight noise (default: posterior
                means, i.e. zero noise).

        Returns:
            (K, N, D) velocities.
        """
        y = tf.convert_to_tensor(y, tf.float32)
        shape = tf.shape(y)
        t = tf.broadcast_to(tf.cast(t, tf.float32), tf.concat([shape[:2], [1]], 0))
        tf_feat = tf.reshape(time_features(tf.reshape(t, [-1, 1]), self.n_freq),
                             tf.concat([shape[:2], [2 * self.n_freq]], 0))
        parts = [y] if c is None else [y, tf.cast(c, tf.float32)]
        parts.append(tf_feat)
        if self.bayesian == "vi" and eps is None:
            eps = [tf.zeros_like(loc) for loc in self.locs]
        return self._mlp(tf.concat(parts, axis=-1), self._layer_weights(eps))

    def kl_divergence(self) -> tf.Tensor:
        """(K,) unweighted KL of each network under ``vi.kl_convention`` (VI only)."""
        if self.bayesian != "vi":
            msg = "kl_divergence needs bayesian='vi'"
            raise ValueError(msg)
        ps = self.vi.prior_scale
        total = 0.0
        for (n_in, n_out), loc, rho in zip(self.shapes, self.locs, self.rhos, strict=True):
            s = tf.nn.softplus(rho)
            kl = tf.math.log(ps / s) + (tf.square(s) + tf.square(loc)) / (2.0 * ps**2) - 0.5
            if self.vi.kl_convention == "sum":
                total = total + tf.reduce_sum(kl, axis=1)
            else:
                ks = n_in * n_out
                total = (total + tf.reduce_mean(kl[:, :ks], axis=1)
                         + tf.reduce_mean(kl[:, ks:], axis=1))
        return total

    # -- randomness (outside XLA: XLA's stateless RNG differs from TF's kernels) ------------
    def _step_random(self, seeds: Any, batch: int) -> tuple[Any, Any, list[Any]]:
        """t (M, B, 1), z (M, B, D) and VI noise per layer (M, P_l) for M step seeds (M, 2)."""
        n_layers = len(self.shapes)
        sizes = [a * b + b for a, b in self.shapes]
        vi = self.bayesian == "vi"
        dim = self.dim

        def one(seed: Any) -> tuple:
            s0, s1 = fold_seed(seed, 0), fold_seed(seed, 1)
            t = tf.random.stateless_uniform([batch, 1], fold_seed(s0, 0))
            z = tf.random.stateless_normal([batch, dim], fold_seed(s0, 1))
            eps = tuple(tf.random.stateless_normal([sizes[i]], fold_seed(s1, i))
                        for i in range(n_layers)) if vi else ()
            return (t, z, *eps)

        spec = (tf.TensorSpec([batch, 1]), tf.TensorSpec([batch, dim]),
                *([tf.TensorSpec([p]) for p in sizes] if vi else []))
        out = tf.map_fn(one, seeds, fn_output_signature=spec)
        return out[0], out[1], list(out[2:])

    # -- training --------------------------------------------------------------------------
    def _losses(self, x: Any, c: Any, t: Any, z: Any, eps: Sequence[Any]) -> Any:
        y, u = flow_matching_pair(x, z, t, self.sigma_min)
        v = self.velocity(t, y, c, eps=list(eps) if self.bayesian == "vi" else None)
        loss = tf.reduce_mean(tf.square(v - u), axis=[1, 2])
        if self.bayesian == "vi":
            loss = loss + self.vi.kl_weight * self.kl_divergence()
        return loss

    def _make_block(self, has_c: bool) -> Any:
        """Compiled: S training steps for all K networks from precomputed batches and noise."""
        k = self.n_networks
        variables = self.variables_list
        n_layers = len(self.shapes)
        vi = self.bayesian == "vi"
        # the widths' learning-rate factor (VIConfig.scale_lr_factor), as Generator.fit applies it
        var_factors = [1.0] * len(variables)
        if vi:
            var_factors = [1.0] * len(self.locs) + [self.vi.scale_lr_factor] * len(self.rhos)

        def core(xs, cs, ts, zs, eps, lr_factors, alive, adam):
            m_vars, v_vars, iters, lr, b1, b2, eps_adam = adam
            n = tf.shape(xs)[0]
            losses = tf.TensorArray(tf.float32, size=n)
            finites = tf.TensorArray(tf.bool, size=n)
            for s in tf.range(n):
                xb = xs[s]
                cb = cs[s] if has_c else None
                tb = tf.reshape(ts[s], [k, -1, 1])
                zb = tf.reshape(zs[s], tf.shape(xb))
                eb = [tf.reshape(e[s], [k, -1]) for e in eps] if vi else []
                with tf.GradientTape() as tape:
                    loss = self._losses(xb, cb, tb, zb, eb)
                    total = tf.reduce_sum(loss)
                grads = tape.gradient(total, variables)
                finite = tf.math.is_finite(loss)
                for g in grads:
                    axes = list(range(1, g.shape.rank))
                    finite = finite & tf.reduce_all(tf.math.is_finite(g), axis=axes)
                ok = finite & alive
                alive = ok
                it = iters + tf.cast(ok, tf.float32)  # per-network Adam step counters (K,)
                iters.assign(it)
                tt = tf.maximum(it, 1.0)
                for g, mv, vv, var, f in zip(grads, m_vars, v_vars, variables, var_factors,
                                             strict=True):
                    bshape = [k] + [1] * (g.shape.rank - 1)
                    okb = tf.reshape(ok, bshape)
                    step_lr = lr_factors[s] * lr if f == 1.0 else lr_factors[s] * (lr * f)
                    update, m_new, v_new = adam_update(
                        tf.where(okb, g, 0.0), mv, vv, tf.reshape(tt, bshape),
                        lr=step_lr, beta1=b1, beta2=b2, eps=eps_adam,
                    )
                    mv.assign(tf.where(okb, m_new, mv))
                    vv.assign(tf.where(okb, v_new, vv))
                    var.assign_sub(tf.where(okb, update, 0.0))
                losses = losses.write(s, loss)
                finites = finites.write(s, finite)
            return losses.stack(), finites.stack()

        del n_layers
        return core

    def fit(
        self,
        x: Any,
        c: Any = None,
        *,
        steps: int,
        batch_size: int,
        learning_rate: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        seeds: Sequence[int] | None = None,
        lr_schedule: str = "constant",
        steps_per_call: int = 50,
    ) -> dict[str, Any]:
        """Train all K networks together; network k equals ``FlowMatchingCNF.fit(seed=seeds[k])``.

        Args:
            x: (K, N, D) per-network training sets or (N, D) shared by all networks.
            c: (K, N, C), (N, C) or ``None``.
            steps: optimisation steps (per network).
            batch_size: events per step and network (<= N).
            learning_rate, betas: Adam settings (epsilon 1e-8, torch convention as in ``fit``).
            seeds: K run seeds (minibatch permutations and step seeds as in ``Generator.fit``);
                default ``self.seeds``.
            lr_schedule: ``"constant"`` or ``"cosine"``.
            steps_per_call: steps per compiled call (amortises Python overhead).

        Returns:
            ``{"loss": (steps, K) float64, "wall_seconds": float, "steps": int,
            "block_seconds": wall time of each compiled call (the first includes tracing and
            compilation; batch assembly in numpy excluded)}``.

        Raises:
            TrainingError: a network met a non-finite loss or gradient (its update was not
                applied; the other networks finished their current block).
        """
        k = self.n_networks
        x_np = np.asarray(x, np.float32)
        if x_np.ndim == 2:
            x_np = np.broadcast_to(x_np, (k, *x_np.shape))
        if x_np.ndim != 3 or x_np.shape[0] != k or x_np.shape[2] != self.dim:
            msg = f"`x` must have shape ({k}, N, {self.dim}) or (N, {self.dim}), got {x_np.shape}"
            raise ValueError(msg)
        n_events = x_np.shape[1]
        c_np = None
        if self.context_dim:
            if c is None:
                msg = f"`c` with {self.context_dim} columns is required"
                raise ValueError(msg)
            c_np = np.asarray(c, np.float32)
            if c_np.ndim == 2:
                c_np = np.broadcast_to(c_np, (k, *c_np.shape))
            if c_np.shape != (k, n_events, self.context_dim):
                msg = f"`c` must have shape ({k}, {n_events}, {self.context_dim}), got {c_np.shape}"
                raise ValueError(msg)
        elif c is not None:
            msg = "`c` given but the networks are unconditional"
            raise ValueError(msg)
        steps, batch_size = check_schedule(steps, batch_size, n_events, lr_schedule)
        seeds = list(self.seeds if seeds is None else [int(s) for s in seeds])
        if len(seeds) != k:
            msg = f"`seeds` must have {k} entries, got {len(seeds)}"
            raise ValueError(msg)

        m_vars = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables_list]
        v_vars = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables_list]
        iters = tf.Variable(tf.zeros([k]), trainable=False)
        adam = (m_vars, v_vars, iters, float(learning_rate), float(betas[0]), float(betas[1]),
                1e-8)
        core = self._make_block(c_np is not None)
        block = tf.function(
            lambda xs, cs, ts, zs, eps, lrf, alive: core(xs, cs, ts, zs, eps, lrf, alive, adam),
            jit_compile=self.jit_compile,
        )
        rng = tf.function(lambda s: self._step_random(s, batch_size))

        batches = [EpochBatches(seed, n_events, batch_size) for seed in seeds]
        losses = np.zeros((steps, k), np.float64)
        alive = np.ones(k, bool)
        block_seconds = []
        t0 = time.perf_counter()
        for start in range(0, steps, int(steps_per_call)):
            stop = min(steps, start + int(steps_per_call))
            s_len = stop - start
            xs = np.empty((s_len, k, batch_size, self.dim), np.float32)
            cs = (np.empty((s_len, k, batch_size, self.context_dim), np.float32)
                  if c_np is not None else np.zeros([s_len, k, 0, 0], np.float32))
            sd = np.empty((s_len, k, 2), np.int32)
            lrf = np.array([lr_factor(lr_schedule, t, steps) for t in range(start, stop)],
                           np.float32)
            for j, t in enumerate(range(start, stop)):
                for net in range(k):
                    idx = batches[net](t)
                    xs[j, net] = x_np[net, idx]
                    if c_np is not None:
                        cs[j, net] = c_np[net, idx]
                    sd[j, net] = step_seed(seeds[net], t)
            tb = time.perf_counter()
            ts, zs, eps = rng(tf.constant(sd.reshape(-1, 2)))
            ts = tf.reshape(ts, [s_len, -1])
            zs = tf.reshape(zs, [s_len, -1])
            eps = [tf.reshape(e, [s_len, -1]) for e in eps]
            loss, finite = block(tf.constant(xs), tf.constant(cs), ts, zs, eps,
                                 tf.constant(lrf), tf.constant(alive))
            loss, finite = loss.numpy(), finite.numpy()
            block_seconds.append(time.perf_counter() - tb)
            losses[start:stop] = loss
            if not finite.all():
                j, net = np.argwhere(~finite)[0]
                msg = (f"network {int(net)}: non-finite loss or gradient at step "
                       f"{start + int(j) + 1}; the update was not applied")
                raise TrainingError(msg)
        return {"loss": losses, "wall_seconds": time.perf_counter() - t0, "steps": steps,
                "block_seconds": np.asarray(block_seconds)}

    # -- sampling --------------------------------------------------------------------------
    def _sample_impl(self, n: Any, c: Any, seeds: Any) -> Any:
        k = self.n_networks
        z = tf.stack([tf.random.stateless_normal(tf.stack([n, self.dim]), fold_seed(seeds[i], 0))
                      for i in range(k)])
        eps = None
        if self.bayesian == "vi":
            eps = [tf.stack([tf.random.stateless_normal([a * b + b],
                                                        fold_seed(fold_seed(seeds[i], 1), j))
                             for i in range(k)])
                   for j, (a, b) in enumerate(self.shapes)]
        return odeint(lambda t, y: self.velocity(t, y, c, eps=eps), z, 1.0, 0.0,
                      solver=self.solver, atol=self.atol, rtol=self.rtol, n_steps=self.n_steps)

    def sample(self, n: int, c: Any = None, *, seeds: Any) -> tf.Tensor:
        """Draw n events from each network at once: (K, n, D).

        Network k's noise is that of ``FlowMatchingCNF.sample(n, seed=seeds[k])``; with the fixed
        step RK4 solver the result equals it to float rounding, with Dormand–Prince the step
        sizes are chosen for all K·n trajectories together (same tolerances). VI networks draw
        one weight sample per network from ``seeds[k]`` (as an unfrozen ``FlowMatchingCNF``).

        Args:
            n: events per network.
            c: (n, C) shared or (K, n, C) per-network context; ``None`` if unconditional.
            seeds: K ints or (K, 2) stateless seeds.
        """
        k = self.n_networks
        seeds_t = _seeds_tensor(seeds, k, "seeds")
        if self.context_dim:
            if c is None:
                msg = f"`c` with {self.context_dim} columns is required"
                raise ValueError(msg)
            c = tf.convert_to_tensor(c, tf.float32)
            if c.shape.rank == 2:
                c = tf.broadcast_to(c[None], [k, *c.shape])
            if tuple(c.shape) != (k, int(n), self.context_dim):
                msg = f"`c` must have shape (n, C) or (K, n, C), got {tuple(c.shape)}"
                raise ValueError(msg)
        elif c is not None:
            msg = "`c` given but the networks are unconditional"
            raise ValueError(msg)
        if self._sample_tf is None:
            self._sample_tf = tf.function(self._sample_impl, reduce_retracing=True)
        return self._sample_tf(tf.constant(int(n), tf.int32), c, seeds_t)

    def sample_chunks(
        self, n: int, c: Any = None, *, seeds: Any, chunk_size: int = 100_000
    ) -> Iterator[np.ndarray]:
        """Yield n events per network in chunks (K, ≤ chunk_size, D) (bounded memory).

        Generation block j (:data:`~calamp.models.base.SEED_BLOCK` events) of network k uses
        seed ``fold_seed(seed_k, j)``, as ``Generator.sample_chunks``: the events do not depend
        on ``chunk_size``.
        """
        if chunk_size < 1:
            msg = f"`chunk_size` must be positive, got {chunk_size}"
            raise ValueError(msg)
        base = _seeds_tensor(seeds, self.n_networks, "seeds")

        def blocks() -> Iterator[np.ndarray]:
            for j, (start, stop) in enumerate(block_spans(n)):
                cj = None
                if c is not None:
                    cj = np.asarray(c, np.float32)[..., start:stop, :]
                sj = tf.stack([fold_seed(base[i], j) for i in range(self.n_networks)])
                # events along axis 0 for rechunk: (n_b, K, D)
                yield np.moveaxis(self.sample(stop - start, cj, seeds=sj).numpy(), 1, 0)

        for chunk in rechunk(blocks(), int(chunk_size)):
            yield np.moveaxis(chunk, 0, 1)
