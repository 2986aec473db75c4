"""Bayesian amplification n' from the spread of histogram values over posterior draws.

Reference: S. Bieringer et al., arXiv:2408.00838 (the estimate n'_j = mean_j²/std_j² per bin);
the corrections that make it unbiased at every number of bins B, draws s and generated events g
are derived below (DESIGN.md, "Bias of the ideal case"). numpy only.

Notation for one network: draws i = 1..s, bins j = 1..B, ĥ_ij the fraction of the g_i events of
draw i in bin j, b_ij the bin probability of draw i's weights, t_j the truth.

* A truth sample of n' events has bin fractions with variance p_j(1 - p_j)/n' (binomial; the
  paper's Poisson form p_j/n' is high by 1/(1 - p_j), +33 % at B = 4).
* Generation adds multinomial noise: Var_i ĥ_ij = Var_i b_ij + E_i[b_ij(1 - b_ij)]/g_i. Since
  E[ĥ(1 - ĥ) | b] = b(1 - b)(1 - 1/g), the noise is estimated without bias by
  N_j = mean_i ĥ_ij(1 - ĥ_ij)/(g_i - 1), so V_j = S_j² - N_j is an unbiased estimate of the
  weight variance Var_i b_ij (S_j² the sample variance, ddof = 1). V_j may be negative.
* Headline: the precision P = Σ_j V_j / t_j / Σ_j (1 - t_j) is an unbiased estimate of the mean
  inverse size Σ_j w_j / n'_j with w_j = (1 - t_j)/Σ(1 - t) — the combination that the JSD
  closure measures (E[JSD] ≈ Σ_j (1 - p_j)/(8 n'_j)) — and n' = 1/P. A ratio 1/S² of one bin
  has no finite mean once noise is subtracted (E[1/S²] = (s - 1)/((s - 3) σ²) without noise);
  averaging precisions first and inverting once leaves only the second-order bias of 1/P, which
  is removed with the jackknife variance σ_P²: n' = (1 - σ_P²/P²)/P. Where P < 2 σ_P the data
  only bound n' from below, n' ≥ 1/(P + 2 σ_P): reported as a bound, never as an estimate.
* Per bin (figures): n'_j = (s - 3)/(s - 1) · mean_j(1 - mean_j)/V_j, the (s - 3)/(s - 1)
  factor being the exact correction of E[1/S²] for Gaussian, noise-free draws.
* The paper's total Σ_j mean_j²/S_j² (Poisson form, no corrections) is kept as
  ``n_prime_paper`` for comparison with arXiv:2408.00838.
* Common random numbers (``batches``): when every draw of a network maps the same latent
  noise, the remaining noise is not multinomial (only events near a bin edge change bin
  between draws), but whatever it is, its share of the sample variance scales as 1/g. With the
  events of each draw cut into m batches of g_b events (the same latent noise for batch b of
  every draw), E[S_b²] = Var b + c/g_b and E[S²] = Var b + c/g, so
  N_j = (mean_b S_bj² - S_j²) / (g · mean_b(1/g_b) - 1) is an unbiased estimate of the noise
  c/g with no model of the noise, and V_j = S_j² - N_j as before. The shared noise also moves
  P in a way the draws cannot see: its error adds a jackknife over the m batches (leave one
  batch out) to the one over draws, in quadrature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
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

__all__ = ["AmplificationResult", "amplification", "invert_precision"]

BOUND_SIGMAS = 2.0
"""n' is only a lower bound where the precision P is below this many jackknife errors."""


@dataclass(frozen=True)
class AmplificationResult:
    """Amplification estimate per network and combined over networks.

    Shapes for (K, s, B) input; for (s, B) input the K axis is dropped.

    Attributes:
        n_prime: (K,) headline n' (bias-corrected 1/P; the lower bound where ``is_bound``).
        n_prime_low, n_prime_high: (K,) 68 % interval [1/(P + σ_P), 1/(P - σ_P)] (inf: open).
        is_bound: (K,) P < 2 σ_P: n' is only a lower bound (n_prime = 1/(P + 2 σ_P)).
        precision, precision_err: (K,) P and its jackknife error over draws (1/events).
        noise_fraction: (K,) share of the spread over draws that is generation noise.
        n_prime_paper: (K,) Σ_j mean_j²/S_j², the paper's raw Poisson form.
        per_bin: (K, B) n'_j (binomial, noise- and s-corrected); NaN where V_j <= 0 or masked.
        mean: (K, B) mean_j over draws; std: (K, B) S_j; noise: (K, B) N_j (0 without g).
        masked: (B,) bins left out (t_j = 0 or t_j = 1).
        combined: dict over networks: ``n_prime``, ``n_prime_low``, ``n_prime_high``,
            ``is_bound``, ``precision``, ``precision_err`` (from the per-network errors) and
            ``precision_spread`` (std of the P_k / √K: larger than ``precision_err`` when the
            networks differ more than their draws explain).
        per_bin_combined: (B,) n'_j from the precision averaged over networks (NaN: <= 0).
        n_draws: s; n_generated: mean events per draw (None: no noise correction).
    """

    n_prime: Any
    n_prime_low: Any
    n_prime_high: Any
    is_bound: Any
    precision: Any
    precision_err: Any
    noise_fraction: Any
    n_prime_paper: Any
    per_bin: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    noise: np.ndarray
    masked: np.ndarray
    combined: dict[str, Any]
    per_bin_combined: np.ndarray
    n_draws: int
    n_generated: float | None

    def factor(self, n_train: float) -> Any:
        """Amplification factor n'/n per network for a training sample of ``n_train`` events."""
        return np.asarray(self.n_prime) / n_train

    def to_dict(self, *, per_bin: bool = True) -> dict[str, Any]:
        """JSON-ready dict (NaN/inf -> None); ``per_bin=False`` drops the (K, B) arrays."""
        d = asdict(self)
        if not per_bin:
            for key in ("per_bin", "mean", "std", "noise", "masked", "per_bin_combined"):
                d.pop(key)
        return jsonable(d)


def invert_precision(p: np.ndarray, err: np.ndarray) -> dict[str, np.ndarray]:
    """n' from a precision estimate P ± σ (elementwise): estimate, 68 % interval, bound flag.

    n' = (1 - σ²/P²)/P removes the second-order bias E[1/P̂] ≈ (1 + σ²/P²)/P; where
    P < 2σ only n' >= 1/(P + 2σ) is known (``is_bound``; inf where P + 2σ <= 0, i.e. the
    draws vary less than the noise model allows).
    """
    p = np.asarray(p, np.float64)
    err = np.nan_to_num(np.asarray(err, np.float64), nan=0.0)
    bound = ~(p > BOUND_SIGMAS * err) | ~(p > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        est = np.where(bound, 0.0, (1.0 - (err / np.where(p > 0, p, 1.0)) ** 2) / p)
        up2, up1, dn1 = p + BOUND_SIGMAS * err, p + err, p - err
        # a precision whose upper limit is <= 0 (spread below the noise model) bounds nothing
        low_bound = np.where(up2 > 0, 1.0 / np.where(up2 > 0, up2, 1.0), np.inf)
        n_prime = np.where(bound, low_bound, est)
        lo = np.where(up1 > 0, 1.0 / np.where(up1 > 0, up1, 1.0), np.inf)
        hi = np.where(dn1 > 0, 1.0 / np.where(dn1 > 0, dn1, 1.0), np.inf)
    return {"n_prime": n_prime, "low": lo, "high": hi, "is_bound": bound}


def _var_loo(h: np.ndarray) -> np.ndarray:
    """(s, B) sample variances (ddof 1) of h (s, B) with draw i left out, row i."""
    s = h.shape[0]
    m_loo = (h.sum(axis=0)[None] - h) / (s - 1)
    return ((h * h).sum(axis=0)[None] - h * h - (s - 1) * m_loo * m_loo) / (s - 2)


def _var_loo(h: np.ndarray) -> np.ndarray:
    """(s, B) sample variances (ddof 1) of h (s, B) with draw i left out, row i."""
    s = h.shape[0]
    m_loo = (h.sum(axis=0)[None] - h) / (s - 1)
    return ((h * h).sum(axis=0)[None] - h * h - (s - 1) * m_loo * m_loo) / (s - 2)


def _batch_precision(hb: np.ndarray, gb: np.ndarray, w: np.ndarray) -> dict[str, Any]:
    """Split-batch noise estimate (module docstring) of one network.

    hb (s, m, B) fractions of the m batches of every draw, gb (m,) their sizes, w (B,) weights.
    """
    s, m, _ = hb.shape
    g = float(gb.sum())
    full = np.einsum("smb,m->sb", hb, gb) / g
    factor = g * float(np.mean(1.0 / gb)) - 1.0

    def noise_of(var_full: np.ndarray, var_batches: np.ndarray) -> np.ndarray:
        return (var_batches.mean(axis=0) - var_full) / factor

    var = full.var(axis=0, ddof=1)
    var_b = hb.var(axis=0, ddof=1)  # (m, B)
    noise = noise_of(var, var_b)
    err2 = np.nan
    if s >= 3 and m >= 2:
        loo = _var_loo(full)
        loo_b = np.stack([_var_loo(hb[:, b]) for b in range(m)], axis=1)  # (s, m, B)
        p_loo = (loo - (loo_b.mean(axis=1) - loo) / factor) @ w
        err2 = (s - 1) / s * np.sum((p_loo - p_loo.mean()) ** 2)
        if m >= 3:  # leave one batch of events out: the shared noise's share of the error
            p_b = []
            for b in range(m):
                keep = np.arange(m) != b
                g_k = gb[keep]
                f_k = np.einsum("smb,m->sb", hb[:, keep], g_k) / g_k.sum()
                v_k = f_k.var(axis=0, ddof=1)
                fac_k = g_k.sum() * float(np.mean(1.0 / g_k)) - 1.0
                p_b.append(w @ (v_k - (var_b[keep].mean(axis=0) - v_k) / fac_k))
            p_b = np.asarray(p_b)
            err2 += (m - 1) / m * np.sum((p_b - p_b.mean()) ** 2)
    return {"full": full, "var": var, "noise": noise, "err": float(np.sqrt(err2))}


def _network(
    h: np.ndarray,
    g: np.ndarray | None,
    w: np.ndarray,
    batches: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """One network: h (s, B) fractions, g (s,) events per draw, w (B,) precision weights;
    ``batches``: ((s, m, B) batch fractions, (m,) batch sizes) of draws with common noise."""
    s = h.shape[0]
    mean = h.mean(axis=0)
    if batches is not None:
        split = _batch_precision(batches[0], batches[1], w)
        var, noise, err = split["var"], split["noise"], split["err"]
        v = var - noise
        precision = float(w @ v)
    else:
        var = h.var(axis=0, ddof=1)
        noise_i = np.zeros_like(h) if g is None else h * (1.0 - h) / (g[:, None] - 1.0)
        noise = noise_i.mean(axis=0)
        v = var - noise
        precision = float(w @ v)
        err = np.nan
        if s >= 3:  # jackknife over draws (leave one draw out)
            var_loo = _var_loo(h)
            noise_loo = (noise_i.sum(axis=0)[None] - noise_i) / (s - 1)
            p_loo = (var_loo - noise_loo) @ w
            err = float(np.sqrt((s - 1) / s * np.sum((p_loo - p_loo.mean()) ** 2)))
    spread = float(w @ var)
    return {
        "mean": mean,
        "var": var,
        "noise": noise,
        "v": v,
        "precision": precision,
        "err": err,
        "noise_fraction": float(w @ noise) / spread if spread > 0 else np.nan,
    }


def amplification(
    values: np.ndarray,
    n_generated: Any = None,
    *,
    truth: np.ndarray | None = None,
    n_truth: float | None = None,
    batches: np.ndarray | None = None,
    batch_sizes: Any = None,
) -> AmplificationResult:
    """Unbiased Bayesian amplification estimate n' (see the module docstring for the formulas).

    Args:
        values: (s, B) or (K, s, B) normalised bin fractions per draw.
        n_generated: events per draw g (scalar, (s,) or (K, s)) for the noise correction, or
            None when the fractions are noise-free (bin probabilities).
        batches: (s, m, B) or (K, s, m, B) fractions of the m event batches of every draw
            when the draws of a network share their latent noise batch by batch (common
            random numbers); the noise is then estimated from the batches with no model of it
            (module docstring) and ``n_generated`` is not used. ``values`` must be their
            ``batch_sizes``-weighted mean.
        batch_sizes: (m,) events per batch (m >= 2, each >= 1).
        truth: (B,) truth bin probabilities t_j for the precision weights (default: the mean
            over draws and networks; the truth avoids the small-count bias of 1/mean_j).
        n_truth: size N of the truth sample behind ``truth`` (None: exact). The weight 1/t_j
            is then replaced by (N + 1)/(N t_j + 1), whose mean is (1 - (1 - p)^(N+1))/p for a
            binomial count: unbiased for 1/p_j up to e^(-N p_j) (1/t_j is high by ≈ 1/(N p_j)).

    Returns:
        An :class:`AmplificationResult`.
    """
    arr, squeeze = as_ksb(values)
    k, s, n_bins = arr.shape
    g = check_generated(n_generated, k, s)
    split = None
    if batches is not None:
        split = _check_batches(batches, batch_sizes, arr)
        g = None
    t = arr.mean(axis=(0, 1)) if truth is None else check_truth(truth, n_bins)
    if np.any(t < 0):
        msg = "`truth` must be non-negative"
        raise ValueError(msg)
    t = t / t.sum() if t.sum() > 0 else t
    masked = ~((t > 0) & (t < 1))
    denom = float(np.sum(np.where(masked, 0.0, 1.0 - t)))
    if not denom > 0:
        msg = (
            f"amplification needs at least two populated bins, got {n_bins - int(masked.sum())} "
            f"of {n_bins} (a constant observable?)"
        )
        raise ValueError(msg)
    n_t = check_n_truth(n_truth)
    inv_t = 1.0 / np.where(masked, 1.0, t) if n_t is None else (n_t + 1.0) / (n_t * t + 1.0)
    w = np.where(masked, 0.0, inv_t) / denom
    nets = [
        _network(
            arr[i],
            None if g is None else g[i],
            w,
            None if split is None else (split[0][i], split[1]),
        )
        for i in range(k)
    ]
    mean = np.stack([r["mean"] for r in nets])
    var = np.stack([r["var"] for r in nets])
    v = np.stack([r["v"] for r in nets])
    prec = np.array([r["precision"] for r in nets])
    err = np.array([r["err"] for r in nets])
    inv = invert_precision(prec, err)
    c_s = (s - 3.0) / (s - 1.0) if s > 3 else np.nan
    ok = (v > 0) & ~masked[None]
    per_bin = np.where(ok, c_s * mean * (1.0 - mean) / np.where(ok, v, 1.0), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        paper = np.where(var > 0, mean * mean / np.where(var > 0, var, 1.0), 0.0).sum(axis=-1)
        bin_prec = np.where(masked, np.nan, (v / (mean * (1.0 - mean))).mean(axis=0))
    p_mean = float(prec.mean())
    p_err = float(np.sqrt(np.sum(err**2)) / k)
    inv_c = invert_precision(np.array(p_mean), np.array(p_err))
    combined = {
        "n_prime": float(inv_c["n_prime"]),
        "n_prime_low": float(inv_c["low"]),
        "n_prime_high": float(inv_c["high"]),
        "is_bound": bool(inv_c["is_bound"]),
        "precision": p_mean,
        "precision_err": p_err,
        "precision_spread": float(prec.std(ddof=1) / np.sqrt(k)) if k > 1 else np.nan,
    }
    return AmplificationResult(
        n_prime=squeeze_k(inv["n_prime"], squeeze),
        n_prime_low=squeeze_k(inv["low"], squeeze),
        n_prime_high=squeeze_k(inv["high"], squeeze),
        is_bound=squeeze_k(inv["is_bound"], squeeze),
        precision=squeeze_k(prec, squeeze),
        precision_err=squeeze_k(err, squeeze),
        noise_fraction=squeeze_k(np.array([r["noise_fraction"] for r in nets]), squeeze),
        n_prime_paper=squeeze_k(paper, squeeze),
        per_bin=squeeze_k(per_bin, squeeze),
        mean=squeeze_k(mean, squeeze),
        std=squeeze_k(np.sqrt(var), squeeze),
        noise=squeeze_k(np.stack([r["noise"] for r in nets]), squeeze),
        masked=masked,
        combined=combined,
        per_bin_combined=np.where(
            bin_prec > 0, 1.0 / np.where(bin_prec > 0, bin_prec, 1.0), np.nan
        ),
        n_draws=s,
        n_generated=float(split[1].sum()) if split is not None else (
            None if g is None else float(g.mean())
        ),
    )


def _check_batches(batches: Any, sizes: Any, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, s, m, B) batch fractions and (m,) sizes, checked against the (K, s, B) values."""
    gb = np.asarray(sizes, np.float64).reshape(-1)
    hb = np.asarray(batches, np.float64)
    if hb.ndim == 3:
        hb = hb[None]
    k, s, n_bins = arr.shape
    if hb.ndim != 4 or hb.shape[:2] != (k, s) or hb.shape[3] != n_bins:
        msg = f"`batches` must have shape (K, s, m, B) with (K, s, B) = {arr.shape}, got " + str(
            np.shape(batches)
        )
        raise ValueError(msg)
    if gb.shape != (hb.shape[2],) or hb.shape[2] < 2 or not np.all(gb >= 1):
        msg = f"`batch_sizes` must be {hb.shape[2]} >= 2 sizes >= 1, got {np.shape(sizes)}"
        raise ValueError(msg)
    full = np.einsum("ksmb,m->ksb", hb, gb) / gb.sum()
    if not np.allclose(full, arr, atol=1e-9):
        msg = "`values` must be the `batch_sizes`-weighted mean of `batches`"
        raise ValueError(msg)
    return hb, gb
