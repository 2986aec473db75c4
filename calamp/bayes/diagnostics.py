"""Mixing diagnostics of SG-MCMC chains: effective sample size, autocorrelation time, split-R̂.

Thin wrappers around TensorFlow Probability's ``tfp.mcmc.effective_sample_size`` (Geyer's
initial positive sequence, ``filter_beyond_positive_pairs=True``) and
``tfp.mcmc.potential_scale_reduction`` (split-R̂, Gelman et al. 2013; rank normalisation is
not applied), on numpy arrays in chain order. Constant series (zero variance) get NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calamp._tf import tf, tfp

__all__ = [
    "ESS_WARN_FRACTION",
    "RHAT_WARN",
    "chain_summary",
    "effective_sample_size",
    "integrated_autocorrelation_time",
    "split_rhat",
    "warning_for",
]

ESS_WARN_FRACTION = 0.5
"""Warn when the effective sample size of the kept draws is below this fraction of s."""
RHAT_WARN = 1.05
"""Warn when split-R̂ exceeds this."""


def _prepare(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(x, np.float64)
    if arr.ndim < 1 or arr.shape[0] < 4:
        msg = f"a chain needs at least 4 states along axis 0, got shape {arr.shape}"
        raise ValueError(msg)
    const = ~(arr.std(axis=0) > 1e-12 * np.maximum(np.abs(arr).max(axis=0), 1e-300))
    return arr, const


def _quiet(fn, *args, **kwargs) -> np.ndarray:
    """Call a TFP diagnostic without its FFT's complex-to-real cast warning in the log."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        return fn(*args, **kwargs).numpy()
    finally:
        logger.setLevel(level)


def effective_sample_size(x: np.ndarray, *, chains: int = 1) -> np.ndarray:
    """ESS of each component of a chain x (n, ...) (or ``chains`` chains stacked along axis 1
    when x is (n, C, ...)); NaN for constant components."""
    arr, const = _prepare(x)
    if chains > 1:
        ess = _quiet(
            tfp.mcmc.effective_sample_size,
            tf.constant(arr),
            filter_beyond_positive_pairs=True,
            cross_chain_dims=1,
        )
        const = const.all(axis=0)
    else:
        ess = _quiet(
            tfp.mcmc.effective_sample_size, tf.constant(arr), filter_beyond_positive_pairs=True
        )
    # Geyer's estimate is positive for a valid autocovariance; a non-positive value (a very
    # short or numerically constant series) carries no information
    return np.where(const | ~(ess > 0), np.nan, ess)


def integrated_autocorrelation_time(x: np.ndarray) -> np.ndarray:
    """τ_int = n / ESS per component (in units of the chain's spacing), NaN if constant."""
    arr = np.asarray(x)
    return arr.shape[0] / effective_sample_size(arr)


def split_rhat(x: np.ndarray, *, chains: int = 1) -> np.ndarray:
    """Split-R̂ of each component: x is (n, ...) for one chain or (n, C, ...) for ``chains``
    = C chains (every chain is split in two halves). NaN for constant components."""
    arr, const = _prepare(x)
    if chains > 1:
        const = const.all(axis=0)
    else:
        arr = arr[:, None]
    rhat = tfp.mcmc.potential_scale_reduction(
        tf.constant(arr), independent_chain_ndims=1, split_chains=True
    ).numpy()
    return np.where(const, np.nan, rhat)


def _nan_stat(fn, v: np.ndarray) -> float | None:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    return float(fn(v)) if v.size else None


def chain_summary(x: np.ndarray, *, chains: int = 1) -> dict[str, Any]:
    """ESS (min, median), τ_int (max) and split-R̂ (max) over the components of x: (n, ...) for
    one chain, or (n, C, ...) for ``chains`` = C chains (ESS over all C·n states, R̂ between
    and within the split chains)."""
    x = np.asarray(x, np.float64)
    if chains > 1:
        arr = x.reshape(x.shape[0], chains, -1)
        ess = effective_sample_size(arr, chains=chains)
        rhat = split_rhat(arr, chains=chains)
        total = arr.shape[0] * chains
    else:
        arr = x.reshape(len(x), -1)
        ess = effective_sample_size(arr)
        rhat = split_rhat(arr)
        total = arr.shape[0]
    return {
        "n": int(total),
        "stuck": bool(np.all(np.isnan(ess))),
        "ess_min": _nan_stat(np.min, ess),
        "ess_median": _nan_stat(np.median, ess),
        "tau_max": _nan_stat(np.max, total / ess),
        "rhat_max": _nan_stat(np.max, rhat),
    }


def warning_for(summary: dict[str, Any], n_draws: int) -> str | None:
    """The warning line for a chain summary, or None when the draws look independent."""
    if summary.get("stuck"):
        return (
            "draws are correlated; n' is overestimated (the chain did not move: all kept "
            "states are equal)"
        )
    ess, rhat = summary.get("ess_min"), summary.get("rhat_max")
    bad_ess = ess is not None and ess < ESS_WARN_FRACTION * n_draws
    bad_rhat = rhat is not None and rhat > RHAT_WARN
    if not (bad_ess or bad_rhat):
        return None
    parts = []
    if bad_ess:
        parts.append(f"ESS {ess:.3g} of {n_draws} draws")
    if bad_rhat:
        parts.append(f"split-R-hat {rhat:.3g}")
    return "draws are correlated; n' is overestimated (" + ", ".join(parts) + ")"
