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
samples in chunks, flattens the weights that define one posterior draw, and trains with Adam in a
resumable, bit-reproducible loop (:meth:`Generator.fit`).

Randomness: every seed argument is an ``int`` or a stateless seed of shape (2,) (int32/int64).
Within one call the base class splits it with ``stateless_fold_in``: stream 0 goes to the
subclass (``data_loss``/``_sample``), stream 1 to the VI layers' weight noise.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from calamp._tf import tf
from calamp.bayes import vi as _vi

__all__ = [
    "SEED_BLOCK",
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

GENERATORS: dict[str, type[Generator]] = {}

_BAYESIAN = (None, "vi")


class TrainingError(RuntimeError):
    """Training produced a non-finite loss or gradient, or cannot proceed."""


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


def _step_seed(seed: int, step: int) -> np.ndarray:
    """Stateless seed (2,) int32 of training step ``step`` of a run seeded with ``seed``."""
    state = np.random.SeedSequence([int(seed), 0x5EED, int(step)]).generate_state(2, np.uint32)
    return state.view(np.int32)


class EpochBatches:
    """Minibatch rule shared by every training loop and sampler: the batch of step t is a pure
    function of (seed, t), so a resumed run sees exactly the batches of an uninterrupted one.

    Epoch e = t // (N // batch_size) uses the permutation ``default_rng([seed, e])``; the last
    incomplete batch of an epoch is dropped. The current epoch's permutation is cached.
    """

    def __init__(self, seed: int, n_events: int, batch_size: int) -> None:
        self.seed, self.n, self.batch = int(seed), int(n_events), int(batch_size)
        self.per_epoch = max(1, self.n // self.batch)
        self._epoch, self._perm = -1, np.arange(0)

    def __call__(self, t: int) -> np.ndarray:
        """Indices (batch_size,) of the events of step ``t``."""
        epoch, j = divmod(int(t), self.per_epoch)
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._epoch = epoch
        return self._perm[j * self.batch : (j + 1) * self.batch]


def check_fit_inputs(
    model: Generator,
    x: Any,
    c: Any,
    steps: int,
    batch_size: int,
    checkpoint_every: int,
    lr_schedule: str,
) -> tuple[np.ndarray, np.ndarray | None, int, int]:
    """Validate the common arguments of a ``fit``: returns (x, c or None, steps, batch_size)."""
    x_np = np.asarray(x, np.float32)
    model._check_x(x_np[:1])
    n_events = x_np.shape[0]
    c_np = None
    if model.context_dim or c is not None:
        c_np = np.asarray(c, np.float32) if c is not None else None
        model._check_c(c_np)
        if c_np is not None and c_np.shape[0] != n_events:
            msg = f"`c` has {c_np.shape[0]} rows but `x` has {n_events}"
            raise ValueError(msg)
    steps, batch_size = int(steps), int(batch_size)
    if steps < 0:
        msg = f"`steps` must be non-negative, got {steps}"
        raise ValueError(msg)
    if not 1 <= batch_size <= n_events:
        msg = f"`batch_size` must be in [1, N={n_events}], got {batch_size}"
        raise ValueError(msg)
    if checkpoint_every < 1:
        msg = f"`checkpoint_every` must be positive, got {checkpoint_every}"
        raise ValueError(msg)
    if lr_schedule not in ("constant", "cosine"):
        msg = f"`lr_schedule` must be 'constant' or 'cosine', got {lr_schedule!r}"
        raise ValueError(msg)
    return x_np, c_np, steps, batch_size


class _Adam(tf.Module):
    """Adam (Kingma & Ba, arXiv:1412.6980) with torch's epsilon convention, as tf.Variables."""

    def __init__(
        self, variables: list[tf.Variable], lr: float, betas: tuple[float, float], eps: float
    ) -> None:
        super().__init__(name="adam")
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(betas[0]), float(betas[1]), eps
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

    def apply(
        self, grads: list[tf.Tensor], variables: list[tf.Variable], lr_factor: tf.Tensor
    ) -> None:
        t = tf.cast(self.iterations.assign_add(1), tf.float32)
        lr_t = lr_factor * self.lr * tf.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        eps_t = self.eps * tf.sqrt(1.0 - self.beta2**t)
        for g, m, v, var in zip(grads, self.m, self.v, variables, strict=True):
            m.assign(self.beta1 * m + (1.0 - self.beta1) * g)
            v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(g))
            var.assign_sub(lr_t * m / (tf.sqrt(v) + eps_t))


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
        n_events = x_np.shape[0]

        variables = self.fit_variables
        adam = _Adam(variables, learning_rate, betas, 1e-8)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        losses = np.zeros(steps, np.float64)
        resumed_from = 0
        manager = None
        run_key = {
            "seed": int(seed),
            "batch_size": batch_size,
            "learning_rate": float(learning_rate),
            "betas": [float(b) for b in betas],
            "n_events": int(n_events),
            "lr_schedule": lr_schedule,
            "steps": steps if lr_schedule != "constant" else None,
        }
        if checkpoint_dir is not None:
            ckpt = tf.train.Checkpoint(model=self, optimizer=adam, step=step_var)
            manager = tf.train.CheckpointManager(ckpt, os.fspath(checkpoint_dir), max_to_keep=2)
            state_path = os.path.join(os.fspath(checkpoint_dir), "fit_state.json")
            if manager.latest_checkpoint is not None:
                if os.path.exists(state_path):
                    with open(state_path) as f:
                        saved = json.load(f)
                    if saved.get("run") != run_key:
                        msg = (
                            f"checkpoint in {os.fspath(checkpoint_dir)!r} is from a different run "
                            f"({saved.get('run')}); got {run_key}. Use another checkpoint_dir."
                        )
                        raise ValueError(msg)
                ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
                resumed_from = int(step_var.numpy())
                loss_path = os.path.join(os.fspath(checkpoint_dir), "losses.npy")
                if os.path.exists(loss_path):
                    old = np.load(loss_path)
                    k = min(resumed_from, steps, old.size)
                    losses[:k] = old[:k]

        def save() -> None:
            assert manager is not None
            done = int(step_var.numpy())
            manager.save(checkpoint_number=done)
            folder = os.fspath(checkpoint_dir)
            tmp = os.path.join(folder, "losses.tmp.npy")
            np.save(tmp, losses[:done])
            os.replace(tmp, os.path.join(folder, "losses.npy"))
            with open(os.path.join(folder, "fit_state.json"), "w") as f:
                json.dump({"run": run_key, "step": done}, f)

        has_c = c_np is not None

        def train_step(
            xb: tf.Tensor, cb: tf.Tensor | None, sd: tf.Tensor, lr_factor: tf.Tensor
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
                adam.apply(grads, variables, lr_factor)
                step_var.assign_add(1)
            return loss, finite

        step_fn = tf.function(train_step, jit_compile=self.xla)
        batches = EpochBatches(seed, n_events, batch_size)
        t0 = time.perf_counter()
        bar = tqdm(
            total=steps,
            initial=min(resumed_from, steps),
            disable=not progress,
            desc=f"fit {self.kind or type(self).__name__}",
        )
        try:
            for t in range(resumed_from, steps):
                idx = batches(t)
                cb = tf.constant(c_np[idx]) if has_c else None
                factor = 1.0
                if lr_schedule == "cosine":
                    factor = 0.5 * (1.0 + math.cos(math.pi * t / steps))
                loss, finite = step_fn(
                    tf.constant(x_np[idx]),
                    cb,
                    tf.constant(_step_seed(seed, t)),
                    tf.constant(factor, tf.float32),
                )
                loss_value = float(loss.numpy())
                if not bool(finite.numpy()):
                    msg = (
                        f"non-finite loss or gradient at step {t + 1} (loss = {loss_value}); "
                        "the update was not applied. Lower the learning rate or check the data."
                    )
                    raise TrainingError(msg)
                losses[t] = loss_value
                bar.update(1)
                if progress and (t + 1) % 50 == 0:
                    bar.set_postfix(loss=f"{loss_value:.4g}")
                if callback is not None:
                    callback(t + 1, loss_value)
                if manager is not None and ((t + 1) % checkpoint_every == 0 or t + 1 == steps):
                    save()
        finally:
            bar.close()
        return {
            "loss": losses,
            "wall_seconds": time.perf_counter() - t0,
            "steps": steps,
            "resumed_from": resumed_from,
        }
