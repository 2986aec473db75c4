"""Running SG-MCMC chains: the resumable step loop and the schedule of posterior draws.

:func:`run_chain` runs a sampler of :mod:`calamp.bayes.samplers` for n steps, keeps every
thin-th state after a burn-in and checkpoints the run (bit-identical resume).
:func:`draw_posterior` is calamp's schedule on top of it, in two checkpointed stages:

1. burn-in (``burn_in`` steps; AdamMCMC freezes its moments at its end, so the rest of the
   chain is an exact Metropolis–Hastings chain for fixed moments);
2. ``draws · thin`` steps keeping every ``thin``-th state. ``thin = 0`` measures it: twice the
   largest integrated autocorrelation time τ over the second half of the burn-in (so kept
   states are ≈ independent), capped at ``max_thin``, of the caller's function-space
   statistics (``stat_fn``, e.g. the log-density of fixed events) or else of four random
   projections of θ.

The kept states' ESS and split-R̂ (of the θ projections, of the statistics, and of the energy
at the same cadence) are returned with a warning when ESS < s/2 or R̂ > 1.05, judged on the
statistics when given (what the draws generate depends on the function, not on weight
directions that leave it unchanged), else on the θ projections. The energy U is evaluated on a
different minibatch at every step, so its series mixes batch noise in and is not used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from calamp._tf import tf
from calamp.bayes.batched import BatchedAdamMCMC
from calamp.bayes.diagnostics import chain_summary, integrated_autocorrelation_time, warning_for
from calamp.bayes.flat import get_flat
from calamp.bayes.samplers import SGHMC, SGLD, AdamMCMC

__all__ = ["ChainResult", "PosteriorDraws", "draw_posterior", "run_chain"]


@dataclass(frozen=True)
class PosteriorDraws:
    """Kept states of one chain and how they were obtained.

    Attributes:
        samples: (draws, P) float32 kept states θ.
        info: JSON-ready facts: steps, burn_in, thin, thin_measured, tau_burn_in_steps,
            acceptance rates, n_nonfinite, ess_theta_min, rhat_theta_max, ess_energy,
            mh_noise_chi2_median (AdamMCMC with per-event terms, else None), warning.
        trace: (draws, 4) θ projections of the kept states.
        stat_trace: (draws, m) the caller's function-space statistics of the kept states
            (``stat_fn``), or None.
    """

    samples: np.ndarray
    info: dict[str, Any]
    trace: np.ndarray
    stat_trace: np.ndarray | None = None


def draw_posterior(
    sampler: AdamMCMC | SGLD | SGHMC | BatchedAdamMCMC,
    batch_fn: Callable[[int], tuple],
    *,
    draws: int,
    burn_in: int,
    thin: int = 0,
    max_thin: int = 100,
    total_steps: int = 0,
    seed: int = 0,
    progress: bool = False,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    stat_fn: Callable[[], np.ndarray] | None = None,
) -> PosteriorDraws | list[PosteriorDraws]:
    """Run the schedule of the module docstring and return the kept states.

    Args:
        sampler: the sampler (its state is the start, e.g. pre-trained weights); a
            :class:`~calamp.bayes.batched.BatchedAdamMCMC` runs its B chains in lockstep with
            one common thinning (the largest measured over the chains).
        batch_fn: ``batch_fn(step)`` -> batch tuple for ``sampler.step`` (pure in ``step``).
        draws: s kept states (per chain).
        burn_in: steps before the first kept state.
        thin: steps between kept states (0: measured; needs ``burn_in >= 8``).
        max_thin: cap of the measured thinning.
        total_steps: if > 0, the total steps including burn-in (the draws are the last s
            states kept every ``(total_steps - burn_in) // draws`` steps), overriding ``thin``.
        seed: seed of the random projections of θ (the same for every chain).
        progress: tqdm progress bars.
        checkpoint_dir: resume directory (stages in ``burn_in/`` and ``draws/``).
        stat_fn: optional function-space statistics of the current state, (m,) or (B, m) (e.g.
            the mean log-density of fixed events): they then set the measured thinning and the
            warning in place of the θ projections, because what the draws generate depends on
            the function, and a network's weights keep drifting along directions that leave it
            unchanged. Their ESS and R̂ are reported as ``ess_stat_min``/``rhat_stat_max``.

    Returns:
        A :class:`PosteriorDraws`, or for a batched sampler a list of B of them (chain order).
    """
    if total_steps > 0:
        thin = max(1, (total_steps - burn_in) // draws)
    if thin == 0 and burn_in < 8:
        msg = f"a measured thinning needs `burn_in` >= 8, got {burn_in}"
        raise ValueError(msg)
    lead = _chain_axis(sampler)
    p = sampler.num_params
    proj = np.random.default_rng(seed).standard_normal((4, p)) / np.sqrt(p)

    n_chains = lead[0] if lead else 1

    def trace() -> np.ndarray:
        theta = (_state(sampler).astype(np.float64) @ proj.T).reshape(n_chains, 4)
        if stat_fn is None:
            return theta
        return np.concatenate([theta, np.reshape(stat_fn(), (n_chains, -1))], axis=1)

    def stage(name: str) -> str | None:
        return None if checkpoint_dir is None else os.path.join(os.fspath(checkpoint_dir), name)

    taus = np.full((n_chains,), np.nan)
    acc_burn = np.full((n_chains,), np.nan)
    if burn_in > 0:
        burn = run_chain(
            sampler,
            batch_fn,
            n_steps=burn_in,
            burn_in=burn_in - 1,
            thin=1,
            progress=progress,
            checkpoint_dir=stage("burn_in"),
            checkpoint_every=max(50, burn_in // 10),
            trace_fn=trace,
        )
        acc_burn = np.reshape(burn.acceptance_rate, n_chains)
        half = burn.trace[burn_in // 2 :].reshape(burn_in - burn_in // 2, n_chains, -1)
        if len(half) >= 4:
            for b in range(n_chains):
                # the function-space statistics when given, else the θ projections
                tau_b = integrated_autocorrelation_time(half[:, b, 4 if stat_fn else 0 :])
                # all NaN: the chain did not move (the diagnostics warn)
                taus[b] = np.nanmax(tau_b) if np.isfinite(tau_b).any() else np.nan
    tau = float(np.nanmax(taus)) if np.isfinite(taus).any() else None
    measured = thin == 0
    if measured:
        thin = int(np.clip(np.ceil(2.0 * (tau if tau is not None else 1.0)), 1, max_thin))
    n_steps = total_steps - burn_in if total_steps > 0 else draws * thin
    skip = n_steps - draws * thin
    res = run_chain(
        sampler,
        batch_fn,
        n_steps=n_steps,
        burn_in=skip,
        thin=thin,
        progress=progress,
        checkpoint_dir=stage("draws"),
        checkpoint_every=max(50, n_steps // 10),
        trace_fn=trace,
    )
    kept = res.trace[skip + thin - 1 :: thin][-draws:].reshape(draws, n_chains, -1)
    stats, kept = (kept[:, :, 4:], kept[:, :, :4]) if stat_fn else (None, kept)
    energies = res.energies[skip::thin][:draws].reshape(-1, n_chains)
    samples = res.samples[-draws:].reshape(draws, n_chains, p)
    acc = np.reshape(res.acceptance_rate, n_chains)
    nonfinite = np.reshape(res.n_nonfinite, n_chains)
    chi2 = res.noise_chi2.reshape(n_steps, n_chains)
    chi2_median = [_median_or_none(chi2[:, b]) for b in range(n_chains)]
    out = []
    for b in range(n_chains):
        empty = {"stuck": False, "ess_min": None, "rhat_max": None}
        if draws >= 4:
            theta = chain_summary(kept[:, b])
            energy = chain_summary(energies[:, b])
            stat = chain_summary(stats[:, b]) if stat_fn else empty
        else:  # too few states for an autocorrelation estimate
            theta = energy = stat = empty
        info = {
            "steps": burn_in + n_steps,
            "burn_in": burn_in,
            "thin": thin,
            "thin_measured": measured,
            "tau_burn_in_steps": tau if not lead else _finite(taus[b]),
            "acceptance_rate": float(acc[b]),
            "acceptance_rate_burn_in": _finite(acc_burn[b]),
            "n_nonfinite": int(nonfinite[b]),
            "ess_theta_min": theta["ess_min"],
            "rhat_theta_max": theta["rhat_max"],
            "ess_energy": energy["ess_min"],
            "ess_stat_min": stat["ess_min"],
            "rhat_stat_max": stat["rhat_max"],
            "mh_noise_chi2_median": chi2_median[b],
            "warning": join_warnings(warning_for(stat if stat_fn else theta, draws),
                                     noise_warning(chi2_median[b])),
        }
        out.append(
            PosteriorDraws(samples[:, b], info, kept[:, b], None if stats is None else stats[:, b])
        )
    return out if lead else out[0]


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _median_or_none(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else None


def join_warnings(*warnings: str | None) -> str | None:
    """The non-empty warnings joined with "; ", or None."""
    return "; ".join(w for w in warnings if w) or None


MH_NOISE_WARN = 1.0
"""Warn when the median minibatch noise χ² of the MH tests exceeds this."""


def noise_warning(chi2_median: float | None) -> str | None:
    """The warning for a Metropolis–Hastings test dominated by minibatch noise, or None."""
    if chi2_median is None or chi2_median <= MH_NOISE_WARN:
        return None
    return (f"the Metropolis-Hastings test is decided by minibatch noise (median chi2 "
            f"{chi2_median:.3g} > {MH_NOISE_WARN:g}), so the chain does not sample the posterior "
            "(a chain that moves samples wider than it; smaller --sampler-lr/--sigma, a larger "
            "--batch-size, or --mh-noise penalty)")


@dataclass(frozen=True)
class ChainResult:
    """Outcome of :func:`run_chain`.

    Attributes:
        samples: (n_kept, P) float32 kept states, n_kept = (n_steps − burn_in) // thin.
        kept_steps: (n_kept,) int64 sampler step count at which each state was kept.
        energies: (n_steps,) float64 U at the state each step started from.
        acceptance_rate: fraction of accepted steps in this run ((B,) for B batched chains).
        n_nonfinite: number of steps in this run that met NaN/inf (rejected or skipped; (B,)
            for B batched chains).
        steps: number of steps of this run (n_steps).
        trace: (n_steps, m) ``trace_fn()`` after every step (summary statistics of θ for
            autocorrelation diagnostics), or None without ``trace_fn``.
        noise_chi2: (n_steps,) the minibatch noise χ² of each step's Metropolis–Hastings test
            (AdamMCMC with per-event energy terms), NaN where not measured.
    """

    samples: np.ndarray
    kept_steps: np.ndarray
    energies: np.ndarray
    acceptance_rate: float | np.ndarray
    n_nonfinite: int | np.ndarray
    steps: int
    trace: np.ndarray | None = None
    noise_chi2: np.ndarray | None = None


class _RunState(tf.Module):
    """Checkpointed bookkeeping of one :func:`run_chain` call."""

    def __init__(
        self,
        n_steps: int,
        burn_in: int,
        thin: int,
        n_kept: int,
        p: int,
        m: int = 0,
        lead: tuple[int, ...] = (),
    ) -> None:
        super().__init__(name="run_state")
        lead = list(lead)
        self.trace = tf.Variable(tf.zeros([n_steps, *lead, m], tf.float64), trainable=False)
        self.config = tf.Variable(
            [n_steps, burn_in, thin, p, *lead], dtype=tf.int64, trainable=False
        )
        self.done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.samples = tf.Variable(tf.zeros([n_kept, *lead, p], tf.float32), trainable=False)
        self.kept_steps = tf.Variable(tf.zeros([n_kept], tf.int64), trainable=False)
        self.energies = tf.Variable(tf.zeros([n_steps, *lead], tf.float64), trainable=False)
        self.accepted = tf.Variable(tf.zeros([n_steps, *lead], tf.int8), trainable=False)
        self.nonfinite = tf.Variable(tf.zeros([n_steps, *lead], tf.int8), trainable=False)
        self.noise_chi2 = tf.Variable(tf.zeros([n_steps, *lead], tf.float64), trainable=False)


def _chain_axis(sampler: Any) -> tuple[int, ...]:
    """``(B,)`` for a batched sampler of B chains, ``()`` for a single chain."""
    return (sampler.n_chains,) if isinstance(sampler, BatchedAdamMCMC) else ()


def _state(sampler: Any) -> np.ndarray:
    """Current θ: (P,) for a single chain, (B, P) for a batched sampler."""
    if isinstance(sampler, BatchedAdamMCMC):
        return sampler.state()
    return get_flat(sampler.model_variables)


def run_chain(
    sampler: AdamMCMC | SGLD | SGHMC | BatchedAdamMCMC,
    batch_fn: Callable[[int], tuple] | None,
    *,
    n_steps: int,
    burn_in: int = 0,
    thin: int = 1,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1000,
    trace_fn: Callable[[], np.ndarray] | None = None,
) -> ChainResult:
    """Run ``n_steps`` sampler steps and keep every ``thin``-th state after ``burn_in`` steps.

    The state after run step i (0-based) is kept when i ≥ burn_in and (i + 1 − burn_in) is a
    multiple of ``thin``. ``batch_fn(step)`` receives the sampler's global step count and must
    return the batch tuple for ``sampler.step`` as a pure function of it (so a resumed chain is
    bit-identical). ``batch_fn=None`` means ``energy_fn()`` takes no arguments (full or fixed
    batch captured in the closure); the steps between kept states then run inside one compiled
    loop, without per-step Python overhead.

    With ``checkpoint_dir`` the sampler (θ and its state) and the run so far (kept samples,
    energies, flags) are saved every ``checkpoint_every`` steps and at the end; calling again
    with the same directory and arguments resumes where the last checkpoint left off (a finished
    run returns immediately). The directory must belong to this chain.

    ``trace_fn()`` (with ``batch_fn`` only) returns a small vector of summary statistics of the
    current state (e.g. random projections of θ), recorded after every step and checkpointed
    with the run: the input of :mod:`calamp.bayes.diagnostics`.

    A :class:`~calamp.bayes.batched.BatchedAdamMCMC` of B chains runs all of them in lockstep:
    every per-step and per-state array of the result gets a chain axis after its first
    (samples (n_kept, B, P), energies (n_steps, B), trace (n_steps, B, m)), the acceptance rate
    and non-finite count are (B,) arrays, and ``trace_fn()`` returns (B, m).

    Returns:
        :class:`ChainResult`.
    """
    n_steps, burn_in, thin = int(n_steps), int(burn_in), int(thin)
    if n_steps < 1:
        msg = f"`n_steps` must be >= 1, got {n_steps}"
        raise ValueError(msg)
    if not 0 <= burn_in < n_steps:
        msg = f"`burn_in` must lie in [0, n_steps={n_steps}), got {burn_in}"
        raise ValueError(msg)
    if thin < 1:
        msg = f"`thin` must be >= 1, got {thin}"
        raise ValueError(msg)
    if int(checkpoint_every) < 1:
        msg = f"`checkpoint_every` must be >= 1, got {checkpoint_every}"
        raise ValueError(msg)
    if trace_fn is not None and batch_fn is None:
        msg = "`trace_fn` needs a `batch_fn` (per-step execution)"
        raise ValueError(msg)
    lead = _chain_axis(sampler)
    if lead and batch_fn is None:
        msg = "a batched sampler needs a `batch_fn` (its energy takes the batch explicitly)"
        raise ValueError(msg)
    n_kept = (n_steps - burn_in) // thin
    p = sampler.num_params
    m = 0 if trace_fn is None else int(np.size(trace_fn())) // int(np.prod(lead, dtype=int))
    state = _RunState(n_steps, burn_in, thin, n_kept, p, m, lead)
    trace = np.zeros((n_steps, *lead, m), np.float64)
    samples = np.zeros((n_kept, *lead, p), np.float32)
    kept_steps = np.zeros(n_kept, np.int64)
    energies = np.zeros((n_steps, *lead), np.float64)
    accepted = np.zeros((n_steps, *lead), np.int8)
    nonfinite = np.zeros((n_steps, *lead), np.int8)
    noise_chi2 = np.full((n_steps, *lead), np.nan)
    config = [n_steps, burn_in, thin, p, *lead]

    manager = None
    if checkpoint_dir is not None:
        ckpt = tf.train.Checkpoint(run=state, **sampler.checkpoint_items())
        manager = tf.train.CheckpointManager(ckpt, os.fspath(checkpoint_dir), max_to_keep=2)
        if manager.latest_checkpoint:
            saved = tf.train.load_variable(
                manager.latest_checkpoint, "run/config/.ATTRIBUTES/VARIABLE_VALUE"
            )
            if list(saved) != config:
                names = "(n_steps, burn_in, thin, P" + (", B)" if lead else ")")
                msg = (
                    f"`checkpoint_dir` {os.fspath(checkpoint_dir)!r} holds a run with "
                    f"{names} = {tuple(int(x) for x in saved)}, not "
                    f"{tuple(config)}: use a fresh directory"
                )
                raise ValueError(msg)
            ckpt.restore(manager.latest_checkpoint).assert_consumed()
            samples[:] = state.samples.numpy()
            kept_steps[:] = state.kept_steps.numpy()
            energies[:] = state.energies.numpy()
            accepted[:] = state.accepted.numpy()
            nonfinite[:] = state.nonfinite.numpy()
            noise_chi2[:] = state.noise_chi2.numpy()
            trace[:] = state.trace.numpy()

    done = int(state.done.numpy())

    def save() -> None:
        state.done.assign(done)
        state.samples.assign(samples)
        state.kept_steps.assign(kept_steps)
        state.energies.assign(energies)
        state.accepted.assign(accepted)
        state.nonfinite.assign(nonfinite)
        state.noise_chi2.assign(noise_chi2)
        state.trace.assign(trace)
        manager.save(checkpoint_number=sampler.steps)

    every = int(checkpoint_every)
    with tqdm(total=n_steps, initial=done, disable=not progress, desc=sampler.name) as bar:
        while done < n_steps:
            start = done
            if batch_fn is None:
                # Compiled segment up to the next kept state, checkpoint or the end.
                next_keep = burn_in + (max(0, done - burn_in) // thin + 1) * thin
                stop = min(n_steps, next_keep, (done // every + 1) * every)
                seg = sampler._run_steps(tf.constant(stop - done, tf.int32))
                energies[done:stop], accepted[done:stop], nonfinite[done:stop] = (
                    t.numpy() for t in seg
                )
                done = stop
            else:
                out = sampler.step(*batch_fn(sampler.steps))
                energies[done] = out["energy"].numpy()
                accepted[done] = out["accepted"].numpy()
                nonfinite[done] = out["nonfinite"].numpy()
                if "noise_chi2" in out:
                    noise_chi2[done] = out["noise_chi2"].numpy()
                if trace_fn is not None:
                    trace[done] = np.asarray(trace_fn(), np.float64).reshape(*lead, m)
                done += 1
            if done > burn_in and (done - burn_in) % thin == 0:
                k = (done - burn_in) // thin - 1
                samples[k] = _state(sampler)
                kept_steps[k] = sampler.steps
            bar.update(done - start)
            if manager is not None and (done % every == 0 or done == n_steps):
                save()
    return ChainResult(
        samples=samples,
        kept_steps=kept_steps,
        energies=energies,
        acceptance_rate=accepted.mean(axis=0) if lead else float(accepted.mean()),
        n_nonfinite=nonfinite.sum(axis=0) if lead else int(nonfinite.sum()),
        steps=n_steps,
        trace=None if trace_fn is None else trace,
        noise_chi2=noise_chi2,
    )
