"""Calibration: central credible sets over posterior draws, their empirical coverage and MAD.

Reference: S. Bieringer et al., arXiv:2408.00838 (calibration curves, MAD, MAD_r, MAD_φ).
Two effects that are not weight uncertainty are removed before the credible sets are formed
(DESIGN.md, "Bias of the ideal case"):

* generation noise: with g_i events per draw each draw holds multinomial noise of variance
  N_j = mean_i ĥ_ij(1 - ĥ_ij)/(g_i - 1) (unbiased, see :mod:`calamp.stats.amplification`).
  The truth gets the same noise added (fixed seed), so for a calibrated posterior it is again
  exchangeable with the draws. This randomisation is exact at any noise level — estimating the
  weight spread per bin from S_j² - N_j and shrinking the draws would not be at small s — but
  where the noise dominates, the curve says little: ``noise_dominated`` counts those bins
  (S_j² <= N_j) and the summary shows it;
* a finite truth sample of N events: the truth t_j scatters by t(1 - t)/N around the true
  probability, so each draw gets the same scatter, mean_j(1 - mean_j)/N, added with a fixed
  seed; the truth is then exchangeable with the draws of a calibrated posterior.

A calibrated posterior still gives E[c̄(c)] ≈ c (s - 1)/(s + 1) with s draws and a scatter
from K·B finite credible sets: :func:`mad_floor` simulates both, and ``state`` calls a curve
calibrated when its MAD is below the floor's 99 % quantile. numpy only.

Size (~500 lines): one estimator with its floor and its bootstrap errors; they share the
critical levels c*_kj and the noise removal, so splitting them would export those internals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from calamp.stats.arrays import (
    as_ksb,
    check_generated,
    check_n_truth,
    check_truth,
    jsonable,
    squeeze_k,
)

__all__ = [
    "REFERENCE_LEVELS",
    "BootstrapResult",
    "CoverageResult",
    "bootstrap_coverage",
    "coverage",
    "critical_level",
    "denoise_draws",
    "mad_floor",
]

REFERENCE_LEVELS = (2.0 * np.arange(50) + 1.0) / 99.0
"""Default credible levels: the reference code's 50 levels c = q_hi - q_lo with
q = linspace(0, 1, 100), i.e. odd multiples of 1/99 from 1/99 to 1."""


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
    """Smallest central level containing the truth, (K, B); inf if never contained.

    ``truth`` is (B,) or (K, B) (one truth per network after :func:`denoise_draws`).
    """
    tk = np.broadcast_to(truth, (arr.shape[0], arr.shape[2]))
    t = tk[:, None, :]
    lt = arr < t
    le = arr <= t
    a = lt.sum(axis=1, dtype=np.float64)
    b = le.sum(axis=1, dtype=np.float64)
    x_lo = np.where(lt, arr, -np.inf).max(axis=1)
    x_hi = np.where(le, np.inf, arr).min(axis=1)
    return _c_star(a, b, x_lo, x_hi, tk, float(arr.shape[1]))


class _Resampler:
    """c* of one network for draws resampled with multiplicities w (s,), precomputed parts."""

    def __init__(self, arr: np.ndarray, truth: np.ndarray) -> None:
        self.truth = np.broadcast_to(truth, (arr.shape[0], arr.shape[2]))
        t = self.truth[:, None, :]
        self.lt = (arr < t).astype(np.float64)
        self.le = (arr <= t).astype(np.float64)
        self.x_lo = np.where(arr < t, arr, -np.inf)
        self.x_hi = np.where(arr <= t, np.inf, arr)

    def critical(self, net: int, w: np.ndarray) -> np.ndarray:
        present = (w > 0)[:, None]
        a = w @ self.lt[net]
        b = w @ self.le[net]
        x_lo = np.max(self.x_lo[net], axis=0, where=present, initial=-np.inf)
        x_hi = np.min(self.x_hi[net], axis=0, where=present, initial=np.inf)
        return _c_star(a, b, x_lo, x_hi, self.truth[net], float(w.sum()))


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
    arr, squeeze = as_ksb(values)
    t = check_truth(truth, arr.shape[-1])
    return squeeze_k(_critical_ksb(arr, t), squeeze)


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
        mad_floor: MAD of a calibrated posterior with the same s and K·B: ``mean``, ``q95``
            and ``limit`` (see :func:`mad_floor`).
        state: "calibrated" (MAD <= floor ``limit``), "over-confident" (c̄ < c on average) or
            "under-confident".
        noise_dominated: share of (k, j) whose spread is all generation noise (N_j >= S_j²).
        per_network: (K, L) c̄(c) per network ((L,) for (s, B) input).
        per_bin: (B, L) coverage per bin, averaged over networks.
        critical: (K, B) smallest level containing the truth (inf: never); (B,) for (s, B).
        mad_axis: (MAD_0, MAD_1) for a grid (ring: MAD_r, MAD_phi): coverage averaged over the
            other axis first, then mean |c̄ - c| over rows and levels; None without a grid.
        profile: (n0,) signed deviation per row of axis 0, mean over levels of (c̄_row(c) - c);
            None without a grid. Negative: over-confident (too narrow).
        grid_shape: the grid, or None.
    """

    levels: np.ndarray
    empirical: np.ndarray
    mad: float
    mad_floor: dict[str, float]
    state: str
    noise_dominated: float
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
        return jsonable(d)


def denoise_draws(
    values: np.ndarray,
    truth: np.ndarray,
    n_generated: Any = None,
    n_truth: float | None = None,
    *,
    seed: int = 0,
    noise: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws and truth made exchangeable for a calibrated posterior (module docstring).

    Generation noise: the truth gets the draws' multinomial noise N_j (per network) added;
    finite truth: the draws get the truth's scatter mean_j(1 - mean_j)/N added. Both with
    Gaussian noise from ``seed``, so the result is reproducible.

    Args:
        values: (K, s, B) per-draw fractions.
        truth: (B,) truth fractions.
        n_generated: events per draw g (scalar, (s,) or (K, s)), or None (noise-free).
        n_truth: size N of the truth sample, or None for an exact truth.
        seed: seed of the added noise.
        noise: (K, B) generation-noise variance of one draw, in place of the multinomial
            formula (draws with common random numbers: the split-batch estimate of
            :func:`calamp.stats.amplification`); ``n_generated`` is then not used.

    Returns:
        (K, s, B) draws, (K, B) truth per network, and the (K, B) mask of bins whose spread is
        all generation noise (S_j² <= N_j: no weight uncertainty is resolved there).
    """
    arr = np.asarray(values, np.float64)
    k, s, n_bins = arr.shape
    g = check_generated(n_generated, k, s)
    n_t = check_n_truth(n_truth)
    t = np.broadcast_to(np.asarray(truth, np.float64), (k, n_bins)).copy()
    dominated = np.zeros((k, n_bins), bool)
    rng = np.random.default_rng(seed)
    if noise is not None:
        noise = np.clip(np.broadcast_to(np.asarray(noise, np.float64), (k, n_bins)), 0.0, None)
    elif g is not None:
        noise = (arr * (1.0 - arr) / (g[:, :, None] - 1.0)).mean(axis=1)
    if noise is not None:
        dominated = ~(arr.var(axis=1, ddof=1) > noise)
        t = t + np.sqrt(noise) * rng.standard_normal(t.shape)
    if n_t is not None:
        mean = arr.mean(axis=1, keepdims=True)
        scale = np.sqrt(np.clip(mean * (1.0 - mean), 0.0, None) / n_t)
        arr = arr + scale * rng.standard_normal(arr.shape)
    return arr, t, dominated


_N_POOL = 20_000
"""Simulated groups of K calibrated credible sets behind :func:`mad_floor`."""


@lru_cache(maxsize=64)
def _group_pool(s: int, k: int, rho: float, lev: tuple[float, ...]) -> np.ndarray:
    """Coverage indicators averaged over the K networks of one bin, (n_pool, L).

    Per bin the truth's standardised offset from network k's centre is
    √ρ·δ + √(1-ρ)·η_k (δ shared by the networks: a finite truth sample), the s draws are
    standard normal around the centre: a calibrated posterior.
    """
    rng = np.random.default_rng([s, k, int(round(1000 * rho))])
    lev_arr = np.asarray(lev)
    out = np.empty((_N_POOL, lev_arr.size))
    step = max(1, 200_000 // (k * (s + 1)))
    for a in range(0, _N_POOL, step):
        m = min(step, _N_POOL - a)
        draws = rng.standard_normal((k, s, m))
        truth = np.sqrt(rho) * rng.standard_normal((1, m)) + np.sqrt(1 - rho) * (
            rng.standard_normal((k, m))
        )
        c_star = _critical_ksb(draws, truth)  # (k, m)
        out[a : a + m] = (c_star[:, :, None] <= lev_arr).mean(axis=0)
    return out


def mad_floor(
    s: int,
    n_bins: int,
    levels: np.ndarray | None = None,
    *,
    n_networks: int = 1,
    rho: float = 0.0,
    n_rep: int = 2_000,
) -> dict[str, float]:
    """MAD of a calibrated posterior: s draws, K networks, B bins (simulated).

    The K networks of a bin share one truth: with a finite truth sample their coverage
    indicators are correlated by ``rho`` = Var(truth)/(Var(truth) + Var(network)). c̄(c) is the
    mean over B independent bins of simulated K-network groups (resampled from a pool of
    20,000 groups; for B > 2,000 its Gaussian limit), so the floor holds the (s - 1)/(s + 1)
    bias of finitely many draws and the scatter of finitely many bins and networks.

    Returns:
        ``{"mean": E[MAD], "q95", "q99", "q999": quantiles, "limit": q99 + 3 pool errors}``;
        ``limit`` is what ``state`` uses (1 % false alarms for a calibrated posterior).
    """
    lev = _check_levels(levels)
    rho = float(np.clip(round(rho, 2), 0.0, 1.0))
    pool = _group_pool(int(s), int(n_networks), rho, tuple(lev.tolist()))
    rng = np.random.default_rng([int(s), int(n_bins), int(n_networks), int(100 * rho)])
    if n_bins <= 2_000:
        idx = rng.integers(0, _N_POOL, size=(n_rep, int(n_bins)))
        emp = pool[idx].mean(axis=1)
    else:
        mu, cov = pool.mean(axis=0), np.cov(pool, rowvar=False) / n_bins
        emp = rng.multivariate_normal(mu, cov, size=n_rep, method="eigh")
    mads = np.abs(emp - lev).mean(axis=1)
    q95, q99, q999 = (float(v) for v in np.quantile(mads, [0.95, 0.99, 0.999]))
    allowance = 3.0 * float(pool.std(axis=0).mean()) / float(np.sqrt(_N_POOL))
    return {
        "mean": float(mads.mean()),
        "q95": q95,
        "q99": q99,
        "q999": q999,
        "limit": q99 + allowance,
    }


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


def _truth_share(arr: np.ndarray, n_truth: float | None) -> float:
    """Share of the truth-vs-draws variance that the networks share (a finite truth), from
    the median over bins of (mean(1-mean)/N) / (that + the draws' variance)."""
    n_t = check_n_truth(n_truth)
    if n_t is None:
        return 0.0
    mean = arr.mean(axis=1)
    tvar = mean * (1.0 - mean) / n_t
    # arr already holds the truth scatter added by denoise_draws: its variance is both parts
    total = arr.var(axis=1, ddof=1)
    ok = total > 0
    return float(np.median(np.clip(tvar[ok] / total[ok], 0, 1))) if ok.any() else 0.0


def coverage(
    values: np.ndarray,
    truth: np.ndarray,
    levels: np.ndarray | None = None,
    *,
    grid_shape: tuple[int, int] | None = None,
    n_generated: Any = None,
    n_truth: float | None = None,
    seed: int = 0,
    noise: np.ndarray | None = None,
) -> CoverageResult:
    """Calibration curve c̄(c) of the central credible sets, MAD, and per-axis MADs on a grid.

    Credible set I_{j,k}(c): the interval between the (1-c)/2 and (1+c)/2 empirical quantiles
    (linear interpolation, as ``np.quantile``) of the s draws of network k in bin j; closed
    interval. c̄(c) is the fraction of (k, j) with truth_j inside (arXiv:2408.00838).
    c̄ < c: over-confident. Generation noise and a finite truth are handled by
    :func:`denoise_draws` first; the MAD is judged against :func:`mad_floor`.

    Args:
        values: (s, B) or (K, s, B) normalised bin values per draw.
        truth: (B,) true bin probabilities (1/B for quantile bins, or truth-sample fractions).
        levels: nominal levels c in [0, 1]; default :data:`REFERENCE_LEVELS`.
        grid_shape: (n0, n1) if the B bins are a flattened C-order product grid (ring:
            (n_r, n_phi)); enables ``mad_axis`` and ``profile``.
        n_generated: events per draw g (None: noise-free fractions).
        n_truth: size of the truth sample (None: exact truth).
        seed: seed of the finite-truth scatter.
        noise: (K, B) per-draw noise variance in place of the multinomial one
            (:func:`denoise_draws`).

    Returns:
        A :class:`CoverageResult`.
    """
    arr, squeeze = as_ksb(values)
    n_bins = arr.shape[-1]
    t = check_truth(truth, n_bins)
    lev = _check_levels(levels)
    _check_grid(grid_shape, n_bins)
    arr, tk, dominated = denoise_draws(arr, t, n_generated, n_truth, seed=seed, noise=noise)
    c_star = _critical_ksb(arr, tk)
    per_network, per_bin, emp = _coverage_from_critical(c_star, lev)
    mad = float(np.mean(np.abs(emp - lev)))
    floor = mad_floor(
        arr.shape[1], n_bins, lev, n_networks=arr.shape[0], rho=_truth_share(arr, n_truth)
    )
    if mad <= floor["limit"]:
        state = "calibrated"
    else:
        state = "over-confident" if float(np.mean(emp - lev)) < 0 else "under-confident"
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
        mad_floor=floor,
        state=state,
        noise_dominated=float(dominated.mean()),
        per_network=squeeze_k(per_network, squeeze),
        per_bin=per_bin,
        critical=squeeze_k(c_star, squeeze),
        mad_axis=mad_axis,
        profile=profile,
        grid_shape=grid_shape,
    )


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
        return jsonable(d)


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


def bootstrap_coverage(
    values: np.ndarray,
    truth: np.ndarray,
    levels: np.ndarray | None = None,
    *,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.68,
    n_generated: Any = None,
    n_truth: float | None = None,
    noise_seed: int = 0,
    noise: np.ndarray | None = None,
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
        n_generated, n_truth, noise_seed, noise: as ``n_generated``, ``n_truth``, ``seed``,
            ``noise`` of :func:`coverage` (the same draws are bootstrapped).

    Returns:
        A :class:`BootstrapResult` for c̄(c) ((L,) arrays, ``levels`` set) whose ``mad`` field
        is the :class:`BootstrapResult` of the MAD.
    """
    _check_boot(n_boot, ci)
    arr, _ = as_ksb(values)
    k, s, n_bins = arr.shape
    t = check_truth(truth, n_bins)
    lev = _check_levels(levels)
    arr, tk, _ = denoise_draws(arr, t, n_generated, n_truth, seed=noise_seed, noise=noise)
    emp = _empirical(_critical_ksb(arr, tk), lev)
    parts = _Resampler(arr, tk)
    rng = np.random.default_rng(seed)
    reps = np.empty((n_boot, lev.size))
    for r in range(n_boot):
        nets, w = _resample(rng, k, s)
        c_star = np.stack([parts.critical(int(n), w[j]) for j, n in enumerate(nets)])
        reps[r] = _empirical(c_star, lev)
    mads = np.abs(reps - lev).mean(axis=1)
    mad = _summarise(float(np.mean(np.abs(emp - lev))), mads, ci)
    return _summarise(emp, reps, ci, levels=lev, mad=mad)
