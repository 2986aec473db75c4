"""Calomplify: Bayesian amplification and calibration for 10x10 photon showers.

    python analysis/calo_study.py run    --budget small   # trains, draws, histograms
    python analysis/calo_study.py report --budget small   # figures + calo_summary.json

Every study point is one :func:`calamp.pipeline.run_job` on a shower file in the input
contract. With the shipped simulator file (``data/shower.root``) network 0 trains on the file
and networks 1..K-1 on fresh simulator samples of the same size, and the truth is a large fresh
simulator sample; with a user's own file (``--input``, e.g. Geant4 showers converted to 10x10
images) the truth is a held-out part of the file and the outputs say that coverage is measured
against a finite reference. Runs are resumable and keep their draws.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from calamp.config import SHOWER_OBSERVABLES

if str(Path(__file__).resolve().parent) not in sys.path:  # imported from a file path (tests)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import studydoc  # noqa: E402  (result documents from the summary JSON)
import studylib  # noqa: E402  (the shared study code, next to this script)

DATA = studylib.HERE.parent / "data" / "shower.root"
CELLS = ("cell_4_4", "cell_4_5", "cell_5_4", "cell_5_5", "cell_3_4")

BUDGETS: dict[str, dict] = {
    "ci": dict(
        networks=2,
        draws=4,
        generated=2_000,
        train_steps=40,
        truth_events=20_000,
        n_quantiles=(3, 5),
        sizes=(300,),
        mcmc_burn_in=5,
        mcmc_thin=2,
        hidden=16,
        layers=2,
        bootstrap=10,  # a smoke test: few bootstrap replicas, no per-run figures
        plots=False,
    ),
    # about an hour on 2 cores for the default list of points
    "small": dict(
        networks=5,
        draws=16,
        generated=10_000,
        train_steps=1_000,
        truth_events=1_000_000,
        n_quantiles=(5, 10, 20, 50),
        sizes=(1_000, 10_000),
        mcmc_burn_in=100,
        mcmc_thin=10,
        hidden=64,
        layers=4,
    ),
    # the default job's generator (8 couplings of 2x128, 1,500 steps, cosine schedule) at the
    # issue's training sizes; the 100k size trains on a simulator file the study writes
    "standard": dict(
        networks=5,
        draws=20,
        generated=10_000,
        train_steps=1_500,
        truth_events=1_000_000,
        n_quantiles=(5, 10, 20, 50),
        sizes=(1_000, 10_000, 100_000),
        size=10_000,  # the points outside the size scan: the shipped file's size
        mcmc_burn_in=100,
        mcmc_thin=10,
        hidden=0,  # 0: the default size of the shower flow (calamp.config.MODEL_SIZES)
        layers=0,
    ),
}

# (tag, options, training sizes): the Bayesian coupling flow with VI (k scan) and AdamMCMC
# (sigma scan), the Bayesian GAN, and the oracle check
POINTS: dict[str, dict] = {
    "oracle": dict(method="oracle"),
    "flow_vi_k1": dict(model="flow", method="vi", kl_factor=1.0),
    "flow_vi_k10": dict(model="flow", method="vi", kl_factor=10.0),
    "flow_amcmc_s0.1": dict(model="flow", method="adammcmc", sigma=0.1),
    "flow_amcmc_s0.5": dict(model="flow", method="adammcmc", sigma=0.5),
    "gan_vi_k1": dict(model="gan", method="vi", kl_factor=1.0),
    # deep ensemble (DESIGN.md's third baseline): each draw one deterministic network trained
    # on the same set, so a draw costs a training; 10 members per network
    "flow_ens": dict(model="flow", method="ensemble", draws=10),
}
# the training-set-size scan is run for these points only (the rest at the budget's `size`)
SIZE_SCAN = ("oracle", "flow_vi_k1")


def point_config(tag: str, budget: str, n_train: int, seed: int = 1):
    """The :class:`~calamp.config.RunConfig` of one study point."""
    b = BUDGETS[budget]
    opts = dict(POINTS[tag])
    base = dict(
        model="flow",
        **studylib.budget_options(b),
        n_train=n_train,
        n_quantiles=b["n_quantiles"],
        batch_size=min(256, n_train),
        hidden=b["hidden"],
        layers=b["layers"],
        observables=SHOWER_OBSERVABLES + CELLS,
        seed=seed,
        bootstrap=b.get("bootstrap", 50),
        plots=b.get("plots", True),
        progress=False,
        chunk_size=20_000,
    )
    return studylib.run_config(base, opts, b, sampler_lr=1e-4)


def points(budget: str | Mapping[str, Any], tags: list[str]) -> list[tuple[str, int]]:
    """(tag, n_train) pairs of a budget (its name or its settings): the size scan for
    :data:`SIZE_SCAN`, the rest at the budget's ``size`` (default: its largest)."""
    b = BUDGETS[budget] if isinstance(budget, str) else budget
    sizes = b["sizes"]
    out = []
    for tag in tags:
        for n in sizes if tag in SIZE_SCAN else (b.get("size", sizes[-1]),):
            out.append((tag, n))
    return out


def input_for(data: Path, n: int, folder: Path, seed: int) -> Path:
    """The shower file a point with ``n`` training showers reads: ``data``, or where ``data``
    has fewer than ``n`` showers, a simulator file of ``n`` showers with ``data``'s simulator
    settings, written once into ``folder`` (``showers_n<n>.root``; network 0 trains on it, as
    on ``data`` at the smaller sizes).

    Raises:
        CalampError: ``data`` is too small and was not made by ``calamp.simulate``.
    """
    from calamp import io, simulate
    from calamp.io import CalampError
    from calamp.seeds import derive_seed

    have = io.read_provenance(data) or {}
    n_data = have.get("n") or len(io.read_showers(data))
    if n <= n_data:
        return data
    if "config" not in have or "energy" not in have:
        msg = (
            f"{data}: {n_data} showers, fewer than the {n} training showers of this point, "
            "and no calamp.simulate provenance to simulate more (use a budget whose sizes "
            "the file holds)"
        )
        raise CalampError(msg)
    path = folder / f"showers_n{n}.root"
    if not path.is_file():
        cfg = simulate.CaloConfig(**have["config"])
        # the training-data stream of network 0 at size n: entropy (seed, train_data, 0, n),
        # distinct from calamp.sources' (seed, train_data, k) of networks k = 1..K-1
        sim_seed = derive_seed(seed, "train_data", 0, n)
        showers = simulate.photon_showers(n, have["energy"], seed=sim_seed, config=cfg)
        io.write_showers(
            path, showers, provenance=simulate.provenance(have["energy"], sim_seed, n, cfg)
        )
    return path


def run(budget: str, tags: list[str], out: Path, data: Path, seed: int) -> None:
    """Train/draw/fill every (point, training size) on ``data`` (resumable)."""
    for tag, n in points(budget, tags):
        studylib.run_points(
            "calo",
            [(f"{tag} n={n}", out / budget / f"{tag}_n{n}", point_config(tag, budget, n, seed))],
            input_for(data, n, out / budget, seed),
        )


def summarise(budget: str, out: Path) -> dict:
    """calo_summary.json: per point, training size, observable and binning."""
    summary = studylib.new_summary(budget, BUDGETS)
    for folder, res in studylib.reanalysed(sorted((out / budget).glob("*_n*"))):
        n = res["data"]["n_train"]
        obs: dict = {}
        for b in res["binnings"].values():
            clo = b["closure"]
            obs.setdefault(b["observable"], {})[str(b["n_quantiles"])] = {
                "n_bins": b["n_bins"],
                "n_prime": b["amplification"]["n_prime"],
                "amplification": b["amplification"]["mean_factor"],
                "amplification_paper": b["amplification"]["mean_factor_paper"],
                "amplification_is_bound": b["amplification"]["combined"]["is_bound"],
                "estimate_used": b["amplification"]["estimate_used"],
                "mad": b["coverage"]["mad"],
                "n_eq": clo["n_eq_mean"],
                "true_amplification": None if clo["n_eq_mean"] is None else clo["n_eq_mean"] / n,
                # closure: the Bayesian estimate over the truth's (1 when the estimate is right)
                "closure_ratio": (
                    b["amplification"]["mean_factor"] * n / clo["n_eq_mean"]
                    if clo["n_eq_mean"] and b["amplification"]["mean_factor"] is not None
                    else None
                ),
                "jsd_generated": clo["jsd"],
                "jsd_train": clo["jsd_train"],
                "generated_closer_than_train": clo["generated_closer_than_train"],
                "verdict": clo["verdict"],
            }
        summary["points"][folder.name] = studylib.point_summary(
            res,
            {"data": res["data"], "observables": obs},
            [v["mad"] for o in obs.values() for v in o.values()],
            cost_fields=(*studylib.COST_FIELDS, "networks"),
        )
    studylib.add_best_calibrated(summary, "flow")
    summary["closure_window"] = list(CLOSURE_WINDOW)
    return summary


def figures(summary: dict, out: Path, budget: str, fig_dir: Path) -> list[Path]:
    """Study-level figures (each run also has its own figures in its folder)."""
    import matplotlib.pyplot as plt

    from calamp import plotting

    plotting.use_style()
    made = []
    pts = summary["points"]
    # closure: Bayesian vs true amplification, every observable and binning, per point
    fig, ax = plt.subplots()
    lo, hi = np.inf, 0.0
    for i, (tag, p) in enumerate(pts.items()):
        xs = [v["true_amplification"] for o in p["observables"].values() for v in o.values()]
        ys = [v["amplification"] for o in p["observables"].values() for v in o.values()]
        ax.scatter(xs, ys, s=14, color=f"C{i % 10}", label=tag)
        vals = np.asarray(xs + ys, float)
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if vals.size:
            lo, hi = min(lo, vals.min()), max(hi, vals.max())
    if hi > 0:
        ax.plot([lo / 2, hi * 2], [lo / 2, hi * 2], "--", color="grey", label="diagonal")
    studylib.log_axes(
        ax,
        r"JSD closure ('true') amplification $n_{eq}/n$",
        r"Bayesian amplification $n'/n$",
        fontsize=8,
    )
    plotting.label_axes(ax, "Simulation", "50 GeV photons, all observables")
    made.append(plotting.save_figure(fig, fig_dir / "closure_all")[1])

    # amplification vs training-set size (finest common binning), per observable
    for tag in SIZE_SCAN:
        runs = sorted((p["n_train"], p) for t, p in pts.items() if t.startswith(tag + "_n"))
        if len(runs) < 2:
            continue
        fig, ax = plt.subplots()
        for j, name in enumerate(SHOWER_OBSERVABLES):
            nq = max(runs[0][1]["observables"][name], key=int)
            ns = [n for n, _ in runs]
            ax.plot(
                ns,
                [p["observables"][name][nq]["amplification"] for _, p in runs],
                "o-",
                color=f"C{j % 10}",
                label=f"{name} ({nq} q.)",
            )
            true = [p["observables"][name][nq]["true_amplification"] for _, p in runs]
            ax.plot(ns, [np.nan if t is None else t for t in true], "s:", color=f"C{j % 10}",
                    mfc="none")
        ax.plot([], [], "ko-", label="Bayesian $n'/n$")
        ax.plot([], [], "ks:", mfc="none", label="JSD closure $n_{eq}/n$")
        ax.axhline(1, color="grey", ls="--")
        studylib.log_axes(ax, "Training showers $n$", "Amplification", fontsize=7, ncol=2)
        plotting.label_axes(ax, "Simulation", tag)
        made.append(plotting.save_figure(fig, fig_dir / f"amplification_vs_n_{tag}")[1])

    # copy the per-run figures of the headline point (observables with bands, mean shower)
    head = next(
        (
            t
            for t in pts
            if t == f"flow_vi_k1_n{BUDGETS[budget].get('size', BUDGETS[budget]['sizes'][-1])}"
        ),
        None,
    )
    if head is not None:
        import shutil

        src = out / budget / head / "figures"
        for png in sorted(src.glob("*.png")):
            dst = fig_dir / f"{head}_{png.name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, dst)
            made.append(dst)
    return made


DOCUMENT = Path(__file__).resolve().parent / "CALO_RESULTS.md"

# what the runs of a budget are (the document's status line; no numbers here)
STATUS = {
    "small": (
        "Status: these runs used the generators and statistics of their day (the summary's "
        "fields are the ones it wrote: raw and noise-corrected amplification side by side), "
        "not today's default generator and estimators; the rerun with the new generators and "
        "training sizes up to the issue's largest is pending, and until then no conclusion "
        "below is final."
    ),
    "standard": (
        "Status: these runs use the default job's shower generator (the coupling flow of "
        "`calamp.config.MODEL_SIZES`, cosine learning-rate schedule) and the current "
        "estimators; the statistics are recomputed from the stored histograms by `report`."
    ),
}
# closure window of the issue's goals: n'/n_eq within [0.7, 1.4]
CLOSURE_WINDOW = (0.7, 1.4)


def document(summary: dict) -> str:
    """CALO_RESULTS.md from the summary JSON: every number in it is a number of that file
    (``tests/test_docs.py``)."""
    num = studydoc.num
    budget = summary["budget"]
    nqs = sorted({q for pt in summary["points"].values() for o in pt["observables"].values()
                  for q in o}, key=int)
    lines = [
        "# Amplification and calibration for 10×10 photon showers",
        "",
        "Generated by `python analysis/calo_study.py document` from "
        "`analysis/results/calo_summary.json` (written by `python analysis/calo_study.py report "
        f"--budget {budget}` from the runs of `python analysis/calo_study.py run --budget "
        f"{budget}`); `tests/test_docs.py` checks that every number here is in that file. "
        "Figures: `analysis/figures/calo/`.",
        "",
        STATUS.get(budget, f"Status: runs of the `{budget}` budget."),
        "",
        f"## Budget `{budget}` (as run)",
        "",
        *studydoc.settings_table(summary["budget_settings"]),
        "",
        "## Points",
        "",
    ]
    lines += studydoc.table(
        ("point", "model", "method", "k", "σ", "n", "mean MAD", "wall s"),
        (
            (f"`{tag}`", pt["model"], pt["method"],
             num(pt.get("kl_factor")) if pt["method"] == "vi" else "–",
             num(pt.get("sigma")) if pt["method"] == "adammcmc" else "–",
             num(pt["n_train"]), num(pt.get("mean_mad")),
             num((pt.get("budget") or {}).get("total_seconds")))
            for tag, pt in summary["points"].items()
        ),
    )
    best = summary.get("best_calibrated") or {}
    planned = [f"{t}_n{n}" for t, n in points(summary["budget_settings"], list(POINTS))]
    missing = [t for t in planned if t not in summary["points"]]
    if missing:
        lines += ["", "Not run yet at this budget: " + ", ".join(f"`{t}`" for t in missing) + "."]
    if best:
        lines += ["", "Best-calibrated setting per method (smallest mean MAD): "
                  + ", ".join(f"{m}: `{t}`" for m, t in best.items()) + "."]
    lines += headline(summary, best)
    noisy = [(tag, pt) for tag, pt in summary["points"].items()
             if any(v is not None for v in pt.get("mh_noise_chi2") or [])]
    if noisy:
        lines += ["", "AdamMCMC chains (per network: acceptance / median minibatch-noise χ² of "
                  "the Metropolis–Hastings tests; above 1 the test is decided by noise and the "
                  "draws are not posterior samples, README 'Minibatch Metropolis–Hastings'):"]
        lines += [f"* `{tag}`: " + ", ".join(
            f"{num(a)} / {num(c)}"
            for a, c in zip(pt["acceptance"], pt["mh_noise_chi2"], strict=True))
            for tag, pt in noisy]
    lines += ["", "## Per observable", "",
              "Each cell: A = n'/n (mean over networks; \"≥\" where it is only a lower bound) / "
              "A_true = n_eq/n from the JSD closure / MAD of the calibration curve, per number "
              "of quantile bins.", ""]
    for tag, pt in summary["points"].items():
        lines += [f"### `{tag}`", ""]
        rows = []
        for name, by_q in pt["observables"].items():
            cells = []
            for q in nqs:
                r = by_q.get(q)
                if r is None:
                    cells.append("–")
                    continue
                bound = r.get("amplification_is_bound") or (
                    "lower bound" in str(r.get("estimate_used", ""))
                )
                cells.append(f"{'≥' if bound else ''}{num(r['amplification'])} / "
                             f"{num(r.get('true_amplification'))} / {num(r['mad'])}")
            rows.append((name, *cells))
        lines += studydoc.table(("observable", *(f"{q} quantiles" for q in nqs)), rows)
        lines.append("")
    figs = studydoc.relative(summary.get("figures") or [])
    if figs:
        lines += ["## Figures", ""] + [f"* `{f}`" for f in figs]
    return "\n".join(lines)


def headline(summary: dict, best: dict) -> list[str]:
    """Per observable, the best-calibrated point of each method at 10 quantiles (A, A_true,
    n'/n_eq, MAD), and which observables amplify (A_true >= 1) and close (n'/n_eq in
    :data:`CLOSURE_WINDOW`) at any binning (summaries without ``closure_ratio``: nothing)."""
    num = studydoc.num
    pts = summary["points"]
    tags = [t for t in best.values() if t in pts]
    if not tags or "closure_window" not in summary:
        return []

    def bound(r: dict) -> bool:  # n' is only a lower bound: so are A and n'/n_eq
        return bool(r.get("amplification_is_bound"))

    nq = "10" if all("10" in o for t in tags for o in pts[t]["observables"].values()) else None
    lines: list[str] = []
    if nq is not None:
        lines += ["", f"## Best-calibrated settings at {nq} quantiles", "",
                  "Each cell: A = n'/n / A_true = n_eq/n / n'/n_eq / MAD.", ""]
        rows = []
        for name in pts[tags[0]]["observables"]:
            cells = []
            for t in tags:
                r = pts[t]["observables"][name][nq]
                ge = "≥" if bound(r) else ""
                cells.append(f"{ge}{num(r['amplification'])} / {num(r['true_amplification'])} / "
                             f"{ge}{num(r['closure_ratio'])} / {num(r['mad'])}")
            rows.append((name, *cells))
        lines += studydoc.table(("observable", *(f"`{t}`" for t in tags)), rows)
    lo, hi = summary["closure_window"]
    lines += ["", "Which observables amplify (A_true ≥ 1) at some binning, and whether the "
              f"Bayesian estimate closes there (n'/n_eq within [{num(lo)}, {num(hi)}]):", ""]
    for t in tags:
        amp = []
        for name, by_q in pts[t]["observables"].items():
            for q, r in sorted(by_q.items(), key=lambda kv: int(kv[0])):
                if (r.get("true_amplification") or 0) >= 1:
                    c = r.get("closure_ratio")
                    if c is None:
                        state = "n'/n_eq n/a"
                    elif bound(r):
                        state = f"n'/n_eq ≥{num(c)}, a bound"
                    else:
                        ok = lo <= c <= hi
                        state = f"n'/n_eq {num(c)}{'' if ok else ', not closing'}"
                    amp.append(f"{name} at {q} q. (A_true {num(r['true_amplification'])}, "
                               f"{state})")
        text = "; ".join(amp) if amp else "none"
        lines.append(f"* `{t}`: {text}.")
    return lines


README = studylib.HERE.parent / "README.md"
GAN_BEGIN = (
    "<!-- gan:begin (generated by `python analysis/calo_study.py document` from "
    "analysis/results/calo_summary.json; tests/test_docs.py keeps them in step) -->"
)
GAN_END = "<!-- gan:end -->"
GAN_OBSERVABLES = ("e_total", "n_hit", "e_max", "x_centroid", "x_width", "f_core3x3")


def gan_block(summary: dict) -> str | None:
    """The README's GAN paragraph: the Bayesian GAN against the coupling flow, both VI k = 1 at
    the same training size, at 10 quantiles (None: the summary has no such pair)."""
    num = studydoc.num
    pts = summary["points"]
    gan = next((t for t, p in pts.items() if p["model"] == "gan" and p["method"] == "vi"), None)
    if gan is None:
        return None
    n = pts[gan]["n_train"]
    flow = next((t for t, p in pts.items() if p["model"] == "flow" and p["method"] == "vi"
                 and p.get("kl_factor") == pts[gan].get("kl_factor") and p["n_train"] == n), None)
    if flow is None:
        return None
    g, f = pts[gan]["observables"], pts[flow]["observables"]

    def at10(obs: dict, name: str) -> dict:
        return obs.get(name, {}).get("10") or {}

    names = [o for o in GAN_OBSERVABLES
             if at10(g, o).get("true_amplification") is not None
             and at10(f, o).get("true_amplification") is not None]
    if not names:
        return None

    def better(key: str, sign: float) -> list[str]:  # where the GAN's value is better
        return [o for o in names if at10(g, o).get(key) is not None
                and at10(f, o).get(key) is not None
                and sign * (at10(g, o)[key] - at10(f, o)[key]) > 0]

    def listed(xs: list[str]) -> str:
        return ", ".join(xs) if xs else "none"

    amp, cal = better("true_amplification", 1), better("mad", -1)
    rows = [(o, f"{num(g[o]['10']['true_amplification'])} / {num(g[o]['10']['mad'])}",
             f"{num(f[o]['10']['true_amplification'])} / {num(f[o]['10']['mad'])}")
            for o in names]
    top = {k: max(names, key=lambda o, v=v: v[o]["10"]["true_amplification"])
           for k, v in (("gan", g), ("flow", f))}
    wins, losses = len(amp), len(names) - len(amp)
    if g[top["gan"]]["10"]["true_amplification"] < 0.1:
        verdict = (
            "Every GAN sample here is worth less than a tenth of its training data: the GAN is "
            "a fast path through the whole pipeline (adversarial training, VI, generation), "
            "not a generator to trust."
        )
    elif wins > losses:
        verdict = "At this budget the GAN is the better generator of most of these observables."
    elif wins < losses:
        verdict = "The flow is the better generator of most of these observables: use it."
    else:
        verdict = "Neither generator is the better one on most of these observables."
    prose = (
        f"What the GAN is good for, from the calorimeter study's `{summary['budget']}` budget "
        f"(`analysis/CALO_RESULTS.md`): the Bayesian GAN (`{gan}`) ran its study point in "
        f"{num(pts[gan]['budget']['total_seconds'])} s against "
        f"{num(pts[flow]['budget']['total_seconds'])} s for the coupling flow (`{flow}`). "
        f"Its A_true is higher on {listed(amp)} and its calibration (MAD) better on "
        f"{listed(cal)}. Largest A_true: "
        f"{num(g[top['gan']]['10']['true_amplification'])} for the GAN ({top['gan']}), "
        f"{num(f[top['flow']]['10']['true_amplification'])} for the flow ({top['flow']}). "
        f"{verdict} A_true = n_eq/n / MAD at 10 quantiles, n = {num(n)}:"
    )
    lines = [
        GAN_BEGIN,
        *textwrap.wrap(prose, 99, break_on_hyphens=False),
        "",
        *studydoc.table(("observable", "GAN + VI", "flow + VI"), rows),
        GAN_END,
    ]
    return "\n".join(lines)


def write_gan_block(summary: dict, readme: Path = README) -> bool:
    """Replace the README's GAN block with :func:`gan_block`; False where there is none."""
    from calamp.outputs import write_section

    block = gan_block(summary)
    if block is None:
        return False
    write_section(readme, GAN_BEGIN, GAN_END, block)
    return True


def write_document(summary: dict) -> Path:
    """Write CALO_RESULTS.md (and the README's GAN block) from ``summary``."""
    if not write_gan_block(summary):
        print("[calo] README GAN block left as it is: the summary has no GAN and flow VI pair "
              "with 10-quantile results", file=sys.stderr)
    return studydoc.write(DOCUMENT, document(summary))


def main(argv: list[str] | None = None) -> int:
    study = studylib.Study("calo", __doc__, BUDGETS, POINTS, option="points", documented="standard")
    return study.main(
        argv,
        inputs={"--input": dict(type=Path, default=DATA, help="shower ROOT file (input contract)")},
        run=lambda args, tags: run(args.budget, tags, args.out, args.input, args.seed),
        summarise=lambda args: summarise(args.budget, args.out),
        figures=lambda args, summary: figures(summary, args.out, args.budget, args.figures),
        line=lambda tag, point: f"{tag:<24}" + studylib.cost_text(point),
        document=write_document,
    )


if __name__ == "__main__":
    raise SystemExit(main())
