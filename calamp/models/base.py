"""The common interface of calamp's generators, and their generic training loop.

Every generator (coupling / autoregressive flows, CNF, GAN) subclasses :class:`Generator` and is
registered under a ``kind`` name with :func:`register_generator`, so that a model can be rebuilt
anywhere from its JSON configuration: ``build_generator(model.config())``.

A subclass implements

* ``__init__(self, dim, context_dim=0, *, bayesian=None, vi=None, seed=0, **own_args)``: call
  ``super().__init__`` first, then build every variable (call the networks once), so that
  variables exist before checkpoints are restored;
* ``_constructor_args(self) -> dict``: its own JSON-serialisable constructor arguments;
* ``_sample(self, n, c, seed) -> tf (n, dim)``: traceable sampling (``n`` is a scalar int32
  tensor, ``seed`` a stateless seed (2,) int32);
* ``log_prob(self, x, c=None) -> tf (N,)`` where an exact density exists, and/or
  ``data_loss(self, x, c, seed) -> scalar`` (default ``-mean(log_prob)``).

The base class adds the VI KL term, seeds VI noise statelessly, compiles sampling, streams
samples in chunks, flattens the weights that define one posterior draw, and trains with Adam in
the resumable, bit-reproducible loop of :mod:`calamp.models.training` (:meth:`Generator.fit`).

Randomness: every seed argument is an ``int`` or a stateless seed of shape (2,) (int32/int64).
Within one call the base class splits it with ``stateless_fold_in``: stream 0 goes to the
subclass (``data_loss``/``_sample``), stream 1 to the VI layers' weight noise.

Size (~480 lines): the one interface every generator implements (registry, seeds, input checks,
losses, chunked sampling, posterior-draw weights, ``fit``); the loop itself lives in
:mod:`calamp.models.training`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from calamp._tf import tf
from calamp.bayes import vi as _vi
from calamp.models.training import (
    EpochBatches,
    TrainingError,
    check_fit_inputs,
    train_loop,
)
from calamp.optim import Adam

__all__ = [
    "SEED_BLOCK",
    "XLA_MIN_STEPS",
    "EpochBatches",
    "GENERATORS",
    "Generator",
    "TrainingError",
    "build_generator",
    "check_fit_inputs",
    "block_spans",
    "fold_seed",
    "rechunk",
    "register_generator",
    "stateless_seed",
]

SEED_BLOCK = 16_384
"""Generated events per independently seeded block: block b of a draw uses seed
``fold_seed(seed, b)``, so the events never depend on the chunk size (memory is bounded by
max(chunk_size, SEED_BLOCK) events)."""

XLA_MIN_STEPS = 250
"""A :attr:`Generator.xla` model trains with the XLA-compiled step only in fits of at least this
many steps: compiling costs 1.4–5.3 s more than tracing the plain step and saves 20–30 ms per
step on small shower flows (2x16 to 3x32 couplings, deterministic and VI;
``python benchmarks/bench_shower_flow.py --small``), so it pays from about 250 steps."""

GENERATORS: dict[str, type[Generator]] = {}

_BAYESIAN = (None, "vi")


def register_generator(kind: str) -> Callable[[type[Generator]], type[Generator]]:
    """Class decorator: register a :class:`Generator` subclass under ``kind``."""

    def deco(cls: type[Generator]) -> type[Generator]:
        if kind in GENERATORS and GENERATORS[kind] is not cls:
            msg = f"generator kind {kind!r} is already registered to {GENERATORS[kind].__name__}"
            raise ValueError(msg)
        cls.kind = kind
        GENERATORS[kind] = cls
        return cls

    return deco


def build_generator(config: Mapping[str, Any]) -> Generator:
    """Rebuild a generator from :meth:`Generator.config` (weights are not included)."""
    if "kind" not in config:
        msg = "`config` has no 'kind' entry; expected the output of Generator.config()"
        raise ValueError(msg)
    kind = config["kind"]
    if kind not in GENERATORS:
        import calamp.models  # noqa: F401  (registers the built-in generators)
    if kind not in GENERATORS:
        msg = f"unknown generator kind {kind!r}; registered: {sorted(GENERATORS)}"
        raise ValueError(msg)
    kwargs = {k: v for k, v in config.items() if k != "kind"}
    return GENERATORS[kind](**kwargs)


def stateless_seed(seed: Any) -> tf.Tensor:
    """A stateless seed (2,) int32 from an int (hashed with SeedSequence) or a pair/tensor."""
    return _vi._seed_tensor(seed)


def fold_seed(seed: tf.Tensor, i: int) -> tf.Tensor:
    """Stateless seed (2,) of stream ``i`` derived from ``seed`` (TF's ``stateless_fold_in``)."""
    return tf.random.experimental.stateless_fold_in(seed, i)


_fold = fold_seed


def dense_layout(
    variables: Sequence[tf.Variable], layers: Sequence[Any]
) -> list[tuple[int, tuple[int, int], int, Any]]:
    """Where each Keras ``Dense`` layer's weights sit in the flat vector of ``variables``.

    Returns, per layer: (kernel offset, kernel shape (in, out), bias offset, activation), the
    input of a functional (batched-weights) evaluation such as
    :meth:`calamp.models.flows.CouplingFlow.batched_log_prob`.
    """
    offsets, pos = {}, 0
    for v in variables:
        offsets[id(v)] = pos
        pos += int(v.shape.num_elements())
    return [
        (offsets[id(layer.kernel)], tuple(layer.kernel.shape), offsets[id(layer.bias)],
         layer.activation)
        for layer in layers
    ]


def dense_apply(
    theta: Any, h: Any, layout: Sequence[tuple[int, tuple[int, int], int, Any]]
) -> Any:
    """The dense layers of ``layout`` on h (B, N, in) with B weight vectors theta (B, P)."""
    for k_off, (n_in, n_out), b_off, act in layout:
        kernel = tf.reshape(theta[:, k_off : k_off + n_in * n_out], [-1, n_in, n_out])
        h = act(tf.linalg.matmul(h, kernel) + theta[:, None, b_off : b_off + n_out])
    return h


def block_spans(n: int) -> list[tuple[int, int]]:
    """(start, stop) of the :data:`SEED_BLOCK` blocks of n events."""
    return [(a, min(int(n), a + SEED_BLOCK)) for a in range(0, int(n), SEED_BLOCK)]


def rechunk(blocks: Iterator[np.ndarray], chunk_size: int) -> Iterator[np.ndarray]:
    """Concatenate/split a stream of arrays (along axis 0) into chunks of ``chunk_size`` rows
    (the last may be shorter); the rows and their order are unchanged."""
    if chunk_size < 1:
        msg = f"`chunk_size` must be positive, got {chunk_size}"
        raise ValueError(msg)
    buf: list[np.ndarray] = []
    have = 0
    for block in blocks:
        while len(block):
            take = min(len(block), chunk_size - have)
            buf.append(block[:take])
            have += take
            block = block[take:]
            if have == chunk_size:
                yield np.concatenate(buf) if len(buf) > 1 else buf[0]
                buf, have = [], 0
    if have:
        yield np.concatenate(buf) if len(buf) > 1 else buf[0]


class Generator(tf.Module):
    """Base class of calamp's (Bayesian) generators g(z, c; theta).

    Attributes:
        dim: event dimension in feature space.
        context_dim: dimension of the conditioning input c (0 = unconditional).
        bayesian: ``"vi"`` (VI layers, see :mod:`calamp.bayes.vi`) or ``None`` (deterministic
            weights; SG-MCMC and ensembles act on them from outside).
        vi: the :class:`~calamp.bayes.vi.VIConfig` (``None`` unless ``bayesian == "vi"``).
        seed: initialisation seed.

    Shapes: x (N, dim) float32, c (N, context_dim) float32 or ``None``.
    """

    kind: ClassVar[str] = ""
    xla: ClassVar[bool] = False
    """Compile the training step with XLA (``jit_compile``); set where it is measured faster
    (benchmarks/RESULTS.md). The numbers stay deterministic and resumable, but differ in the
    last bits (and in XLA's own stateless random numbers) from the uncompiled step."""

    def __init__(
        self,
        dim: int,
        context_dim: int = 0,
        *,
        bayesian: str | None = None,
        vi: _vi.VIConfig | Mapping[str, Any] | None = None,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if int(dim) < 1:
            msg = f"`dim` must be a positive integer, got {dim!r}"
            raise ValueError(msg)
        if int(context_dim) < 0:
            msg = f"`context_dim` must be a non-negative integer, got {context_dim!r}"
            raise ValueError(msg)
        if bayesian not in _BAYESIAN:
            msg = f"`bayesian` must be one of {_BAYESIAN}, got {bayesian!r}"
            raise ValueError(msg)
        if vi is not None and bayesian != "vi":
            msg = "`vi` settings given but `bayesian` is not 'vi'"
            raise ValueError(msg)
        self.dim = int(dim)
        self.context_dim = int(context_dim)
        self.bayesian = bayesian
        self.vi = _vi.as_vi_config(vi) if bayesian == "vi" else None
        self.seed = int(seed)
        self._sample_tf: Any = None

    # -- to be provided by subclasses ----------------------------------------------------------
    def _constructor_args(self) -> dict[str, Any]:
        """Subclass-specific JSON-serialisable constructor arguments."""
        return {}

    def _sample(self, n: tf.Tensor, c: tf.Tensor | None, seed: tf.Tensor) -> tf.Tensor:
        """Traceable sampling with the current weights: (n, dim)."""
        raise NotImplementedError

    def log_prob(self, x: Any, c: Any = None) -> tf.Tensor:
        """Exact log density log p(x | c) in feature space, (N,)."""
        msg = f"{type(self).__name__} has no exact log density"
        raise NotImplementedError(msg)

    def data_loss(self, x: tf.Tensor, c: tf.Tensor | None, seed: tf.Tensor) -> tf.Tensor:
        """Mean per-event data loss of one batch (default: mean negative log-likelihood)."""
        del seed
        return -tf.reduce_mean(self.log_prob(x, c))

    # -- configuration -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments, with ``kind``; see :func:`build_generator`."""
        cfg: dict[str, Any] = {
            "kind": self.kind,
            "dim": self.dim,
            "context_dim": self.context_dim,
            "bayesian": self.bayesian,
            "vi": None if self.vi is None else self.vi.to_dict(),
            "seed": self.seed,
        }
        cfg.update(self._constructor_args())
        json.dumps(cfg)  # fail early if a subclass returns something not serialisable
        return cfg

    # -- inputs --------------------------------------------------------------------------------
    def _check_x(self, x: Any, argname: str = "x") -> tf.Tensor:
        x = tf.convert_to_tensor(x, tf.float32)
        if x.shape.rank != 2 or (x.shape[-1] is not None and x.shape[-1] != self.dim):
            msg = f"`{argname}` must have shape (N, {self.dim}), got {tuple(x.shape)}"
            raise ValueError(msg)
        return x

    def _check_c(self, c: Any, n: Any = None) -> tf.Tensor | None:
        if self.context_dim == 0:
            if c is not None:
                msg = "`c` given but the model is unconditional (context_dim=0)"
                raise ValueError(msg)
            return None
        if c is None:
            msg = f"`c` of shape (N, {self.context_dim}) is required (context_dim > 0)"
            raise ValueError(msg)
        c = tf.convert_to_tensor(c, tf.float32)
        if c.shape.rank != 2 or (c.shape[-1] is not None and c.shape[-1] != self.context_dim):
            msg = f"`c` must have shape (N, {self.context_dim}), got {tuple(c.shape)}"
            raise ValueError(msg)
        if isinstance(n, int) and c.shape[0] is not None and c.shape[0] != n:
            msg = f"`c` has {c.shape[0]} rows but {n} events were asked for"
            raise ValueError(msg)
        return c

    # -- losses ----------------------------------------------------------------------------------
    def train_loss(self, x: Any, c: Any = None, *, seed: Any) -> tf.Tensor:
        """Mean per-event training loss of a batch, plus ``kl_weight * KL`` for VI; scalar.

        Args:
            x: (B, dim) batch.
            c: (B, context_dim) context or ``None``.
            seed: stateless seed (2,) of this step; VI weight noise uses stream 1 of it.
        """
        seed = stateless_seed(seed)
        if self.bayesian == "vi":
            _vi.set_noise_seed(self, _fold(seed, 1))
        loss = self.data_loss(x, c, _fold(seed, 0))
        if self.bayesian == "vi":
            loss = loss + _vi.kl_loss(self)
        return loss

    def nll(self, x: Any, c: Any = None) -> tf.Tensor:
        """Mean negative log-likelihood per event (SG-MCMC energy / N); scalar."""
        return -tf.reduce_mean(self.log_prob(x, c))

    # -- sampling --------------------------------------------------------------------------------
    def _sample_impl(self, n: tf.Tensor, c: tf.Tensor | None, seed: tf.Tensor) -> tf.Tensor:
        if self.bayesian == "vi":
            # ignored by frozen layers; an unfrozen VI model draws fresh weights from the seed
            _vi.set_noise_seed(self, _fold(seed, 1))
        return self._sample(n, c, _fold(seed, 0))

    def sample(self, n: int, c: Any = None, *, seed: Any) -> tf.Tensor:
        """Draw ``n`` events (n, dim) with the current weights, in one compiled call.

        For a VI model after :meth:`freeze_draw` all events use the frozen draw; an unfrozen VI
        model uses one fresh weight sample per call, drawn from ``seed``.
        """
        n = int(n)
        if n < 0:
            msg = f"`n` must be non-negative, got {n}"
            raise ValueError(msg)
        c = self._check_c(c, n)
        if self._sample_tf is None:
            self._sample_tf = tf.function(
                self._sample_impl, reduce_retracing=True, jit_compile=self.xla
            )
        return self._sample_tf(tf.constant(n, tf.int32), c, stateless_seed(seed))

    def sample_chunks(
        self, n: int, c: Any = None, *, seed: Any, chunk_size: int = 100_000
    ) -> Iterator[np.ndarray]:
        """Yield ``n`` events in numpy chunks of ``chunk_size`` rows (the last may be shorter).

        Events are generated in blocks of :data:`SEED_BLOCK`; block b uses seed
        ``fold_seed(seed, b)``, so the events do not depend on ``chunk_size``. A VI model must
        be frozen first (one draw for all chunks); otherwise a ``ValueError`` is raised.
        """
        if chunk_size < 1:
            msg = f"`chunk_size` must be positive, got {chunk_size}"
            raise ValueError(msg)
        if self.bayesian == "vi" and not _vi.is_frozen(self):
            msg = "a VI generator must be frozen to one draw (freeze_draw) before sample_chunks"
            raise ValueError(msg)
        if c is not None:
            c = np.asarray(c, np.float32)
            if c.shape[0] != n:
                msg = f"`c` has {c.shape[0]} rows but {n} events were asked for"
                raise ValueError(msg)
        base = stateless_seed(seed)
        blocks = (
            self.sample(b - a, None if c is None else c[a:b], seed=fold_seed(base, k)).numpy()
            for k, (a, b) in enumerate(block_spans(n))
        )
        yield from rechunk(blocks, int(chunk_size))

    # -- posterior draws ---------------------------------------------------------------------
    def _vi_posterior_refs(self) -> set[int]:
        refs: set[int] = set()
        for layer in _vi.vi_layers(self):
            refs.add(id(layer.posterior_loc))
            refs.add(id(layer.posterior_rho))
        return refs

    @property
    def eval_variables(self) -> list[tf.Variable]:
        """Variables that define one posterior draw (deterministic: the trainable variables;
        VI: every layer's frozen weights, then the non-Bayesian trainable variables)."""
        if self.bayesian != "vi":
            return list(self.trainable_variables)
        posterior = self._vi_posterior_refs()
        frozen = [layer.frozen_weights for layer in _vi.vi_layers(self)]
        rest = [v for v in self.trainable_variables if id(v) not in posterior]
        return frozen + rest

    def get_eval_weights(self) -> np.ndarray:
        """Flat vector (P,) float32 of :attr:`eval_variables` (VI: must be frozen)."""
        if self.bayesian == "vi" and not _vi.is_frozen(self):
            msg = "VI generator is not frozen to a draw; call freeze_draw(seed) first"
            raise ValueError(msg)
        parts = [tf.reshape(v, [-1]).numpy().astype(np.float32) for v in self.eval_variables]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def set_eval_weights(self, vec: Any) -> None:
        """Load a flat vector (P,) into :attr:`eval_variables`; a VI model becomes frozen."""
        vec = np.asarray(vec, np.float32).reshape(-1)
        variables = self.eval_variables
        sizes = [int(np.prod(v.shape)) for v in variables]
        if vec.size != sum(sizes):
            msg = f"`vec` has {vec.size} entries, the model's eval weights have {sum(sizes)}"
            raise ValueError(msg)
        offset = 0
        for v, size in zip(variables, sizes, strict=True):
            v.assign(vec[offset : offset + size].reshape(v.shape))
            offset += size
        if self.bayesian == "vi":
            for layer in _vi.vi_layers(self):
                layer.frozen.assign(True)

    def freeze_draw(self, seed: Any) -> None:
        """Fix one posterior draw from ``seed`` (VI); a no-op for deterministic weights."""
        if self.bayesian == "vi":
            _vi.freeze_draw(self, seed)

    def unfreeze(self) -> None:
        """Back to sampling weights per call (VI); a no-op for deterministic weights."""
        if self.bayesian == "vi":
            _vi.unfreeze(self)

    # -- training ----------------------------------------------------------------------------
    @property
    def fit_variables(self) -> list[tf.Variable]:
        """Variables :meth:`fit` optimises (default: all trainable variables)."""
        return list(self.trainable_variables)

    def fit(
        self,
        x: Any,
        c: Any = None,
        *,
        steps: int,
        batch_size: int,
        learning_rate: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        seed: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 1000,
        progress: bool = True,
        callback: Callable[[int, float], None] | None = None,
        lr_schedule: str = "constant",
    ) -> dict[str, Any]:
        """Train with Adam on minibatches of ``train_loss``; resumable and bit-reproducible.

        The minibatch of step t is a pure function of (seed, t): epoch e = t // (N // batch_size)
        uses the permutation ``np.random.default_rng([seed, e]).permutation(N)`` (the last
        incomplete batch of an epoch is dropped), and the step's TF seed is derived from
        (seed, t). With ``checkpoint_dir`` the variables, the Adam state and the step counter are
        saved every ``checkpoint_every`` steps and at the end; calling ``fit`` again with the same
        arguments resumes from the latest checkpoint and ends bit-identical to an uninterrupted
        run.

        Args:
            x: (N, dim) training events.
            c: (N, context_dim) context or ``None``.
            steps: total number of optimisation steps (including any already done).
            batch_size: events per step (<= N).
            learning_rate, betas: Adam settings (epsilon 1e-8).
            seed: run seed (batches and all TF randomness).
            checkpoint_dir: folder for ``tf.train.Checkpoint`` files, or ``None``.
            checkpoint_every: steps between checkpoints.
            progress: show a tqdm bar.
            callback: ``callback(step, loss)`` after every step (step counts from 1).
            lr_schedule: ``"constant"`` or ``"cosine"`` (learning rate
                ``lr * (1 + cos(pi t / steps)) / 2``, which removes most of the minibatch jitter
                of the final weights).

        Returns:
            ``{"loss": (steps,) float array (all steps, also those before a resume),
            "wall_seconds": float (this call), "steps": int, "resumed_from": int}``.

        Raises:
            TrainingError: on a non-finite loss or gradient (the bad update is not applied).
        """
        x_np, c_np, steps, batch_size = check_fit_inputs(
            self, x, c, steps, batch_size, checkpoint_every, lr_schedule
        )
        variables = self.fit_variables
        adam = Adam(variables, learning_rate, betas, 1e-8, _vi.lr_factors(self, variables))
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False)

        def train_step(
            xb: tf.Tensor, cb: tf.Tensor | None, sd: tf.Tensor, factor: tf.Tensor
        ) -> Any:
            with tf.GradientTape() as tape:
                loss = self.train_loss(xb, cb, seed=sd)
            grads = tape.gradient(loss, variables)
            missing = [v.name for v, g in zip(variables, grads, strict=True) if g is None]
            if missing:
                msg = f"train_loss gives no gradient for variables {missing}"
                raise TrainingError(msg)
            finite = tf.math.is_finite(loss)
            for g in grads:
                finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(g)))
            if finite:
                adam.apply(grads, variables, factor)
                step_var.assign_add(1)
            return (loss,), finite

        out = train_loop(
            tf.function(train_step, jit_compile=self.xla and steps >= XLA_MIN_STEPS),
            x_np,
            c_np,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            lr_schedule=lr_schedule,
            learning_rate=learning_rate,
            betas=betas,
            state={"model": self, "optimizer": adam},
            step_var=step_var,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            progress=progress,
            desc=f"fit {self.kind or type(self).__name__}",
            callback=callback,
        )
        return {
            "loss": out["losses"][:, 0].copy(),
            "wall_seconds": out["wall_seconds"],
            "steps": steps,
            "resumed_from": out["resumed_from"],
        }
