"""Bayesian amplification, calibration (coverage, MAD), JSD and the JSD closure.

Definitions follow S. Bieringer et al., "Calibrating Bayesian generative machine learning for
Bayesiamplification", arXiv:2408.00838, as written down in DESIGN.md ("Statistical
definitions"). Inputs are normalised histogram values ĥ_j(G^(i)) with shape (s, B) for one
network or (K, s, B) for K independent networks (draws i = 1..s, bins j = 1..B). Results for
(s, B) input drop the network axis. numpy/scipy only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import rel_entr

__all__ = [
    "REFERENCE_LEVELS",
    "AmplificationResult",
    "BootstrapResult",
    "ClosureResult",
    "CoverageResult",
    "EquivalentSampleSize",
    "amplification",
    "bootstrap_amplification",
    "bootstrap_coverage",
    "closure",
    "coverage",
    "critical_level",
    "equivalent_sample_size",
    "expected_jsd",
    "jsd",
]

REFERENCE_LEVELS = (2.0 * np.arange(50) + 1.0) / 99.0
"""Default credible levels: the reference code's 50 levels c = q_hi - q_lo with
q = linspace(0, 1, 100), i.e. odd multiples of 1/99 from 1/99 to 1."""


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _as_ksb(values: np.ndarray, name: str = "values") -> tuple[np.ndarray, bool]:
    """(s, B) or (K, s, B) -> (K, s, B) float64 and whether the K axis was added."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2:
        arr, squeeze = arr[None], True
    elif arr.ndim == 3:
        squeeze = False
    else:
        msg = f"`{name}` must have shape (s, B) or (K, s, B), got {np.shape(values)}"
        raise ValueError(msg)
    if arr.shape[1] < 2:
        msg = f"`{name}` needs at least 2 draws (axis -2), got shape {arr.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(arr)):
        msg = f"`{name}` contains NaN or inf (unfilled draws?)"
        raise ValueError(msg)
    return arr, squeeze


def _sq(x: np.ndarray, squeeze: bool) -> Any:
    """Drop the leading network axis; 0-d results become Python floats."""
    if not squeeze:
        return x
    x = x[0]
    return float(x) if np.ndim(x) == 0 else x


def _jsonable(obj: Any) -> Any:
    """Arrays -> lists, NaN/inf -> None, numpy scalars -> Python scalars (recursively)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ------------------------------------------------------------------------------------------------
# amplification
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AmplificationResult:
    """Bayesian amplification estimate n' (arXiv:2408.00838, Eq. for n'_j).

    Shapes are for (K, s, B) input; for (s, B) input the K axis is dropped (totals are floats).

    Attributes:
        total: (K,) n' = Σ_j mean_j · n'_j over unmasked bins; the corrected estimate when
            ``n_generated`` was given, else equal to ``total_raw``.
        total_raw: (K,) the same without the finite-sample correction.
        per_bin: (K, B) n'_j used for ``total``; NaN where masked.
        per_bin_raw: (K, B) n'_j without correction; NaN where masked.
        mean: (K, B) mean_j over draws.
        std: (K, B) std_j over draws (with ``ddof``).
        masked: (K, B) bins with std_j = 0 (all draws equal), excluded from the totals.
        floored: (K, B) bins whose corrected variance hit the floor (all False if uncorrected).
        n_masked: (K,) number of masked bins.
        n_floored: (K,) number of floored bins.
        form: "poisson" or "binomial".
        n_generated: events per draw g used for the correction, or None.
        n_draws: s.
        corrected: whether ``total``/``per_bin`` are the corrected values.
    """

    total: Any
    total_raw: Any
    per_bin: np.ndarray
    per_bin_raw: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    masked: np.ndarray
    floored: np.ndarray
    n_masked: Any
    n_floored: Any
    form: str
    n_generated: float | None
    n_draws: int
    corrected: bool

    def factor(self, n_train: float) -> Any:
        """Amplification factor n'/n for a training sample of ``n_train`` events."""
        return np.asarray(self.total) / n_train if np.ndim(self.total) else self.total / n_train

    def to_dict(self, *, per_bin: bool = True) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None); ``per_bin=False`` drops the (K, B) arrays."""
        d = asdict(self)
        if not per_bin:
            for key in ("per_bin", "per_bin_raw", "mean", "std", "masked", "floored"):
                d.pop(key)
        return _jsonable(d)


_REL_STD_ZERO = 1e-12
"""Relative std below which a bin counts as having zero spread (masked)."""


def _amplification_ksb(
    arr: np.ndarray,
    n_generated: float | None,
    form: str,
    ddof: int,
    floor_frac: float,
) -> dict[str, np.ndarray]:
    mean = arr.mean(axis=1)
    var = arr.var(axis=1, ddof=ddof)
    return _amplification_from_moments(mean, var, n_generated, form, floor_frac)


def _amplification_from_moments(
    mean: np.ndarray,
    var: np.ndarray,
    n_generated: float | None,
    form: str,
    floor_frac: float,
) -> dict[str, np.ndarray]:
    num = mean if form == "poisson" else mean * (1.0 - mean)
    # std_j = 0 up to round-off (identical draws give var ~ (eps mean)^2, not exactly 0)
    masked = ~(var > (_REL_STD_ZERO * mean) ** 2)
    safe_var = np.where(masked, 1.0, var)
    per_bin_raw = np.where(masked, np.nan, num / safe_var)
    total_raw = np.where(masked, 0.0, mean * per_bin_raw).sum(axis=-1)
    if n_generated is None:
        per_bin, total = per_bin_raw, total_raw
        floored = np.zeros_like(masked)
    else:
        var_c = safe_var - num / n_generated
        floor = floor_frac * safe_var
        floored = (var_c < floor) & ~masked
        var_c = np.maximum(var_c, floor)
        per_bin = np.where(masked, np.nan, num / var_c)
        total = np.where(masked, 0.0, mean * per_bin).sum(axis=-1)
    return {
        "total": total,
        "total_raw": total_raw,
        "per_bin": per_bin,
        "per_bin_raw": per_bin_raw,
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "masked": masked,
        "floored": floored,
    }


def _check_amp_args(n_generated: float | None, form: str, floor_frac: float) -> None:
    if form not in ("poisson", "binomial"):
        msg = f"`form` must be 'poisson' or 'binomial', got {form!r}"
        raise ValueError(msg)
    if n_generated is not None and not n_generated > 0:
        msg = f"`n_generated` must be > 0 events per draw, got {n_generated}"
        raise ValueError(msg)
    if not 0 < floor_frac < 1:
        msg = f"`floor_frac` must be in (0, 1), got {floor_frac}"
        raise ValueError(msg)


def amplification(
    values: np.ndarray,
    n_generated: float | None = None,
    *,
    form: Literal["poisson", "binomial"] = "poisson",
    ddof: int = 1,
    floor_frac: float = 1e-3,
) -> AmplificationResult:
    """Bayesian amplification estimate from the spread of histogram values across draws.

    arXiv:2408.00838: a truth sample of size n' has bin fractions with mean p_j and variance
    p_j(1 - p_j)/n' ≈ p_j/n'. Matching it to the posterior spread gives per bin
    ``n'_j = mean_j / std_j²`` (form "poisson", the reference's figures) or
    ``n'_j = mean_j (1 - mean_j) / std_j²`` (form "binomial", exact for multinomial samples;
    the Poisson form is high by 1/(1 - p_j)). The total is ``n' = Σ_j mean_j n'_j``
    (= Σ_j mean_j²/std_j² for the Poisson form).

    Finite generated samples (g events per draw) add multinomial noise to std_j²; with
    ``n_generated`` the noise ``mean_j/g`` (Poisson form) or ``mean_j(1 - mean_j)/g`` (binomial
    form; the same numerator as n'_j) is subtracted, floored at ``floor_frac · std_j²`` (so a
    corrected n'_j is at most n'_j,raw / floor_frac); floored bins are flagged.

    Bins with std_j = 0 (all draws identical, e.g. empty bins; numerically std_j <= 1e-12
    mean_j) are masked: NaN per bin,
    excluded from the totals, counted in ``n_masked``.

    Note: with s draws 1/std² is biased high by about (s - 1)/(s - 3) (Gaussian theory,
    +4% at s = 50); no correction is applied, as in the reference.

    Args:
        values: (s, B) or (K, s, B) normalised bin fractions per draw.
        n_generated: events per draw g, or None for no correction.
        form: "poisson" or "binomial".
        ddof: delta degrees of freedom of std_j (1 per DESIGN.md; the reference code used 0).
        floor_frac: floor of the corrected variance relative to the raw one.

    Returns:
        An :class:`AmplificationResult`.
    """
    _check_amp_args(n_generated, form, floor_frac)
    arr, squeeze = _as_ksb(values)
    r = _amplification_ksb(arr, n_generated, form, ddof, floor_frac)
    return AmplificationResult(
        total=_sq(r["total"], squeeze),
        total_raw=_sq(r["total_raw"], squeeze),
        per_bin=_sq(r["per_bin"], squeeze),
        per_bin_raw=_sq(r["per_bin_raw"], squeeze),
        mean=_sq(r["mean"], squeeze),
        std=_sq(r["std"], squeeze),
        masked=_sq(r["masked"], squeeze),
        floored=_sq(r["floored"], squeeze),
        n_masked=_sq(r["masked"].sum(axis=-1), squeeze),
        n_floored=_sq(r["floored"].sum(axis=-1), squeeze),
        form=form,
        n_generated=None if n_generated is None else float(n_generated),
        n_draws=arr.shape[1],
        corrected=n_generated is not None,
    )


# ------------------------------------------------------------------------------------------------
# coverage
# ------------------------------------------------------------------------------------------------
def _c_star(
    a: np.ndarray, b: np.ndarray, x_lo: np.ndarray, x_hi: np.ndarray, t: np.ndarray, n: float
) -> np.ndarray:
    """c* from a = #draws < t, b = #draws <= t, the nearest draws below/above t, n draws.

    Exact for np.quantile's default ("linear") interpolation Q(h), h = q (n - 1) in
    order-statistic units: {h: Q(h) <= t} = [0, h_last] and {h: Q(h) >= t} = [h_first, n - 1],
    so truth ∈ [Q((1-c)/2), Q((1+c)/2)] iff c >= max(1 - 2 h_last/(n-1), 2 h_first/(n-1) - 1).
    """
    tie = b > a  # some draws equal the truth: Q(h) = t on [a, b - 1]
    inside = (b > 0) & (a < n)  # not strictly below / above all draws
    interp = inside & ~tie
    gap = np.where(interp, x_hi - x_lo, 1.0)
    h_int = (a - 1.0) + np.where(interp, (t - np.where(interp, x_lo, 0.0)) / gap, 0.0)
    h_first = np.where(tie, a, h_int)
    h_last = np.where(tie, b - 1.0, h_int)
    c_star = np.maximum(1.0 - 2.0 * h_last / (n - 1.0), 2.0 * h_first / (n - 1.0) - 1.0)
    return np.where(inside, c_star, np.inf)


def _critical_ksb(arr: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Smallest central level containing the truth, (K, B); inf if never contained."""
    t = truth[None, None, :]
    lt = arr < t
    le = arr <= t
    a = lt.sum(axis=1, dtype=np.float64)
    b = le.sum(axis=1, dtype=np.float64)
    x_lo = np.where(lt, arr, -np.inf).max(axis=1)
    x_hi = np.where(le, np.inf, arr).min(axis=1)
    return _c_star(a, b, x_lo, x_hi, truth[None, :], float(arr.shape[1]))


class _Resampler:
    """c* of one network for draws resampled with multiplicities w (s,), precomputed parts."""

    def __init__(self, arr: np.ndarray, truth: np.ndarray) -> None:
        t = truth[None, None, :]
        self.lt = (arr < t).astype(np.float64)
        self.le = (arr <= t).astype(np.float64)
        self.x_lo = np.where(arr < t, arr, -np.inf)
        self.x_hi = np.where(arr <= t, np.inf, arr)
        self.truth = truth

    def critical(self, net: int, w: np.ndarray) -> np.ndarray:
        present = (w > 0)[:, None]
        a = w @ self.lt[net]
        b = w @ self.le[net]
        x_lo = np.max(self.x_lo[net], axis=0, where=present, initial=-np.inf)
        x_hi = np.min(self.x_hi[net], axis=0, where=present, initial=np.inf)
        return _c_star(a, b, x_lo, x_hi, self.truth, float(w.sum()))


def critical_level(values: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Smallest credible level c* whose central interval contains the truth, per (k, j).

    The central interval at level c is [Q((1-c)/2), Q((1+c)/2)] with Q the empirical quantile
    function of the s draws (``np.quantile``'s linear interpolation), so
    ``truth_j ∈ I_{j,k}(c)  ⟺  c >= c*_{k,j}`` (arXiv:2408.00838 credible sets). c* = inf where
    the truth lies outside the range of the draws (never covered). Costs O(K s B), no sort.

    Args:
        values: (s, B) or (K, s, B) draws.
        truth: (B,) true bin values.

    Returns:
        (B,) or (K, B) array of c* in [0, 1] or inf.
    """
    arr, squeeze = _as_ksb(values)
    t = _check_truth(truth, arr.shape[-1])
    return _sq(_critical_ksb(arr, t), squeeze)


def _check_truth(truth: np.ndarray, n_bins: int) -> np.ndarray:
    t = np.asarray(truth, dtype=np.float64)
    if t.shape != (n_bins,):
        msg = f"`truth` must have shape ({n_bins},) to match the bins of `values`, got {t.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(t)):
        msg = "`truth` must be finite"
        raise ValueError(msg)
    return t


def _check_levels(levels: np.ndarray | None) -> np.ndarray:
    lev = REFERENCE_LEVELS if levels is None else np.asarray(levels, dtype=np.float64).ravel()
    if lev.size == 0 or np.any((lev < 0) | (lev > 1)):
        msg = "`levels` must be non-empty and within [0, 1]"
        raise ValueError(msg)
    return lev


def _check_grid(grid_shape: tuple[int, int] | None, n_bins: int) -> None:
    if grid_shape is not None and (len(grid_shape) != 2 or math.prod(grid_shape) != n_bins):
        msg = f"`grid_shape` must be (n0, n1) with n0 * n1 = B = {n_bins}, got {grid_shape}"
        raise ValueError(msg)


@dataclass(frozen=True)
class CoverageResult:
    """Empirical coverage of central credible sets (arXiv:2408.00838, calibration curves).

    Attributes:
        levels: (L,) nominal levels c.
        empirical: (L,) c̄(c), mean over bins and networks of 1[truth_j ∈ I_{j,k}(c)].
        mad: mean_c |c̄(c) - c|.
        per_network: (K, L) c̄(c) per network ((L,) for (s, B) input).
        per_bin: (B, L) coverage per bin, averaged over networks.
        critical: (K, B) smallest level containing the truth (inf: never); (B,) for (s, B) input.
        mad_axis: (MAD_0, MAD_1) for a grid (ring: MAD_r, MAD_phi): coverage averaged over the
            other axis first, then mean |c̄ - c| over rows and levels; None without a grid.
        profile: (n0,) signed deviation per row of axis 0, mean over levels of (c̄_row(c) - c);
            None without a grid. Negative: over-confident (too narrow).
        grid_shape: the grid, or None.
    """

    levels: np.ndarray
    empirical: np.ndarray
    mad: float
    per_network: np.ndarray
    per_bin: np.ndarray
    critical: np.ndarray
    mad_axis: tuple[float, float] | None
    profile: np.ndarray | None
    grid_shape: tuple[int, int] | None

    def to_dict(self, *, per_bin: bool = False) -> dict[str, Any]:
        """JSON-ready dict (inf/NaN -> None); the (B, ·) arrays only with ``per_bin=True``."""
        d = asdict(self)
        if not per_bin:
            d.pop("per_bin")
            d.pop("critical")
        return _jsonable(d)


def _empirical(c_star: np.ndarray, lev: np.ndarray) -> np.ndarray:
    """c̄(c) = fraction of c* <= c, (L,)."""
    return np.searchsorted(np.sort(c_star, axis=None), lev, side="right") / c_star.size


def _coverage_from_critical(
    c_star: np.ndarray, lev: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """c* (K, B) -> per-network (K, L), per-bin (B, L), overall (L,)."""
    k, n_bins = c_star.shape
    srt = np.sort(c_star, axis=1)
    per_network = np.stack([np.searchsorted(srt[i], lev, side="right") for i in range(k)]) / n_bins
    per_bin = (c_star[:, :, None] <= lev[None, None, :]).mean(axis=0)
    return per_network, per_bin, per_network.mean(axis=0)


def coverage(
    values: np.ndarray,
    truth: np.ndarray,
    levels: np.ndarray | None = None,
    *,
    grid_shape: tuple[int, int] | None = None,
) -> CoverageResult:
    """Calibration curve c̄(c) of the central credible sets, MAD, and per-axis MADs on a grid.

    Credible set I_{j,k}(c): the interval between the (1-c)/2 and (1+c)/2 empirical quantiles
    (linear interpolation, as ``np.quantile``) of the s draws of network k in bin j; closed
    interval. c̄(c) is the fraction of (k, j) with truth_j inside (arXiv:2408.00838).
    c̄ < c: over-confident. Note that even perfectly calibrated draws give
    E[c̄(c)] ≈ c (s - 1)/(s + 1) with s draws (the truth is a new exchangeable point), so
    MAD has a floor of about 1/(s + 1) (0.02 at s = 50).

    Computed via :func:`critical_level` (no sort of the draws): K=5, s=50, B=40,000 takes well
    under a second.

    Args:
        values: (s, B) or (K, s, B) normalised bin values per draw.
        truth: (B,) true bin probabilities (1/B for quantile bins, or truth-sample fractions).
        levels: nominal levels c in [0, 1]; default :data:`REFERENCE_LEVELS`.
        grid_shape: (n0, n1) if the B bins are a flattened C-order product grid (ring:
            (n_r, n_phi)); enables ``mad_axis`` and ``profile``.

    Returns:
        A :class:`CoverageResult`.
    """
    arr, squeeze = _as_ksb(values)
    n_bins = arr.shape[-1]
    t = _check_truth(truth, n_bins)
    lev = _check_levels(levels)
    _check_grid(grid_shape, n_bins)
    c_star = _critical_ksb(arr, t)
    per_network, per_bin, emp = _coverage_from_critical(c_star, lev)
    mad = float(np.mean(np.abs(emp - lev)))
    mad_axis = profile = None
    if grid_shape is not None:
        g = per_bin.reshape(*grid_shape, lev.size)
        rows = g.mean(axis=1)  # (n0, L): averaged over axis 1
        cols = g.mean(axis=0)  # (n1, L)
        mad_axis = (float(np.mean(np.abs(rows - lev))), float(np.mean(np.abs(cols - lev))))
        profile = (rows - lev).mean(axis=1)
        grid_shape = (int(grid_shape[0]), int(grid_shape[1]))
    return CoverageResult(
        levels=lev,
        empirical=emp,
        mad=mad,
        per_network=_sq(per_network, squeeze),
        per_bin=per_bin,
        critical=_sq(c_star, squeeze),
        mad_axis=mad_axis,
        profile=profile,
        grid_shape=grid_shape,
    )


# ------------------------------------------------------------------------------------------------
# JSD and closure
# ------------------------------------------------------------------------------------------------
def jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray | float:
    """Jensen-Shannon divergence along the last axis, natural log (nats), 0·log 0 = 0.

    JSD(p, q) = ½ Σ p log(2p/(p+q)) + ½ Σ q log(2q/(p+q)); symmetric, in [0, ln 2] for
    normalised p, q (arXiv:2408.00838 closure test). Inputs broadcast.

    Args:
        p: (..., B) non-negative, normalised.
        q: (..., B) non-negative, normalised.

    Returns:
        JSD with the last axis reduced (a float for 1D inputs).
    """
    p_arr = np.asarray(p, dtype=np.float64)
    q_arr = np.asarray(q, dtype=np.float64)
    if np.any(p_arr < 0) or np.any(q_arr < 0):
        msg = "`p` and `q` must be non-negative"
        raise ValueError(msg)
    m = 0.5 * (p_arr + q_arr)
    out = 0.5 * (rel_entr(p_arr, m).sum(axis=-1) + rel_entr(q_arr, m).sum(axis=-1))
    out = np.maximum(out, 0.0)  # round-off
    return float(out) if np.ndim(out) == 0 else out


def _normalised(truth: np.ndarray) -> np.ndarray:
    t = np.asarray(truth, dtype=np.float64)
    if t.ndim != 1 or np.any(t < 0) or not t.sum() > 0 or not np.all(np.isfinite(t)):
        msg = "`truth` must be a (B,) non-negative, finite vector with positive sum"
        raise ValueError(msg)
    return t / t.sum()


def expected_jsd(
    n: float | np.ndarray,
    truth: np.ndarray,
    *,
    n_mc: int = 100,
    seed: int = 0,
) -> np.ndarray | float:
    """Monte-Carlo expectation of JSD(multinomial(n, truth)/n, truth).

    For many events per bin this approaches (B - 1)/(8 n) nats. Every size uses the same seed
    (common random numbers), which keeps the curve smooth in n.

    Args:
        n: sample size(s), scalar or array (rounded to integers >= 1).
        truth: (B,) bin probabilities (normalised internally).
        n_mc: Monte-Carlo samples per size.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        E[JSD] in nats, same shape as ``n``.
    """
    p = _normalised(truth)
    sizes = np.asarray(n, dtype=np.float64)
    if np.any(~(sizes >= 1)):
        msg = f"`n` must be >= 1, got {n}"
        raise ValueError(msg)
    if n_mc < 1:
        msg = f"`n_mc` must be >= 1, got {n_mc}"
        raise ValueError(msg)
    chunk = max(1, (1 << 22) // p.size)  # bound memory to ~32 MB of counts
    out = np.empty(sizes.size)
    for idx, size in enumerate(np.rint(sizes).astype(np.int64).ravel()):
        rng = np.random.default_rng(seed)
        acc = 0.0
        for start in range(0, n_mc, chunk):
            m = min(chunk, n_mc - start)
            acc += float(np.sum(jsd(rng.multinomial(size, p, size=m) / size, p)))
        out[idx] = acc / n_mc
    return float(out[0]) if sizes.ndim == 0 else out.reshape(sizes.shape)


@dataclass(frozen=True)
class EquivalentSampleSize:
    """Size n_eq of a truth sample whose expected JSD to the truth equals a given JSD.

    Attributes:
        n_eq: n_eq per input JSD value (float for scalar input).
        below_grid: JSD above E[JSD] at the smallest size: n_eq is an upper bound (clipped).
        above_grid: JSD below E[JSD] at the largest size: n_eq is a lower bound (clipped).
        sizes: (M,) grid of sizes used.
        expected: (M,) E[JSD] on the grid (made non-increasing).
    """

    n_eq: Any
    below_grid: Any
    above_grid: Any
    sizes: np.ndarray
    expected: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return _jsonable(asdict(self))


def equivalent_sample_size(
    jsd_value: float | np.ndarray,
    truth: np.ndarray,
    *,
    sizes: np.ndarray | None = None,
    n_mc: int = 100,
    seed: int = 0,
) -> EquivalentSampleSize:
    """Invert E[JSD](n) (Monte Carlo, :func:`expected_jsd`) by log-log interpolation.

    arXiv:2408.00838 closure: n_eq such that a truth sample of n_eq events is, on average, as
    close (in JSD) to the truth as the given histogram. With many events per bin
    n_eq ≈ (B - 1)/(8 JSD).

    Args:
        jsd_value: JSD value(s) in nats, scalar or array.
        truth: (B,) bin probabilities.
        sizes: grid of sizes; default a log grid (8 points per decade) from 1/1000 to 30 times
            the range of the analytic guess (B - 1)/(8 JSD).
        n_mc: Monte-Carlo samples per size.
        seed: seed for :func:`expected_jsd`.

    Returns:
        An :class:`EquivalentSampleSize`; out-of-grid values are clipped to the grid ends and
        flagged.
    """
    p = _normalised(truth)
    vals = np.asarray(jsd_value, dtype=np.float64)
    if np.any(~(vals >= 0)):
        msg = "`jsd_value` must be >= 0"
        raise ValueError(msg)
    if sizes is None:
        b_eff = max(int(np.count_nonzero(p)), 2)
        guess = (b_eff - 1) / (8.0 * np.clip(vals, 1e-300, None))
        lo = max(1.0, float(guess.min()) / 1000.0)
        hi = max(lo * 10.0, float(guess.max()) * 30.0)
        hi = min(hi, 1e15)
        num = max(int(np.ceil(8 * np.log10(hi / lo))) + 1, 2)
        grid = np.unique(np.rint(np.geomspace(lo, hi, num)))
    else:
        grid = np.unique(np.rint(np.asarray(sizes, dtype=np.float64)))
        if grid.size < 2 or grid[0] < 1:
            msg = "`sizes` needs at least two distinct sizes >= 1"
            raise ValueError(msg)
    exp = np.asarray(expected_jsd(grid, p, n_mc=n_mc, seed=seed))
    exp = np.minimum.accumulate(exp)  # E[JSD] decreases with n; remove MC wiggles
    below = vals > exp[0]
    above = vals < exp[-1]
    with np.errstate(divide="ignore"):
        log_v = np.log(np.clip(vals, exp[-1], exp[0]))
    # np.interp needs increasing x: reverse the (decreasing) log E[JSD]
    n_eq = np.exp(np.interp(log_v, np.log(exp[::-1]), np.log(grid[::-1])))
    n_eq = np.where(below, grid[0], np.where(above, grid[-1], n_eq))
    scalar = vals.ndim == 0
    return EquivalentSampleSize(
        n_eq=float(n_eq) if scalar else n_eq,
        below_grid=bool(below) if scalar else below,
        above_grid=bool(above) if scalar else above,
        sizes=grid,
        expected=exp,
    )


@dataclass(frozen=True)
class ClosureResult:
    """JSD closure, "true" amplification (arXiv:2408.00838).

    Attributes:
        jsd: (K,) JSD(mean_i ĥ(G^(i)), truth) per network (float for (s, B) input).
        n_eq: (K,) equivalent truth-sample size.
        amplification: (K,) n_eq / n_train.
        below_grid: (K,) n_eq clipped at the smallest size (upper bound).
        above_grid: (K,) n_eq clipped at the largest size (lower bound).
        n_train: training-sample size n.
    """

    jsd: Any
    n_eq: Any
    amplification: Any
    below_grid: Any
    above_grid: Any
    n_train: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return _jsonable(asdict(self))


def closure(
    values: np.ndarray,
    truth: np.ndarray,
    n_train: float,
    *,
    sizes: np.ndarray | None = None,
    n_mc: int = 100,
    seed: int = 0,
) -> ClosureResult:
    """JSD of the posterior-mean histogram to the truth, its n_eq and n_eq / n_train.

    Args:
        values: (s, B) or (K, s, B) normalised bin values per draw.
        truth: (B,) true bin probabilities.
        n_train: training-sample size n.
        sizes, n_mc, seed: see :func:`equivalent_sample_size`.

    Returns:
        A :class:`ClosureResult`.
    """
    arr, squeeze = _as_ksb(values)
    p = _normalised(_check_truth(truth, arr.shape[-1]))
    if not n_train > 0:
        msg = f"`n_train` must be > 0, got {n_train}"
        raise ValueError(msg)
    j = np.asarray(jsd(arr.mean(axis=1), p))
    eq = equivalent_sample_size(j, p, sizes=sizes, n_mc=n_mc, seed=seed)
    n_eq = np.asarray(eq.n_eq)
    return ClosureResult(
        jsd=_sq(j, squeeze),
        n_eq=_sq(n_eq, squeeze),
        amplification=_sq(n_eq / n_train, squeeze),
        below_grid=_sq(np.asarray(eq.below_grid), squeeze),
        above_grid=_sq(np.asarray(eq.above_grid), squeeze),
        n_train=float(n_train),
    )


# ------------------------------------------------------------------------------------------------
# bootstrap
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap over networks and draws (both resampled with replacement).

    Attributes:
        estimate: the statistic on the original values.
        std: bootstrap standard deviation.
        low: lower percentile (100 (1 - ci)/2).
        high: upper percentile (100 (1 + ci)/2).
        replicas: (n_boot, ...) the bootstrap replicas.
        ci: central probability of [low, high].
        levels: (L,) levels for coverage bootstraps, else None.
        mad: for coverage bootstraps, a BootstrapResult of the MAD; else None.
    """

    estimate: Any
    std: Any
    low: Any
    high: Any
    replicas: np.ndarray
    ci: float
    levels: np.ndarray | None = None
    mad: BootstrapResult | None = None

    def to_dict(self, *, replicas: bool = False) -> dict[str, Any]:
        """JSON-ready dict; the replicas only with ``replicas=True``."""
        d = asdict(self)
        if not replicas:
            d.pop("replicas")
            if d["mad"] is not None:
                d["mad"].pop("replicas")
        return _jsonable(d)


def _summarise(estimate: Any, reps: np.ndarray, ci: float, **extra: Any) -> BootstrapResult:
    lo, hi = np.percentile(reps, [50.0 * (1 - ci), 50.0 * (1 + ci)], axis=0)
    std = reps.std(axis=0, ddof=1)
    scalar = reps.ndim == 1
    conv = float if scalar else np.asarray
    return BootstrapResult(conv(estimate), conv(std), conv(lo), conv(hi), reps, ci, **extra)


def _check_boot(n_boot: int, ci: float) -> None:
    if n_boot < 2:
        msg = f"`n_boot` must be >= 2, got {n_boot}"
        raise ValueError(msg)
    if not 0 < ci < 1:
        msg = f"`ci` must be in (0, 1), got {ci}"
        raise ValueError(msg)


def _resample(rng: np.random.Generator, k: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Network indices (K,) and per-network draw multiplicities (K, s)."""
    nets = rng.integers(k, size=k)
    draws = rng.integers(s, size=(k, s))
    w = np.zeros((k, s))
    np.add.at(w, (np.repeat(np.arange(k), s), draws.ravel()), 1.0)
    return nets, w


def bootstrap_amplification(
    values: np.ndarray,
    n_generated: float | None = None,
    n_boot: int = 200,
    seed: int = 0,
    *,
    form: Literal["poisson", "binomial"] = "poisson",
    ddof: int = 1,
    floor_frac: float = 1e-3,
    ci: float = 0.68,
) -> BootstrapResult:
    """Bootstrap band of the network-averaged amplification total n' (see :func:`amplification`).

    Each replica resamples K networks with replacement and, per chosen network, s draws with
    replacement, then averages the per-network totals (corrected if ``n_generated``).

    Args:
        values: (s, B) or (K, s, B).
        n_generated: events per draw for the correction, or None.
        n_boot: number of replicas.
        seed: seed of ``numpy.random.default_rng``.
        form, ddof, floor_frac: as :func:`amplification`.
        ci: central probability of the percentile band.

    Returns:
        A :class:`BootstrapResult` with scalar estimate/std/low/high.
    """
    _check_amp_args(n_generated, form, floor_frac)
    _check_boot(n_boot, ci)
    arr, _ = _as_ksb(values)
    k, s, _ = arr.shape
    sq = arr * arr
    est = _amplification_ksb(arr, n_generated, form, ddof, floor_frac)["total"].mean()
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for r in range(n_boot):
        nets, w = _resample(rng, k, s)
        # weighted moments of the resampled draws (no copy of the (K, s, B) values)
        m1 = np.stack([w[j] @ arr[n] for j, n in enumerate(nets)]) / s
        m2 = np.stack([w[j] @ sq[n] for j, n in enumerate(nets)]) / s
        var = np.maximum(m2 - m1 * m1, 0.0) * (s / (s - ddof))
        out = _amplification_from_moments(m1, var, n_generated, form, floor_frac)
        reps[r] = out["total"].mean()
    return _summarise(est, reps, ci)


def bootstrap_coverage(
    values: np.ndarray,
    truth: np.ndarray,
    levels: np.ndarray | None = None,
    *,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.68,
) -> BootstrapResult:
    """Bootstrap band of the calibration curve c̄(c) and of the MAD (see :func:`coverage`).

    Each replica resamples K networks and, per chosen network, s draws with replacement.

    Args:
        values: (s, B) or (K, s, B).
        truth: (B,) true bin values.
        levels: nominal levels; default :data:`REFERENCE_LEVELS`.
        n_boot: number of replicas.
        seed: seed of ``numpy.random.default_rng``.
        ci: central probability of the percentile band.

    Returns:
        A :class:`BootstrapResult` for c̄(c) ((L,) arrays, ``levels`` set) whose ``mad`` field
        is the :class:`BootstrapResult` of the MAD.
    """
    _check_boot(n_boot, ci)
    arr, _ = _as_ksb(values)
    k, s, n_bins = arr.shape
    t = _check_truth(truth, n_bins)
    lev = _check_levels(levels)
    emp = _empirical(_critical_ksb(arr, t), lev)
    parts = _Resampler(arr, t)
    rng = np.random.default_rng(seed)
    reps = np.empty((n_boot, lev.size))
    for r in range(n_boot):
        nets, w = _resample(rng, k, s)
        c_star = np.stack([parts.critical(int(n), w[j]) for j, n in enumerate(nets)])
        reps[r] = _empirical(c_star, lev)
    mads = np.abs(reps - lev).mean(axis=1)
    mad = _summarise(float(np.mean(np.abs(emp - lev))), mads, ci)
    return _summarise(emp, reps, ci, levels=lev, mad=mad)
