"""What the study scripts (``ring_study.py``, ``calo_study.py``) share.

A study is a list of named points, each one :func:`calamp.pipeline.run_job` in its own folder
``<out>/<budget>/<point>``, under a budget (a table of sizes: networks, draws, training steps...).
This module holds the common command line (:class:`Study`: ``run | report | all``), the
resumable run loop, the :class:`~calamp.config.RunConfig` settings every point takes from its
budget, reading finished runs back, the per-point record and the best-calibrated choice of the
summary JSON, writing that summary, and small figure helpers. The scripts keep what is
particular to them: their budgets and points, the per-binning statistics and the figures.

The scripts import it as a sibling module (``import studylib``): run as a script, ``analysis/`` is
on ``sys.path`` already; imported from a file path (tests), the script puts it there first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calamp import pipeline
from calamp.config import RunConfig, make_config

HERE = Path(__file__).resolve().parent

# budget entries every point's RunConfig takes unchanged
BUDGET_OPTIONS = ("networks", "draws", "generated", "train_steps", "truth_events")
# per-point summary: configuration fields and the budget record's configuration fields
POINT_FIELDS = ("model", "method", "kl_factor", "sigma")
COST_FIELDS = ("train_steps", "mcmc_steps", "draws", "generated")


@dataclass(frozen=True)
class Study:
    """A study script on the command line and on disk.

    ``name`` names the log prefix (``[ring]``), the default run and figure folders and the
    summary files (``ring_summary_<budget>.json``, and ``ring_summary.json`` for the
    ``documented`` budget, the one the results document reports);
    ``doc`` is the script's docstring (its first paragraph describes the command line);
    ``option`` is the option that selects among ``points`` (``--configs``).
    """

    name: str
    doc: str
    budgets: Mapping[str, Mapping[str, Any]]
    points: Mapping[str, Any]
    option: str
    documented: str = "small"

    def main(
        self,
        argv: list[str] | None,
        *,
        run: Callable[[argparse.Namespace, list[str]], None],
        summarise: Callable[[argparse.Namespace], dict],
        figures: Callable[[argparse.Namespace, dict], list[Path]],
        line: Callable[[str, dict], str],
        option_help: str | None = None,
        inputs: Mapping[str, Mapping[str, Any]] | None = None,
        document: Callable[[dict], Path] | None = None,
    ) -> int:
        """The command line: ``run`` (train/draw/fill), ``report`` (summary + figures), ``all``.

        ``inputs`` are extra options (flag: ``add_argument`` keywords) placed before the
        folders. ``run(args, tags)`` runs the selected points, ``summarise(args)`` builds the
        summary, ``figures(args, summary)`` draws the study figures and ``line(tag, point)`` is
        the point's line in the printed report; ``document(summary)`` writes the results
        document (``report`` for the ``documented`` budget, and ``document``: from the committed
        ``<study>_summary.json`` alone).
        """
        p = argparse.ArgumentParser(description=self.doc.split("\n\n")[0])
        p.add_argument("step", choices=("run", "report", "document", "all"))
        p.add_argument("--budget", choices=sorted(self.budgets), default=self.documented)
        p.add_argument(f"--{self.option}", default=",".join(self.points), help=option_help)
        for flag, kwargs in (inputs or {}).items():
            p.add_argument(flag, **kwargs)
        p.add_argument("--out", type=Path, default=HERE / "runs" / self.name)
        p.add_argument("--results", type=Path, default=HERE / "results")
        p.add_argument("--figures", type=Path, default=HERE / "figures" / self.name)
        p.add_argument("--seed", type=int, default=1)
        args = p.parse_args(argv)
        tags = [t.strip() for t in getattr(args, self.option).split(",") if t.strip()]
        unknown = [t for t in tags if t not in self.points]
        if unknown:
            what = self.option[:-1]  # "configs" -> "config"
            print(f"{self.name}_study: error: unknown {what}(s) {unknown}", file=sys.stderr)
            return 2
        if args.step == "document":
            if document is None:
                print(f"{self.name}_study: error: no results document", file=sys.stderr)
                return 2
            summary = json.loads((args.results / f"{self.name}_summary.json").read_text())
            print(f"[{self.name}] document: {document(summary)}")
            return 0
        if args.step in ("run", "all"):
            run(args, tags)
        if args.step in ("report", "all"):
            summary = summarise(args)
            summary["figures"] = [str(f) for f in figures(args, summary)]
            path = write_summary(
                self.name, args.budget, args.results, summary, documented=self.documented
            )
            print(f"[{self.name}] summary: {path}")
            for t, pt in summary["points"].items():
                print(line(t, pt))
            if document is not None and args.budget == self.documented:
                # from the JSON as written (what the document test renders)
                print(f"[{self.name}] document: {document(json.loads(path.read_text()))}")
        return 0


def cost_text(point: dict) -> str:
    """The end of a point's report line: mean MAD and wall time."""
    return f" mean MAD={point['mean_mad']:.3f} wall={point['budget']['total_seconds']:.0f}s"


def budget_options(budget: Mapping[str, Any]) -> dict[str, Any]:
    """The RunConfig options every point takes unchanged from its budget."""
    return {k: budget[k] for k in BUDGET_OPTIONS}


def run_config(
    base: dict[str, Any], options: Mapping[str, Any], budget: Mapping[str, Any], sampler_lr: float
) -> RunConfig:
    """``base`` settings, the budget's sampler schedule for AdamMCMC points, then the point's own
    ``options`` (they win)."""
    base = dict(base)
    if options.get("method") == "adammcmc":
        # pre-training as for VI, then burn-in + s draws spaced by `thin` sampler steps
        base.update(
            burn_in=budget["mcmc_burn_in"],
            mcmc_steps=budget["mcmc_burn_in"] + budget["draws"] * budget["mcmc_thin"],
            sampler_lr=sampler_lr,
        )
    base.update(options)
    return make_config(base)


def run_points(
    study: str, jobs: Iterable[tuple[str, Path, RunConfig]], *inputs: str | Path
) -> None:
    """Run every ``(label, folder, config)`` job that has no ``results.json`` yet; a folder left
    by an interrupted run is resumed. ``inputs``: ``run_job``'s input file, if any."""
    for label, folder, cfg in jobs:
        if (folder / "results.json").is_file():
            print(f"[{study}] {label}: done already", flush=True)
            continue
        t0 = time.perf_counter()
        print(f"[{study}] {label}: start", flush=True)
        pipeline.run_job(cfg, *inputs, out=folder, resume=folder.exists())
        print(f"[{study}] {label}: {time.perf_counter() - t0:.0f} s", flush=True)


def load_results(folder: Path) -> dict:
    """A run's ``results.json`` as stored."""
    return json.loads((folder / "results.json").read_text())


def reanalysed(folders: Iterable[Path], plots: bool | None = None) -> Iterable[tuple[Path, dict]]:
    """``(folder, results)`` of every finished run among ``folders``, the statistics recomputed
    from the stored histograms with the current estimators (nothing retrained)."""
    for folder in folders:
        if (folder / "results.json").is_file():
            yield folder, pipeline.reanalyse(folder, plots=plots)


def new_summary(budget: str, budgets: Mapping[str, Any], **extra: Any) -> dict:
    """The summary's head; points are added under ``"points"``."""
    return {"budget": budget, "budget_settings": budgets[budget], "points": {}, **extra}


def point_summary(
    res: dict,
    details: Mapping[str, Any],
    mads: Iterable[float],
    *,
    fields: tuple[str, ...] = POINT_FIELDS,
    cost_fields: tuple[str, ...] = COST_FIELDS,
) -> dict:
    """One point of the summary: its configuration ``fields``, the training size, the study's
    ``details``, the mean of ``mads`` and the budget it took (configuration ``cost_fields``,
    network wall time, job total), and the samplers' acceptance rates."""
    cfg = res["config"]
    wall = sum(
        net.get("wall_seconds", 0) + net.get("generate_seconds", 0) for net in res["networks"]
    )
    return {
        **{k: cfg[k] for k in fields},
        "n_train": res["data"]["n_train"],
        **details,
        "mean_mad": float(np.mean(list(mads))),
        "budget": {
            **{k: cfg[k] for k in cost_fields},
            "wall_seconds": wall,
            "total_seconds": res["timings"]["total_seconds"],
        },
        "acceptance": [net.get("chain", {}).get("acceptance_rate") for net in res["networks"]],
        # median minibatch-noise χ² of the MH tests per network (AdamMCMC on a likelihood)
        "mh_noise_chi2": [net.get("chain", {}).get("mh_noise_chi2_median")
                          for net in res["networks"]],
    }


def add_best_calibrated(summary: dict, model: str) -> None:
    """``summary["best_calibrated"][method]``: the ``model`` point with the smallest mean MAD,
    for VI, AdamMCMC and ensembles (absent when the summary has no such point)."""
    for method in ("vi", "adammcmc", "ensemble"):
        pts = {
            t: p
            for t, p in summary["points"].items()
            if p["method"] == method and p["model"] == model
        }
        if pts:
            best = min(pts, key=lambda t: pts[t]["mean_mad"])
            summary.setdefault("best_calibrated", {})[method] = best


def write_summary(
    study: str, budget: str, results: Path, summary: dict, *, documented: str = "small"
) -> Path:
    """Write ``<study>_summary_<budget>.json`` (and ``<study>_summary.json`` for the
    ``documented`` budget, the one the results document reports); returns the first."""
    from calamp.outputs import write_json

    results.mkdir(parents=True, exist_ok=True)
    path = write_json(results / f"{study}_summary_{budget}.json", summary)
    if budget == documented:
        write_json(results / f"{study}_summary.json", summary)
    return path


def log_axes(ax, xlabel: str, ylabel: str, **legend: Any) -> None:
    """Log-log axes with their labels and a legend (``legend``: its keywords)."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(**legend)
