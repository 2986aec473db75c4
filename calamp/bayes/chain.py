"""The SG-MCMC schedule: burn-in, a measured thinning, s kept states and their diagnostics.

One function, :func:`draw_posterior`, runs a sampler of :mod:`calamp.bayes.samplers` in two
checkpointed stages:

1. burn-in (``burn_in`` steps; AdamMCMC freezes its moments at its end, so the rest of the
   chain is an exact Metropolis–Hastings chain for fixed moments);
2. ``draws · thin`` steps keeping every ``thin``-th state. ``thin = 0`` measures it: twice the
   largest integrated autocorrelation time τ of four random projections of θ over the second
   half of the burn-in (so kept states are ≈ independent), capped at ``max_thin``.

The kept states' ESS and split-R̂ (of the θ projections, and of the energy at the same
cadence) are returned with a warning when ESS < s/2 or R̂ > 1.05. The energy U is evaluated on
a different minibatch at every step, so its series mixes batch noise in: the θ projections are
the diagnostic that matters.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from calamp.bayes.diagnostics import chain_summary, integrated_autocorrelation_time, warning_for
from calamp.bayes.flat import get_flat
from calamp.bayes.samplers import SGHMC, SGLD, AdamMCMC, run_chain

__all__ = ["PosteriorDraws", "draw_posterior"]


@dataclass(frozen=True)
class PosteriorDraws:
    """Kept states of one chain and how they were obtained.

    Attributes:
        samples: (draws, P) float32 kept states θ.
        info: JSON-ready facts: steps, burn_in, thin, thin_measured, tau_burn_in_steps,
            acceptance rates, n_nonfinite, ess_theta_min, rhat_theta_max, ess_energy, warning.
        trace: (draws, 4) θ projections of the kept states.
    """

    samples: np.ndarray
    info: dict[str, Any]
    trace: np.ndarray


def draw_posterior(
    sampler: AdamMCMC | SGLD | SGHMC,
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
) -> PosteriorDraws:
    """Run the schedule of the module docstring and return the kept states.

    Args:
        sampler: the sampler (its variables hold the starting state, e.g. pre-trained weights).
        batch_fn: ``batch_fn(step)`` -> batch tuple for ``sampler.step`` (pure in ``step``).
        draws: s kept states.
        burn_in: steps before the first kept state.
        thin: steps between kept states (0: measured; needs ``burn_in >= 8``).
        max_thin: cap of the measured thinning.
        total_steps: if > 0, the total steps including burn-in (the draws are the last s
            states kept every ``(total_steps - burn_in) // draws`` steps), overriding ``thin``.
        seed: seed of the random projections of θ.
        progress: tqdm progress bars.
        checkpoint_dir: resume directory (stages in ``burn_in/`` and ``draws/``).
    """
    if total_steps > 0:
        thin = max(1, (total_steps - burn_in) // draws)
    if thin == 0 and burn_in < 8:
        msg = f"a measured thinning needs `burn_in` >= 8, got {burn_in}"
        raise ValueError(msg)
    variables = sampler.model_variables
    p = sampler.num_params
    proj = np.random.default_rng(seed).standard_normal((4, p)) / np.sqrt(p)

    def trace() -> np.ndarray:
        return proj @ get_flat(variables).astype(np.float64)

    def stage(name: str) -> str | None:
        return None if checkpoint_dir is None else os.path.join(os.fspath(checkpoint_dir), name)

    tau = acc_burn = None
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
        acc_burn = burn.acceptance_rate
        half = burn.trace[burn_in // 2 :]
        taus = integrated_autocorrelation_time(half) if len(half) >= 4 else np.array([np.nan])
        if np.isfinite(taus).any():  # all NaN: the chain did not move (diagnostics warn)
            tau = float(np.nanmax(taus))
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
    kept = res.trace[skip + thin - 1 :: thin][-draws:]
    if draws >= 4:
        theta = chain_summary(kept)
        energy = chain_summary(res.energies[skip::thin][:draws])
    else:  # too few states for an autocorrelation estimate
        theta = energy = {"stuck": False, "ess_min": None, "rhat_max": None}
    info = {
        "steps": burn_in + n_steps,
        "burn_in": burn_in,
        "thin": thin,
        "thin_measured": measured,
        "tau_burn_in_steps": tau,
        "acceptance_rate": res.acceptance_rate,
        "acceptance_rate_burn_in": acc_burn,
        "n_nonfinite": res.n_nonfinite,
        "ess_theta_min": theta["ess_min"],
        "rhat_theta_max": theta["rhat_max"],
        "ess_energy": energy["ess_min"],
        "warning": warning_for(theta, draws),
    }
    return PosteriorDraws(res.samples[-draws:], info, kept)
