"""The one resumable training loop of calamp's generators, and the rules it shares.

* :class:`EpochBatches` and :func:`step_seed`: the minibatch and the TF seed of step t are pure
  functions of (seed, t), so a resumed run sees exactly the batches and noise of an
  uninterrupted one (also used by the samplers and the batched CNF).
* :func:`lr_factor`: the learning-rate schedule (constant or cosine).
* :func:`train_loop`: runs a compiled step function for steps ``resumed_from .. steps - 1``,
  with a progress bar, ``tf.train.Checkpoint`` saves every ``checkpoint_every`` steps, a run key
  that refuses to resume a different run, the per-step losses kept across resumes, and one
  error for a non-finite loss or gradient. :meth:`Generator.fit` and :meth:`ShowerGAN.fit` are
  this loop with their own step.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from calamp._tf import tf
from calamp.atomic import atomic_path, write_json_atomic

__all__ = [
    "EpochBatches",
    "LR_SCHEDULES",
    "TrainingError",
    "check_fit_inputs",
    "check_schedule",
    "lr_factor",
    "run_key",
    "step_seed",
    "train_loop",
]

LR_SCHEDULES = ("constant", "cosine")


class TrainingError(RuntimeError):
    """Training produced a non-finite loss or gradient, or cannot proceed."""


def step_seed(seed: int, step: int) -> np.ndarray:
    """Stateless seed (2,) int32 of training step ``step`` of a run seeded with ``seed``."""
    state = np.random.SeedSequence([int(seed), 0x5EED, int(step)]).generate_state(2, np.uint32)
    return state.view(np.int32)


def lr_factor(schedule: str, t: int, steps: int) -> float:
    """Learning-rate factor of step t (0-based) of ``steps``: 1, or ``(1 + cos(pi t/steps))/2``."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t / steps))
    return 1.0


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
    model: Any,
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
    steps, batch_size = check_schedule(steps, batch_size, n_events, lr_schedule)
    if checkpoint_every < 1:
        msg = f"`checkpoint_every` must be positive, got {checkpoint_every}"
        raise ValueError(msg)
    return x_np, c_np, steps, batch_size


def check_schedule(steps: int, batch_size: int, n_events: int, lr_schedule: str) -> tuple[int, int]:
    """Validate a training schedule on N = ``n_events`` events: returns (steps, batch_size)."""
    steps, batch_size = int(steps), int(batch_size)
    if steps < 0:
        msg = f"`steps` must be non-negative, got {steps}"
        raise ValueError(msg)
    if not 1 <= batch_size <= n_events:
        msg = f"`batch_size` must be in [1, N={n_events}], got {batch_size}"
        raise ValueError(msg)
    if lr_schedule not in LR_SCHEDULES:
        msg = f"`lr_schedule` must be 'constant' or 'cosine', got {lr_schedule!r}"
        raise ValueError(msg)
    return steps, batch_size


def run_key(
    *,
    seed: int,
    batch_size: int,
    learning_rate: float,
    betas: Sequence[float],
    n_events: int,
    lr_schedule: str,
    steps: int,
    **extra: float,
) -> dict[str, Any]:
    """What identifies a training run for :func:`train_loop`'s resume check (JSON-ready).

    The total ``steps`` enter only with a schedule that depends on them (cosine); ``extra``
    holds a model's own settings (e.g. the GAN's discriminator learning rate)."""
    return {
        "seed": int(seed),
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        **{k: float(v) for k, v in extra.items()},
        "betas": [float(b) for b in betas],
        "n_events": int(n_events),
        "lr_schedule": lr_schedule,
        "steps": int(steps) if lr_schedule != "constant" else None,
    }


StepFn = Callable[[tf.Tensor, Any, tf.Tensor, tf.Tensor], tuple[Sequence[tf.Tensor], tf.Tensor]]


def train_loop(
    step_fn: StepFn,
    x: np.ndarray,
    c: np.ndarray | None,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    lr_schedule: str,
    learning_rate: float,
    betas: Sequence[float],
    key_extra: Mapping[str, float] | None = None,
    state: Mapping[str, tf.Module | tf.Variable],
    step_var: tf.Variable,
    loss_names: Sequence[str] = ("loss",),
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1000,
    progress: bool = True,
    desc: str = "fit",
    callback: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Run ``step_fn`` for the steps not yet done; resumable and bit-reproducible.

    Args:
        step_fn: ``step_fn(x_batch, c_batch or None, step_seed (2,), lr_factor) ->
            (losses, ok)``, compiled by the caller; ``losses`` one scalar per ``loss_names``,
            ``ok`` false when a loss or gradient was not finite (the step must then apply no
            update and leave ``step_var`` alone; otherwise it increments ``step_var``).
        x, c: validated training arrays (N, dim) and (N, C) or ``None``.
        steps, batch_size, seed, lr_schedule: the schedule (see :class:`EpochBatches`,
            :func:`step_seed`, :func:`lr_factor`).
        learning_rate, betas, key_extra: with the schedule, the :func:`run_key` of the run
            (``key_extra``: a model's own settings); a checkpoint of another run is refused.
        state: what a checkpoint holds besides ``step_var`` (model, optimisers), by name.
        step_var: int64 variable counting the applied steps.
        loss_names: names of the losses ``step_fn`` returns (the first is ``callback``'s).
        checkpoint_dir: folder for checkpoints, ``losses.npy`` and ``fit_state.json``.
        checkpoint_every: steps between checkpoints (and one at the end).
        progress, desc: tqdm bar and its label.
        callback: ``callback(step, first_loss)`` after every step (step counts from 1).

    Returns:
        ``{"losses": (steps, len(loss_names)) float64 (also the steps before a resume),
        "wall_seconds": float (this call), "steps": int, "resumed_from": int}``.

    Raises:
        ValueError: the checkpoint folder holds another run.
        TrainingError: a non-finite loss or gradient (the update was not applied).
    """
    losses = np.zeros((steps, len(loss_names)), np.float64)
    resumed_from = 0
    manager = None
    folder = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
    key = run_key(
        seed=seed, batch_size=batch_size, learning_rate=learning_rate, betas=betas,
        n_events=x.shape[0], lr_schedule=lr_schedule, steps=steps, **dict(key_extra or {}),
    )
    if folder is not None:
        ckpt = tf.train.Checkpoint(step=step_var, **state)
        manager = tf.train.CheckpointManager(ckpt, folder, max_to_keep=2)
        state_path = os.path.join(folder, "fit_state.json")
        if manager.latest_checkpoint is not None:
            if os.path.exists(state_path):
                with open(state_path) as f:
                    saved = json.load(f)
                if saved.get("run") != key:
                    msg = (
                        f"checkpoint in {folder!r} is from a different run ({saved.get('run')}); "
                        f"got {key}. Use another checkpoint_dir."
                    )
                    raise ValueError(msg)
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            resumed_from = int(step_var.numpy())
            loss_path = os.path.join(folder, "losses.npy")
            if os.path.exists(loss_path):
                old = np.load(loss_path).reshape(-1, len(loss_names))
                k = min(resumed_from, steps, old.shape[0])
                losses[:k] = old[:k]

    def save() -> None:
        assert manager is not None and folder is not None
        done = int(step_var.numpy())
        manager.save(checkpoint_number=done)
        with atomic_path(os.path.join(folder, "losses.npy")) as tmp, open(tmp, "wb") as fh:
            np.save(fh, losses[:done])
        write_json_atomic(os.path.join(folder, "fit_state.json"), {"run": key, "step": done})

    batches = EpochBatches(seed, x.shape[0], batch_size)
    t0 = time.perf_counter()
    bar = tqdm(total=steps, initial=min(resumed_from, steps), disable=not progress, desc=desc)
    try:
        for t in range(resumed_from, steps):
            idx = batches(t)
            out, ok = step_fn(
                tf.constant(x[idx]),
                None if c is None else tf.constant(c[idx]),
                tf.constant(step_seed(seed, t)),
                tf.constant(lr_factor(lr_schedule, t, steps), tf.float32),
            )
            values = [float(v.numpy()) for v in out]
            if not bool(ok.numpy()):
                shown = ", ".join(f"{n} = {v}" for n, v in zip(loss_names, values, strict=True))
                msg = (
                    f"non-finite loss or gradient at step {t + 1} ({shown}); the update was not "
                    "applied. Lower the learning rate or check the data."
                )
                raise TrainingError(msg)
            losses[t] = values
            bar.update(1)
            if progress and (t + 1) % 50 == 0:
                bar.set_postfix({n: f"{v:.4g}" for n, v in zip(loss_names, values, strict=True)})
            if callback is not None:
                callback(t + 1, values[0])
            if manager is not None and ((t + 1) % checkpoint_every == 0 or t + 1 == steps):
                save()
    finally:
        bar.close()
    return {
        "losses": losses,
        "wall_seconds": time.perf_counter() - t0,
        "steps": steps,
        "resumed_from": resumed_from,
    }
