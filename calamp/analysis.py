"""All statistics of one observable binning, as the JSON-ready dict of ``results.json``.

Takes per-draw bin fractions and returns amplification, coverage and closure (with the
corrections of :mod:`calamp.stats` for the g generated events per draw and the finite truth),
plus the one-screen summary. numpy only: no TensorFlow, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from calamp import stats

__all__ = [
    "analyse_binning",
    "drop_constant",
    "format_summary",
    "generated_for_noise",
    "summary_rows",
]


def drop_constant(binnings: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Binnings with at least two bins, and a warning for each observable left out (constant
    on the truth, so no quantile binning and no statistics exist)."""
    kept = {k: b for k, b in binnings.items() if b.n_bins >= 2}
    gone = sorted({k.rsplit("/q", 1)[0] for k in binnings} - {k.rsplit("/q", 1)[0] for k in kept})
    return kept, [f"observable {name} is constant on the truth: left out" for name in gone]


def _mean_finite(values: Any) -> float:
    """Mean of the finite entries (None/NaN skipped); NaN when there are none."""
    v = np.asarray(values, float).ravel()
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _describe(amp: stats.AmplificationResult) -> str:
    c = amp.combined
    noise = _mean_finite(amp.noise_fraction)
    g = amp.n_generated
    base = (
        "binomial, unbiased: bin precisions averaged, then inverted; "
        f"generation noise of g = {g:.0f} events per draw subtracted "
        f"({100 * noise:.0f}% of the spread)"
        if g is not None
        else "binomial, unbiased: precision-weighted over bins, noise-free fractions"
    )
    if c["is_bound"]:
        return f"lower bound n' >= {c['n_prime']:.4g}: the spread is not resolved; " + base
    return base


def analyse_binning(
    *,
    name: str,
    n_quantiles: int,
    shape: tuple[int, ...],
    edges: list[np.ndarray],
    fractions: np.ndarray,
    truth: np.ndarray,
    train_fractions: np.ndarray | None,
    n_train: int,
    n_generated: np.ndarray | None,
    n_truth: float | None,
    n_boot: int = 0,
    seed: int = 0,
    batches: np.ndarray | None = None,
    batch_sizes: np.ndarray | None = None,
) -> dict[str, Any]:
    """Amplification, coverage and closure of one binning.

    Args:
        name, n_quantiles, shape, edges: the binning (observable name, quantiles per axis,
            bins per axis, edges per axis).
        fractions: (K, s, B) per-draw bin fractions.
        truth: (B,) truth fractions (the binning is made from quantiles of this sample).
        train_fractions: (K, B) bin fractions of the training sets (None: unknown, e.g. a
            generator trained elsewhere).
        n_train: training-set size n.
        n_generated: (K, s) events per draw, or None for noise-free bin probabilities.
        n_truth: size of the truth sample (None: exact truth).
        n_boot: bootstrap replicas of the coverage band (0: none).
        seed: seed of the coverage randomisation and bootstrap.
        batches, batch_sizes: (K, s, m, B) batch fractions and (m,) batch sizes of draws that
            share their latent noise (common random numbers), else None. The noise is then
            estimated from the batches (:func:`calamp.stats.amplification`) and handed to the
            coverage in place of the multinomial one. The noise the draws share,
            mean(1 - mean)/(g - 1) - N per bin, widens the closure's posterior-mean precision
            and no randomisation of the truth can match it: the coverage is judged only where
            it is <= :data:`COMMON_NOISE_SHARE` of the weight spread
            (``coverage["common_noise_share"]``).

    Returns:
        The ``results.json`` entry ``binnings["NAME/qN"]`` (schema: :mod:`calamp.schema`).
    """
    fractions = np.asarray(fractions, np.float64)
    k = fractions.shape[0]
    common = batches is not None
    # n_truth: the weights 1/t_j of a finite truth sample are high by ~1/(N t_j) (2 % at
    # 50 truth events per cell: the ring oracle at 200x200 with N = 2e6 gave A = 0.981)
    amp = stats.amplification(
        fractions,
        n_generated,
        truth=truth,
        n_truth=n_truth,
        batches=batches,
        batch_sizes=batch_sizes,
    )
    c = amp.combined
    shared = share = None
    if common:
        # the noise offset every draw of a network carries: Var ĥ̄ = S²/s + (1 - 1/s) ·
        # (mean(1 - mean)/(g - 1) - N), the covariance of two draws' noise
        g = float(np.sum(batch_sizes))
        s_draws = fractions.shape[1]
        offset = amp.mean * (1.0 - amp.mean) / (g - 1.0)
        shared = np.maximum(offset - amp.noise, 0.0)  # what two draws' noise has in common
        t = np.asarray(truth, np.float64) / np.sum(truth)
        w = np.where(amp.masked, 0.0, 1.0 / np.where(amp.masked, 1.0, t))
        weight = float(np.mean(np.sum(w * (amp.std**2 - amp.noise), axis=-1)))
        share = float(np.mean(np.sum(w * shared, axis=-1))) / weight if weight > 0 else np.inf
        shared = (1.0 - 1.0 / s_draws) * shared
    amplification = {
        "n_prime": np.asarray(amp.n_prime, float).tolist(),
        "n_prime_low": np.asarray(amp.n_prime_low, float).tolist(),
        "n_prime_high": np.asarray(amp.n_prime_high, float).tolist(),
        "is_bound": np.asarray(amp.is_bound).tolist(),
        "precision": np.asarray(amp.precision, float).tolist(),
        "precision_err": np.asarray(amp.precision_err, float).tolist(),
        "factor": (np.asarray(amp.n_prime, float) / n_train).tolist(),
        "combined": c,
        "mean_factor": c["n_prime"] / n_train,
        "mean_factor_low": c["n_prime_low"] / n_train,
        "mean_factor_high": c["n_prime_high"] / n_train,
        "n_prime_paper": np.asarray(amp.n_prime_paper, float).tolist(),
        "mean_factor_paper": float(np.mean(amp.n_prime_paper)) / n_train,
        "noise_fraction": np.asarray(amp.noise_fraction, float).tolist(),
        "n_generated_per_draw": amp.n_generated,
        "form": "binomial",
        "estimate_used": _describe(amp),
        "per_bin_mean": amp.per_bin_combined.tolist(),
    }
    grid = tuple(shape) if len(shape) == 2 else None
    # common noise: the truth gets the draws' own (split-batch) noise, not the multinomial one
    cov_noise = amp.noise if common else None
    cov = stats.coverage(
        fractions,
        truth,
        grid_shape=grid,
        n_generated=n_generated,
        n_truth=n_truth,
        seed=seed,
        noise=cov_noise,
    )
    coverage = cov.to_dict()
    if common:
        coverage["common_noise_share"] = share
        if not share <= COMMON_NOISE_SHARE:
            coverage["state"] = "not judged (common noise)"
    if n_boot >= 2:
        cb = stats.bootstrap_coverage(
            fractions,
            truth,
            n_boot=n_boot,
            seed=seed,
            n_generated=n_generated,
            n_truth=n_truth,
            noise_seed=seed,
            noise=cov_noise,
        )
        coverage["band_low"] = np.asarray(cb.low).tolist()
        coverage["band_high"] = np.asarray(cb.high).tolist()
        coverage["mad_std"] = None if cb.mad is None else float(cb.mad.std)
    clo = stats.closure(
        fractions, truth, n_train, n_truth=n_truth, amplification=amp, shared_noise=shared
    )
    closure = clo.to_dict()
    cc = clo.combined
    p = np.asarray(truth, np.float64) / np.sum(truth)
    jsd_train = n_eq_train = closer = None
    if train_fractions is not None:  # None: a generator trained elsewhere
        jsd_train = np.atleast_1d(np.asarray(stats.jsd(train_fractions, p), float))
        dof = max(int(np.count_nonzero(p)) - 1, 1)
        prec_j = 1.0 / np.asarray(stats.equivalent_sample_size(jsd_train, p).n_eq, float)
        train_prec = prec_j - (0.0 if n_truth is None else 1.0 / n_truth)
        n_eq_train = stats.invert_precision(train_prec, prec_j * np.sqrt(2.0 / dof))["n_prime"]
        closer = np.atleast_1d(clo.jsd) < jsd_train
    closure.update(
        {
            "jsd_train": jsd_train,
            "n_eq_train": n_eq_train,
            "generated_closer_than_train": closer,
            "n_prime_mean": c["n_prime"],
            "n_prime_is_bound": c["is_bound"],
            "n_eq_mean": cc["n_eq"],
            "n_eq_is_bound": cc["is_bound"],
            "ratio": cc.get("ratio"),
            "z": cc.get("z"),
            "verdict": cc.get("verdict", "undetermined"),
        }
    )
    return stats.arrays.jsonable(
        {
            "observable": name,
            "n_quantiles": int(n_quantiles),
            "n_bins": int(np.prod(shape)),
            "n_networks": k,
            "shape": [int(v) for v in shape],
            "edges": [np.asarray(e).tolist() for e in edges],
            "truth": np.asarray(truth).tolist(),
            "n_truth": n_truth,
            "amplification": amplification,
            "coverage": coverage,
            "closure": closure,
        }
    )


COMMON_NOISE_SHARE = 0.1
"""With common generation noise, coverage is judged only where the noise offset shared by the
draws is at most this share of the weight spread (precision-weighted over bins, ≈ n'/g)."""


def summary_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per observable binning: n', amplification, MAD (and floor), n_eq, verdict."""
    rows = []
    n = results["data"]["n_train"]
    g = results["data"].get("n_generated_per_draw")
    for key, r in results["binnings"].items():
        amp, cov, clo = r["amplification"], r["coverage"], r["closure"]
        n_eq = clo["n_eq_mean"]
        noise = _mean_finite(amp["noise_fraction"])
        rows.append(
            {
                "binning": key,
                "n_bins": r["n_bins"],
                "n_prime": amp["combined"]["n_prime"],
                "n_prime_is_bound": amp["combined"]["is_bound"],
                "amplification": amp["mean_factor"],
                "amplification_low": amp["mean_factor_low"],
                "amplification_high": amp["mean_factor_high"],
                "amplification_paper": amp["mean_factor_paper"],
                "noise_fraction": noise,
                "generated_for_noise_10pct": generated_for_noise(g, noise, 0.1),
                "common_noise_share": cov.get("common_noise_share"),
                "mad": cov["mad"],
                "mad_floor": cov["mad_floor"]["mean"],
                "calibration": cov["state"],
                "n_eq": n_eq,
                "n_eq_is_bound": clo["n_eq_is_bound"],
                "true_amplification": None if n_eq is None else n_eq / n,
                "verdict": clo["verdict"],
                "chain_warning": (r.get("chain") or {}).get("warning"),
            }
        )
    return rows


def generated_for_noise(g: float | None, noise: float, target: float) -> int | None:
    """Events per draw at which generation noise is the share ``target`` of the spread over
    draws, from the share ``noise`` measured with g events (the noise variance scales as 1/g,
    the posterior's not): ``g · noise/(1 − noise) · (1 − target)/target``, rounded up to a
    multiple of 1,000. None where g is None (noise-free) or the share is not in (0, 1)."""
    if g is None or not (np.isfinite(noise) and 0 < noise < 1):
        return None
    need = float(g) * noise / (1.0 - noise) * (1.0 - target) / target
    return int(1000 * np.ceil(need / 1000))


def _num(v: float | None, bound: bool, fmt: str) -> str:
    if v is None:
        return "inf"
    return (">=" if bound else "") + format(v, fmt)


def _pct(v: float | None) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.0f}%"


def _interval(row: Mapping[str, Any]) -> str:
    lo, hi = (
        ("inf" if v is None else format(v, ".3g"))
        for v in (row["amplification_low"], row["amplification_high"])
    )
    return f"[{lo}, {hi}]"


def format_summary(results: Mapping[str, Any]) -> str:
    """The one-screen table printed at the end of a job (>= marks a lower bound)."""
    head = (
        f"{'binning':<18}{'B':>6}{'n_prime':>12}{'A=n/n':>11}{'A 68% CL':>19}{'A_paper':>9}"
        f"{'noise':>6}"
        f"{'MAD':>7}{'floor':>7}{'n_eq':>12}{'A_true':>11}  verdict"
    )
    lines = [
        f"calamp results (n = {results['data']['n_train']} training events per network; "
        "A = unbiased n'/n with its 68 % interval, A_paper = arXiv:2408.00838's Σ mean²/std²; "
        "noise = share of the "
        "draw spread that is generation noise; floor = MAD of a calibrated posterior)",
        head,
        "-" * len(head),
    ]
    n = results["data"]["n_train"]
    for row in results["summary"]:
        b1, b2 = row["n_prime_is_bound"], row["n_eq_is_bound"]
        a_true = None if row["n_eq"] is None else row["n_eq"] / n
        lines.append(
            f"{row['binning']:<18}{row['n_bins']:>6}{_num(row['n_prime'], b1, '.4g'):>12}"
            f"{_num(row['amplification'], b1, '.3g'):>11}{_interval(row):>19}"
            f"{row['amplification_paper']:>9.3g}"
            f"{_pct(row['noise_fraction']):>6}{row['mad']:>7.3f}{row['mad_floor']:>7.3f}"
            f"{_num(row['n_eq'], b2, '.4g'):>12}{_num(a_true, b2, '.3g'):>11}  {row['verdict']}"
            + (" [correlated draws*]" if row.get("chain_warning") else "")
        )
    needs = [row.get("generated_for_noise_10pct") for row in results["summary"]]
    needs = [v for v in needs if v is not None]
    g = (results.get("data") or {}).get("n_generated_per_draw")
    if needs and g:
        lines.append(
            f"generation noise <= 10 % of the spread in every binning needs --generated "
            f"{max(needs)} (this run: {g:.0f} events per draw)"
        )
    shares = [row.get("common_noise_share") for row in results["summary"]]
    shares = [v for v in shares if v is not None]
    if shares and g:
        worst = max(shares)
        need = "more than any finite run" if not np.isfinite(worst) else (
            f"--generated {int(1000 * np.ceil(g * worst / COMMON_NOISE_SHARE / 1000))}"
        )
        lines.append(
            f"common generation noise: the draws share a noise offset of up to "
            f"{_pct(worst)} of the weight spread; coverage is judged where it is <= "
            f"{_pct(COMMON_NOISE_SHARE)} (every binning: {need})"
        )
    for text in (results.get("data") or {}).get("warnings") or []:
        lines.append(f"warning: {text}")
    flagged = [row for row in results["summary"] if row.get("chain_warning")]
    if flagged:
        lines.append(
            f"* {len(flagged)} binning(s): {flagged[0]['chain_warning']} — the draws of the "
            "chain are not independent, so their spread is too small: raise --burn-in, "
            "--max-thin or --mcmc-thin"
        )
    nets = results.get("networks") or []
    chains = [net.get("chain") for net in nets if isinstance(net, dict) and net.get("chain")]
    if chains:
        # function-space statistics (log-density of fixed events) where the sampler kept them
        stat = chains[0].get("ess_stat_min") is not None
        key, what = (
            ("stat", "log-densities of fixed events") if stat else ("theta", "θ projections")
        )
        ess = [c.get(f"ess_{key}_min") for c in chains]
        ess_txt = ", ".join("n/a" if e is None else f"{e:.3g}" for e in ess)
        lines.append(
            f"SG-MCMC: burn-in {chains[0]['burn_in']}, thin {chains[0]['thin']}"
            f"{' (measured)' if chains[0].get('thin_measured') else ''}, acceptance "
            + ", ".join(f"{c['acceptance_rate']:.2f}" for c in chains)
            + f"; ESS of {what} per network: {ess_txt} of "
            f"{results['data']['n_draws']} draws"
            + _rhat_text(chains, key)
        )
        chi2 = [c.get("mh_noise_chi2_median") for c in chains]
        if any(v is not None for v in chi2):
            from calamp.bayes.chain import MH_NOISE_WARN

            noisy = any(v is not None and v > MH_NOISE_WARN for v in chi2)
            lines.append(
                "Metropolis-Hastings minibatch noise, median chi2 per network: "
                + ", ".join("n/a" if v is None else f"{v:.3g}" for v in chi2)
                + (f" (> {MH_NOISE_WARN:g}: the accept/reject test is decided by noise, so the "
                   "chains do not sample the posterior; see README, 'Minibatch "
                   "Metropolis-Hastings')" if noisy else "")
            )
    return "\n".join(lines)


def _rhat_text(chains: list[dict[str, Any]], key: str = "theta") -> str:
    """The between-chain split-R̂ per network, when several chains ran per network."""
    n = chains[0].get("chains", 1)
    if n <= 1:
        return ""
    name = f"rhat_{key}_max"
    rhat = ", ".join("n/a" if c.get(name) is None else f"{c[name]:.3f}" for c in chains)
    return f" in {n} chains each; split-R-hat between them: {rhat}"
