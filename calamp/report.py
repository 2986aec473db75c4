"""Figures of a finished job, made only from its results (``results.json`` + ``results.npz``).

``make_figures(results, arrays, folder)`` is called at the end of :func:`calamp.job.run_job`;
``calamp report RESULTS_FOLDER`` (= ``python -m calamp.report``) redraws them later without
touching the networks.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "add_arguments",
    "load_results",
    "main",
    "make_figures",
    "mean_shower_figure",
    "run_command",
]


def _finite(v: float | None) -> float:
    """A JSON number, None (inf/NaN) -> NaN, so that plots skip it."""
    return np.nan if v is None else float(v)


def _label(name: str) -> str:
    if name in ("ring", "r", "phi"):
        return {"ring": r"$(r, \phi)$ cell", "r": "$r$", "phi": r"$\phi$ [rad]"}[name]
    from calamp.observables import observable_info

    try:
        info = observable_info(name)
    except (KeyError, ValueError):
        return name
    return info.label


def load_results(folder: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read ``results.json`` and ``results.npz`` of a results folder."""
    folder = Path(folder)
    results = json.loads((folder / "results.json").read_text())
    with np.load(folder / "results.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return results, arrays


def make_figures(
    results: Mapping[str, Any], arrays: Mapping[str, np.ndarray], folder: str | Path
) -> list[Path]:
    """Draw every figure of a job into ``folder`` (PDF + PNG); returns the PNG paths.

    Figures: per observable the finest binning with truth, training data and the posterior band
    of network 0 (ratio panel and per-bin amplification below); amplification vs number of bins;
    calibration curves per number of bins; closure (Bayesian vs JSD amplification); the mean
    shower image and its relative posterior spread.
    """
    import matplotlib.pyplot as plt

    from calamp import plotting

    plotting.use_style()
    folder = Path(folder)
    n_train = results["data"]["n_train"]
    by_obs: dict[str, dict[int, str]] = defaultdict(dict)
    for key, r in results["binnings"].items():
        by_obs[r["observable"]][r["n_quantiles"]] = key
    pngs: list[Path] = []
    right = f"n = {n_train}, {results['config']['model']} + {results['config']['method']}"

    # 1. observables with posterior bands (finest 1D binning)
    for obs, keys in by_obs.items():
        key = keys[max(keys)]
        r = results["binnings"][key]
        if len(r["shape"]) != 1:
            continue
        fr = arrays[f"fractions/{key}"]
        edges = np.asarray(r["edges"][0])
        fig, (ax, rax, aax) = plt.subplots(
            3,
            1,
            figsize=(8, 9),
            sharex=True,
            gridspec_kw={"height_ratios": [3, 1.2, 1.2], "hspace": 0.08},
        )
        plotting.plot_observable(
            edges,
            np.asarray(r["truth"]),
            fr[0].mean(0),
            fr[0].std(0, ddof=1),
            xlabel="",
            train=arrays[f"train/{key}"][0] if f"train/{key}" in arrays else None,
            ax=ax,
            ratio_ax=rax,
            model_label="Network 0: posterior mean ± std",
        )
        plotting.plot_amplification_per_bin(
            edges, r["amplification"]["per_bin_mean"], n_train=n_train, xlabel=_label(obs), ax=aax
        )
        rax.set_xlabel("")
        if len(edges) > 4:  # the open outer bins reach the truth's extremes: show the core
            w = float(np.median(np.diff(edges[1:-1])))
            ax.set_xlim(max(edges[0], edges[1] - 3 * w), min(edges[-1], edges[-2] + 3 * w))
        plotting.label_axes(ax, "Simulation", right)
        fig.align_ylabels()
        pngs.append(plotting.save_figure(fig, folder / f"observable_{obs}")[1])

    # 2. amplification vs number of bins
    fig, ax = plt.subplots()
    for obs, keys in by_obs.items():
        nq = sorted(keys)
        nb = [results["binnings"][keys[q]]["n_bins"] for q in nq]
        amps = [results["binnings"][keys[q]]["amplification"] for q in nq]
        # combined estimate over networks and its 68 % interval (an open upper end is drawn
        # at the estimate; lower bounds are drawn as their value)
        mid = [_finite(a["mean_factor"]) for a in amps]
        plotting.plot_amplification_vs_bins(
            nb,
            mid,
            lo=[_finite(a["mean_factor_low"]) for a in amps],
            hi=[_finite(a["mean_factor_high"]) if a["mean_factor_high"] is not None else m
                for a, m in zip(amps, mid, strict=True)],
            label=obs,
            ax=ax,
        )
    ax.legend(ncol=2, fontsize=10, loc="best")
    plotting.label_axes(ax, "Simulation", right)
    pngs.append(plotting.save_figure(fig, folder / "amplification_vs_bins")[1])

    # 3. calibration curves, one figure per number of quantiles
    nqs = sorted({q for keys in by_obs.values() for q in keys})
    for q in nqs:
        fig, ax = plt.subplots()
        few = sum(q in keys for keys in by_obs.values()) <= 3  # bands only when readable
        for j, (obs, keys) in enumerate(by_obs.items()):
            if q not in keys:
                continue
            cov = results["binnings"][keys[q]]["coverage"]
            band = (
                (cov["band_low"], cov["band_high"])
                if few and cov.get("band_low") is not None
                else None
            )
            plotting.plot_calibration(
                np.asarray(cov["levels"]),
                np.asarray(cov["empirical"]),
                band=band,
                ax=ax,
                color=f"C{j % 10}",
                label=f"{obs} (MAD {cov['mad']:.3f})",
            )
        ax.legend(fontsize=9 if few else 8, ncol=1 if few else 2, loc="upper left", frameon=False)
        plotting.label_axes(ax, "Simulation", f"{q} quantiles per axis")
        pngs.append(plotting.save_figure(fig, folder / f"calibration_q{q}")[1])

    # 4. closure: Bayesian vs 'true' amplification
    fig, ax = plt.subplots()
    lo, hi = np.inf, 0.0
    for j, (obs, keys) in enumerate(by_obs.items()):
        xs, ys = [], []
        for q in sorted(keys):
            r = results["binnings"][keys[q]]
            xs.append(_finite(r["closure"]["n_eq_mean"]) / n_train)
            ys.append(_finite(r["closure"]["n_prime_mean"]) / n_train)
        ax.plot(xs, ys, "o-", color=f"C{j % 10}", label=obs, ms=5)
        vals = np.asarray(xs + ys, float)
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if vals.size:
            lo, hi = min(lo, vals.min()), max(hi, vals.max())
    if np.isfinite(lo) and hi > 0:
        d = np.array([lo / 2, hi * 2])
        ax.plot(d, d, color="grey", ls="--", lw=1, label="diagonal")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"JSD closure amplification $n_{eq}/n$")
    ax.set_ylabel(r"Bayesian amplification $n'/n$")
    ax.legend(fontsize=9, ncol=2, loc="upper left")
    plotting.label_axes(ax, "Simulation", right)
    pngs.append(plotting.save_figure(fig, folder / "closure")[1])

    # 5. mean shower: truth, generated (all networks and draws), ratio, posterior spread
    if "mean_image" in arrays:
        fig = mean_shower_figure(
            np.asarray(arrays["mean_image"]),
            np.asarray(arrays["truth_mean_image"]) if "truth_mean_image" in arrays else None,
        )
        pngs.append(plotting.save_figure(fig, folder / "mean_shower")[1])
    return pngs


def mean_shower_figure(mean_image: np.ndarray, truth_mean: np.ndarray | None):
    """Truth and generated mean showers, their ratio per cell and the posterior spread.

    Args:
        mean_image: (K, s, ny, nx) mean cell energy (GeV) of every draw of every network.
        truth_mean: (ny, nx) mean cell energy of the truth sample, or None.

    The ratio panel is the generated mean (over all draws) over the truth, with the cell's
    posterior spread (std over draws / mean, averaged over networks) written into each cell as
    a percentage, so a ratio off 1 by much more than that number is a mismodelled cell.
    """
    import matplotlib.pyplot as plt

    from calamp import plotting

    gen = mean_image.mean(axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.nanmean(mean_image.std(axis=1, ddof=1) / mean_image.mean(axis=1), axis=0)
    panels = 4 if truth_mean is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 5.2))
    # truth and generated means on one colour scale, so the two panels compare by eye
    limits = plotting.log_limits(gen, *([] if truth_mean is None else [truth_mean]))
    i = 0
    if truth_mean is not None:
        plotting.plot_shower_image(
            truth_mean, ax=axes[0], label="Mean cell energy [GeV]", limits=limits
        )
        axes[0].set_title("Truth mean shower", fontsize=13)
        i = 1
    plotting.plot_shower_image(gen, ax=axes[i], label="Mean cell energy [GeV]", limits=limits)
    axes[i].set_title(f"Generated mean shower ({mean_image.shape[0]} networks)", fontsize=13)
    if truth_mean is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(truth_mean > 0, gen / truth_mean, np.nan)
        text = np.vectorize(lambda v: "" if not np.isfinite(v) else f"{100 * v:.0f}")(spread)
        plotting.plot_shower_image(
            ratio, ax=axes[2], label="Generated / truth", centre=1.0, annotate=text
        )
        axes[2].set_title("Ratio (numbers: posterior spread in %)", fontsize=13)
    plotting.plot_shower_image(spread, ax=axes[-1], label="Posterior std / mean", log=True)
    axes[-1].set_title("Relative posterior spread", fontsize=13)
    fig.tight_layout()
    return fig


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``calamp report RESULTS_FOLDER [--reanalyse]``."""
    p.description = (
        "Redraw the figures of a results folder from its results.json and results.npz "
        "(the networks are not touched)."
    )
    p.add_argument("folder", metavar="RESULTS_FOLDER", help="a calamp results folder")
    p.add_argument(
        "--reanalyse",
        action="store_true",
        help="first recompute every statistic from the stored histograms",
    )


def run_command(args: argparse.Namespace) -> None:
    """Redraw the figures of ``args.folder`` (after :func:`calamp.job.reanalyse` with
    ``--reanalyse``) and print their paths; a folder without results raises ``CalampError``."""
    folder = Path(args.folder)
    if not (folder / "results.json").is_file() or not (folder / "results.npz").is_file():
        from calamp.io import CalampError

        raise CalampError(f"{folder} has no results.json/results.npz")
    if args.reanalyse:
        from calamp.job import reanalyse

        reanalyse(folder, plots=False)
    results, arrays = load_results(folder)
    for p in make_figures(results, arrays, folder / "figures"):
        print(p)


def main(argv: list[str] | None = None, *, prog: str = "calamp report") -> int:
    """``calamp report FOLDER [--reanalyse]`` (= ``python -m calamp.report``): redraw the figures
    of a results folder (with ``--reanalyse``, first recompute every statistic from the stored
    histograms). Returns the exit code (0 ok, 2 bad option or folder, 130 interrupted)."""
    from calamp.cli import main as calamp_main

    return calamp_main(argv, prog=prog, command="report")


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m calamp.report"))
