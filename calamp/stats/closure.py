"""Jensen-Shannon divergence and the JSD closure test ("true" amplification n_eq).

Reference: S. Bieringer et al., arXiv:2408.00838 (closure: the size n_eq of a truth sample that
is as close to the truth, in JSD, as the posterior-mean histogram). numpy/scipy only.

* E[JSD](n) of a multinomial sample of n events against its own probabilities p is computed
  without Monte Carlo: JSD is a sum over bins, so its expectation is a sum of expectations over
  the binomial marginals x_j ~ Bin(n, p_j), evaluated exactly (a sum over the support) where
  n p_j (1 - p_j) < 1000 and otherwise by the moment expansion
  E = Σ_j [μ2/(8p) - μ3/(16p²) + 7μ4/(192p³) - 3μ5/(128p⁴) + 31μ6/(1920p⁵)] with the binomial
  central moments μk of x_j/n (relative error below 1e-9 there). The leading term is the
  familiar (B - 1)/(8n).
* Precisions (inverse sizes) add: the posterior mean of s draws, each with the spread S_j², sits
  S_j²/s further from the network's mean, and a truth sample of N events adds 1/N. With n_J the
  size whose E[JSD] equals the observed JSD, the network's own precision is
  P_eq = 1/n_J - 1/N - P_draws/s, P_draws = Σ_j S_j²/t_j / Σ_j (1 - t_j); n_eq = 1/P_eq
  (a lower bound where P_eq is not significantly above 0). The mean JSD of K networks has
  relative error √(2/ν_eff) for a calibrated posterior, ν_eff = K(B - 1)/(1 + (K - 1)ρ²):
  the truth sample's deviation (share ρ = (1/N)/P_total of the precision) is common to all K
  networks and does not average down (ν_eff = K(B - 1) for an exact truth); the error is
  taken at the larger of the observed and the predicted total precision.
* Networks are combined by their mean JSD (equivalently the mean precision), the same mean the
  amplification estimate uses, and the verdict compares the two precisions with their errors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import rel_entr
from scipy.stats import binom, chi2, norm

from calamp.stats.amplification import AmplificationResult, invert_precision
from calamp.stats.arrays import as_ksb, check_n_truth, check_truth, jsonable, squeeze_k

__all__ = [
    "ClosureResult",
    "EquivalentSampleSize",
    "closure",
    "equivalent_sample_size",
    "expected_jsd",
    "jsd",
    "verdict",
]

_SERIES_NPQ = 1000.0
"""n p (1 - p) above which E[JSD] per bin uses the moment expansion."""
Z_VERDICT = 3.0
"""Significance (standard errors) of a closure failure."""
RATIO_OK = (0.7, 1.4)
"""n'/n_eq inside this range closes whatever the significance (the studies' goal)."""


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
    t = t / t.sum()
    if np.count_nonzero(t) < 2:
        msg = "the JSD closure needs at least two populated truth bins (a constant observable?)"
        raise ValueError(msg)
    return t


def _series(n: float, p: np.ndarray) -> np.ndarray:
    """Moment expansion of E[f(x/n)] per bin, x ~ Bin(n, p) (see the module docstring)."""
    q = 1.0 - p
    pq = p * q
    m2 = pq / n
    m3 = pq * (q - p) / n**2
    m4 = 3 * pq**2 / n**2 + pq * (1 - 6 * pq) / n**3
    m5 = 10 * pq**2 * (q - p) / n**3
    m6 = 15 * pq**3 / n**3
    return (
        m2 / (8 * p)
        - m3 / (16 * p**2)
        + 7 * m4 / (192 * p**3)
        - 3 * m5 / (128 * p**4)
        + 31 * m6 / (1920 * p**5)
    )


def _exact(n: int, p: np.ndarray) -> np.ndarray:
    """E[f(x/n)] per bin by summing over the binomial support (±12 σ plus 6 events)."""
    sd = np.sqrt(n * p * (1 - p))
    lo = np.maximum(np.floor(n * p - 12 * sd - 6), 0).astype(np.int64)
    hi = np.minimum(np.ceil(n * p + 12 * sd + 6), n).astype(np.int64)
    width = int((hi - lo).max()) + 1
    x = lo[:, None] + np.arange(width)[None, :]
    valid = x <= hi[:, None]
    x = np.where(valid, x, hi[:, None])
    pmf = np.where(valid, binom.pmf(x, n, p[:, None]), 0.0)
    a = x / n
    m = 0.5 * (a + p[:, None])
    f = 0.5 * (rel_entr(a, m) + rel_entr(p[:, None], m))
    return (pmf * f).sum(axis=1)


def _expected_sizes(sizes: np.ndarray, p: np.ndarray) -> np.ndarray:
    """E[JSD] for integer sizes (M,) and normalised p (B,), grouped by unique p."""
    nz = p[p > 0]
    uniq, counts = np.unique(nz, return_counts=True)
    out = np.empty(sizes.size)
    for idx, n in enumerate(sizes.astype(np.int64)):
        big = n * uniq * (1 - uniq) >= _SERIES_NPQ
        val = np.zeros(uniq.size)
        if big.any():
            val[big] = _series(float(n), uniq[big])
        if (~big).any():
            val[~big] = _exact(int(n), uniq[~big])
        out[idx] = float(counts @ val)
    return out


def expected_jsd(n: float | np.ndarray, truth: np.ndarray) -> np.ndarray | float:
    """E[JSD(multinomial(n, p)/n, p)] in nats, exact (no Monte Carlo; module docstring).

    Non-integer n are interpolated between the neighbouring integers in 1/n.

    Args:
        n: sample size(s) >= 1, scalar or array.
        truth: (B,) bin probabilities p (normalised internally).

    Returns:
        E[JSD], same shape as ``n``.
    """
    p = _normalised(truth)
    sizes = np.asarray(n, dtype=np.float64)
    if np.any(~(sizes >= 1)):
        msg = f"`n` must be >= 1, got {n}"
        raise ValueError(msg)
    flat = sizes.ravel()
    lo, hi = np.floor(flat), np.ceil(flat)
    grid = np.unique(np.concatenate([lo, hi]))
    val = _expected_sizes(grid, p)
    e_lo = val[np.searchsorted(grid, lo)]
    e_hi = val[np.searchsorted(grid, hi)]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(hi > lo, (1 / lo - 1 / flat) / (1 / lo - 1 / hi), 0.0)
    out = e_lo + frac * (e_hi - e_lo)
    return float(out[0]) if sizes.ndim == 0 else out.reshape(sizes.shape)


@dataclass(frozen=True)
class EquivalentSampleSize:
    """Size n_J of a truth sample whose expected JSD to the truth equals a given JSD.

    Attributes:
        n_eq: n_J per input value (float for scalar input); inf where the JSD is 0.
        below_grid: JSD above E[JSD](1): n_J < 1, reported as 1 (an upper bound).
        above_grid: JSD below E[JSD] on the whole grid (up to 300 times the leading-order
            guess, at most 1e13): n_J is a lower bound (inf for a JSD of 0).
    """

    n_eq: Any
    below_grid: Any
    above_grid: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return jsonable(asdict(self))


_MAX_SIZE = 1e13


def equivalent_sample_size(
    jsd_value: float | np.ndarray, truth: np.ndarray
) -> EquivalentSampleSize:
    """Invert the exact E[JSD](n) (:func:`expected_jsd`) by log-log interpolation on a grid of
    24 sizes per decade around the leading-order guess n ≈ (B - 1)/(8 JSD).

    Args:
        jsd_value: JSD value(s) in nats (>= 0), scalar or array.
        truth: (B,) bin probabilities.

    Returns:
        An :class:`EquivalentSampleSize`.
    """
    p = _normalised(truth)
    vals = np.asarray(jsd_value, dtype=np.float64)
    if np.any(~(vals >= 0)):
        msg = "`jsd_value` must be >= 0"
        raise ValueError(msg)
    b1 = np.count_nonzero(p) - 1
    pos = vals[vals > 0]
    if pos.size:
        guess = b1 / (8.0 * pos)
        lo = max(1.0, float(guess.min()) / 300.0)
        hi = min(_MAX_SIZE, max(lo * 10.0, float(guess.max()) * 300.0))
    else:
        lo, hi = 1.0, 10.0
    num = max(int(np.ceil(24 * np.log10(hi / lo))) + 1, 2)
    grid = np.unique(np.rint(np.geomspace(lo, hi, num)))
    grid = np.unique(np.concatenate([[1.0], grid]))
    exp = np.minimum.accumulate(_expected_sizes(grid, p))
    below = vals > exp[0]
    above = vals < exp[-1]
    with np.errstate(divide="ignore"):
        log_v = np.log(np.clip(vals, exp[-1], exp[0]))
    n_eq = np.exp(np.interp(log_v, np.log(exp[::-1]), np.log(grid[::-1])))
    n_eq = np.where(below, 1.0, np.where(vals == 0, np.inf, n_eq))
    scalar = vals.ndim == 0
    return EquivalentSampleSize(
        n_eq=float(n_eq) if scalar else n_eq,
        below_grid=bool(below) if scalar else below,
        above_grid=bool(above) if scalar else above,
    )


def verdict(
    p_amp: float,
    err_amp: float,
    p_eq: float,
    *,
    p_known: float,
    dof: float,
    amp_bound: bool,
    eq_bound: bool,
) -> tuple[str, float]:
    """Closure verdict: is the posterior mean as far from the truth as n' says?

    Under calibration the total precision seen by the JSD, P_obs = 1/n_eq + ``p_known``
    (``p_known``: the truth sample's 1/N and the finite draws' share), scatters around
    P_pred = 1/n' + ``p_known`` like a χ² of ``dof`` degrees of freedom over ``dof``. With
    R = P_obs/P_pred, z is the normal score of the χ² probability P(χ²_dof <= dof·R), divided
    by √(1 + (σ_n'/P_pred)²/(2/dof)) for the error σ_n' of 1/n' (exact in the χ² part, so the
    skewed tails of few degrees of freedom are not over-read). "n' too high (over-confident)"
    when z > ``Z_VERDICT`` and n'/n_eq is above ``RATIO_OK`` (or n' unbounded); "n' too low
    (under-confident)" the other way round; "inconclusive" when either side is only a bound
    and the two are compatible; "closes" otherwise.

    Returns:
        (verdict, z).
    """
    pred = max(p_amp, 0.0) + p_known
    obs = max(p_eq, 0.0) + p_known
    if not (pred > 0 and obs > 0):
        z = 0.0
    else:
        nu = max(dof, 1)
        # exact χ² tail of R = obs/pred as a normal score, then scaled by the share of the
        # variance that is the χ²'s own (the rest is the error of n')
        z_chi = float(norm.ppf(np.clip(chi2.cdf(nu * obs / pred, nu), 1e-300, 1 - 1e-16)))
        z = z_chi / float(np.sqrt(1.0 + (err_amp / pred) ** 2 / (2.0 / nu)))
    ratio = p_eq / p_amp if p_amp > 0 else np.inf  # = n'/n_eq
    if z > Z_VERDICT and not ratio <= RATIO_OK[1]:
        return "n' too high (over-confident)", z
    if z < -Z_VERDICT and not ratio >= RATIO_OK[0]:
        return "n' too low (under-confident)", z
    if amp_bound or eq_bound:
        return "inconclusive", z
    return "closes", z


@dataclass(frozen=True)
class ClosureResult:
    """JSD closure ("true" amplification) per network and combined (arXiv:2408.00838).

    Attributes:
        jsd: (K,) JSD(mean_i ĥ(G^(i)), truth) per network (float for (s, B) input).
        n_eq: (K,) n_eq per network (bias-corrected; the lower bound where ``is_bound``).
        n_eq_low, n_eq_high: (K,) 68 % interval of n_eq (inf: open).
        is_bound: (K,) n_eq only bounded from below.
        amplification: (K,) n_eq / n_train.
        precision, precision_err: (K,) 1/n_eq estimate and its error.
        combined: over networks (mean JSD): ``jsd``, ``n_eq``, ``n_eq_low``, ``n_eq_high``,
            ``is_bound``, ``precision``, ``precision_err``, and, when the amplification was
            given, ``n_prime``, ``ratio`` (n'/n_eq), ``z`` and ``verdict``.
        n_train: training-sample size n.
        n_truth: truth-sample size N (None: exact).
    """

    jsd: Any
    n_eq: Any
    n_eq_low: Any
    n_eq_high: Any
    is_bound: Any
    amplification: Any
    precision: Any
    precision_err: Any
    combined: dict[str, Any]
    n_train: float
    n_truth: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return jsonable(asdict(self))


def precision_of_jsd(jsd_value: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1/n_J: the inverse size of a truth sample with expected JSD equal to ``jsd_value``."""
    ess = equivalent_sample_size(jsd_value, truth)
    return 1.0 / np.asarray(ess.n_eq, np.float64)


def closure(
    values: np.ndarray,
    truth: np.ndarray,
    n_train: float,
    *,
    n_truth: float | None = None,
    amplification: AmplificationResult | None = None,
    shared_noise: np.ndarray | None = None,
) -> ClosureResult:
    """JSD of the posterior-mean histogram to the truth, n_eq, n_eq/n and the verdict.

    Args:
        values: (s, B) or (K, s, B) normalised bin values per draw (generation noise included:
            it enters through S_j²/s, see the module docstring).
        truth: (B,) truth bin probabilities (fractions of a truth sample of ``n_truth``).
        n_train: training-sample size n.
        n_truth: truth-sample size N (None: exact).
        amplification: the :func:`calamp.stats.amplification` result of the same values, for
            the verdict.
        shared_noise: (K, B) or (B,) variance of the posterior mean that the spread of the
            draws does not show (the noise offset of draws with common random numbers); it
            is subtracted like the draws' own S_j²/s. None: independent draws.

    Returns:
        A :class:`ClosureResult`.
    """
    arr, squeeze = as_ksb(values)
    k, s, n_bins = arr.shape
    p = _normalised(check_truth(truth, n_bins))
    n_t = check_n_truth(n_truth)
    if not n_train > 0:
        msg = f"`n_train` must be > 0, got {n_train}"
        raise ValueError(msg)
    mask = p > 0
    w = np.where(mask, 1.0 / np.where(mask, p, 1.0), 0.0) / float(np.sum((1.0 - p)[mask]))
    p_draws = (arr.var(axis=1, ddof=1) @ w) / s  # (K,) extra precision of the mean of s draws
    if shared_noise is not None:
        p_draws = p_draws + np.broadcast_to(np.asarray(shared_noise, np.float64), (k, n_bins)) @ w
    dof = np.count_nonzero(p) - 1
    j = np.atleast_1d(np.asarray(jsd(arr.mean(axis=1), p)))
    truth_prec = 0.0 if n_t is None else 1.0 / n_t
    j_mean = float(j.mean())
    # one E[JSD] grid for the K networks and their mean
    both = precision_of_jsd(np.append(j, j_mean), p)
    prec_j, prec_jm = both[:-1], float(both[-1])
    prec = prec_j - truth_prec - p_draws
    err = prec_j * np.sqrt(2.0 / dof)
    inv = invert_precision(prec, err)
    c_prec = prec_jm - truth_prec - float(p_draws.mean())
    # relative error √(2/ν) of a χ²_ν JSD, taken at the larger of the observed total precision
    # and the one the amplification predicts (a JSD that fluctuated low must not look precise)
    ref = prec_jm
    if amplification is not None and amplification.combined["precision"] > 0:
        ref = max(ref, amplification.combined["precision"] + truth_prec + float(p_draws.mean()))
    # ν_eff: the truth's deviation is common to the K networks (module docstring)
    rho = truth_prec / ref if ref > 0 else 0.0
    nu_eff = k * dof / (1.0 + (k - 1) * rho * rho)
    c_err = ref * np.sqrt(2.0 / nu_eff)
    inv_c = invert_precision(np.array(c_prec), np.array(c_err))
    combined: dict[str, Any] = {
        "jsd": j_mean,
        "n_eq": float(inv_c["n_prime"]),
        "n_eq_low": float(inv_c["low"]),
        "n_eq_high": float(inv_c["high"]),
        "is_bound": bool(inv_c["is_bound"]),
        "precision": c_prec,
        "precision_err": float(c_err),
    }
    if amplification is not None:
        amp = amplification.combined
        v, z = verdict(
            amp["precision"],
            amp["precision_err"],
            c_prec,
            p_known=truth_prec + float(p_draws.mean()),
            dof=nu_eff,
            amp_bound=amp["is_bound"],
            eq_bound=combined["is_bound"],
        )
        combined.update(
            {
                "n_prime": amp["n_prime"],
                "ratio": c_prec / amp["precision"] if amp["precision"] > 0 else np.inf,
                "z": z,
                "verdict": v,
            }
        )
    return ClosureResult(
        jsd=squeeze_k(j, squeeze),
        n_eq=squeeze_k(inv["n_prime"], squeeze),
        n_eq_low=squeeze_k(inv["low"], squeeze),
        n_eq_high=squeeze_k(inv["high"], squeeze),
        is_bound=squeeze_k(inv["is_bound"], squeeze),
        amplification=squeeze_k(inv["n_prime"] / n_train, squeeze),
        precision=squeeze_k(prec, squeeze),
        precision_err=squeeze_k(err, squeeze),
        combined=combined,
        n_train=float(n_train),
        n_truth=n_t,
    )
