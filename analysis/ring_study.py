"""Reproduce arXiv:2408.00838 on the ring toy with calamp: calibration of VI (KL factor k) and
AdamMCMC (noise sigma), amplification vs number of quantiles, JSD closure.

Two steps, both resumable:

    python analysis/ring_study.py run    --budget cpu   # trains, draws, histograms (hours)
    python analysis/ring_study.py report --budget cpu   # figures, summary JSON, RING_RESULTS.md

``run`` calls :func:`calamp.pipeline.run_job` once per (method, hyperparameter) with
``--toy ring``; every run keeps its draws (``draws/``) and per-network histograms, so an
interrupted study continues where it stopped (``--resume`` semantics) and ``report`` never
retrains. Budgets trade statistical reach against CPU time; ``paper`` is the reference's
setting (a GPU-cluster budget), ``small`` what fits a 2-core CPU in about an hour.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parent) not in sys.path:  # imported from a file path (tests)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import studydoc  # noqa: E402  (result documents from the summary JSON)
import studylib  # noqa: E402  (the shared study code, next to this script)

# grid sides n (n_Q = n^2): the paper's list, cut where the budget's generated sample runs out
PAPER_GRIDS = (2, 3, 4, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100, 150, 200)

BUDGETS: dict[str, dict] = {
    # a few minutes: exercises every code path (tests, smoke runs)
    "ci": dict(
        networks=3,
        draws=8,  # the AdamMCMC configs run 2 chains of >= 4 draws (split-R-hat)
        generated=20_000,
        train_steps=300,
        n_train=2_000,
        truth_events=200_000,
        grids=(2, 3, 5, 10),
        mcmc_burn_in=20,
        mcmc_thin=3,
    ),
    # about an hour on 2 cores for the default configuration list
    "small": dict(
        networks=5,
        draws=20,
        generated=100_000,
        train_steps=10_000,
        n_train=10_000,
        truth_events=2_000_000,
        grids=(2, 3, 4, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100),
        mcmc_burn_in=300,
        mcmc_thin=10,
    ),
    # the CPU budget: the paper's statistics (K = 5, s = 50, n = 10,000, 20k training
    # steps, the 15 grids up to 200x200) with quadrature bin probabilities (no generation
    # noise); `generated` only applies to the oracle. The VI points take about 15-25 min each
    # on 2 cores; the documented budget.
    "cpu": dict(
        networks=5,
        draws=50,
        generated=1_000_000,
        train_steps=20_000,
        n_train=10_000,
        truth_events=2_000_000,
        grids=PAPER_GRIDS,
        mcmc_burn_in=9_000,
        mcmc_thin=200,
    ),
    # the reference: 50 draws, ~1000 events per cell at n = 200, 10^5-10^6 training steps
    "paper": dict(
        networks=5,
        draws=50,
        generated=40_000_000,
        train_steps=250_000,
        n_train=10_000,
        truth_events=10_000_000,
        grids=PAPER_GRIDS,
        mcmc_burn_in=25_000,
        mcmc_thin=1_000,
    ),
}

# (tag, options): the reference CNF with VI (k scan, both KL conventions) and AdamMCMC
# (sigma scan), the deterministic flows as extra generators, and the oracle as the check.
CONFIGS: dict[str, dict] = {
    "oracle": dict(method="oracle"),
    "cnf_vi_k1": dict(model="cnf", method="vi", kl_factor=1.0),
    "cnf_vi_k10": dict(model="cnf", method="vi", kl_factor=10.0),
    "cnf_vi_k100": dict(model="cnf", method="vi", kl_factor=100.0),
    "cnf_vi_k10_mean": dict(model="cnf", method="vi", kl_factor=10.0, kl_convention="mean"),
    "cnf_amcmc_s0.05": dict(model="cnf", method="adammcmc", sigma=0.05),
    "cnf_amcmc_s0.1": dict(model="cnf", method="adammcmc", sigma=0.1),
    "cnf_amcmc_s0.5": dict(model="cnf", method="adammcmc", sigma=0.5),
    # AdamMCMC on the coupling flow (pipeline ring size, 4 couplings of 2x64): its 2 chains
    # per network run batched in one step, 5.3 ms per chain-step at batch 256 against 60 ms
    # for the CNF's RK4 likelihood (benchmarks/RESULTS.md); the sigma scan that fits a CPU
    "flow_amcmc_s0.05": dict(
        model="flow", method="adammcmc", sigma=0.05, hidden=64, layers=4, chains=2
    ),
    "flow_amcmc_s0.1": dict(
        model="flow", method="adammcmc", sigma=0.1, hidden=64, layers=4, chains=2
    ),
    "flow_amcmc_s0.5": dict(
        model="flow", method="adammcmc", sigma=0.5, hidden=64, layers=4, chains=2
    ),
    "flow_vi_k1": dict(model="flow", method="vi", kl_factor=1.0, hidden=32, layers=4),
    "maf_amcmc_s0.1": dict(model="maf", method="adammcmc", sigma=0.1, hidden=32, layers=4),
}


# the reference values of arXiv:2408.00838 (amplification fits A = a n_Q^b)
REFERENCE = {
    "vi_k10": {"a": 0.0043, "a_err": 0.0029, "b": 0.99, "b_err": 0.07},
    "adammcmc_s0.1": {"a": 0.0121, "a_err": 0.0047, "b": 0.986, "b_err": 0.037},
    "best_calibrated": {"vi_k": 10, "adammcmc_sigma": 0.1},
}

# the goals for the study (ring VI best-calibrated k; AdamMCMC sigma = 0.1)
GOALS = {"b_max_deviation": 0.1, "b_err_max": 0.1, "vi_mean_mad_max": 0.06,
         "adammcmc_mad_max": 0.08, "closure_ratio_min": 0.7, "closure_ratio_max": 1.4}


def crossing(fit: dict | None) -> float | None:
    """n_Q at which the fitted A = a n_Q^b reaches 1 (None without a rising fit)."""
    if not fit or not fit.get("b") or fit["b"] <= 0 or not fit.get("a") or fit["a"] <= 0:
        return None
    return float((1.0 / fit["a"]) ** (1.0 / fit["b"]))


def goals_met(point: dict) -> dict:
    """Which of :data:`GOALS` a point meets (None: not measurable from its rows)."""
    fit = point.get("fit") or {}
    ratios = [r["closure_ratio"] for r in point["rows"] if r.get("closure_ratio") is not None]
    mad_max = GOALS["vi_mean_mad_max" if point["method"] == "vi" else "adammcmc_mad_max"]
    return {
        "b": None if not fit else bool(abs(fit["b"] - 1) <= GOALS["b_max_deviation"]
                                       and fit["b_err"] <= GOALS["b_err_max"]),
        "mad": bool(point["mean_mad"] <= mad_max),
        "closure": None if not ratios else bool(
            all(GOALS["closure_ratio_min"] <= r <= GOALS["closure_ratio_max"] for r in ratios)
        ),
    }


def study_config(tag: str, budget: str, seed: int = 1):
    """The :class:`~calamp.config.RunConfig` of one study point."""
    b = BUDGETS[budget]
    opts = dict(CONFIGS[tag])
    model = opts.pop("model", "cnf")
    hidden = opts.pop("hidden", 32)
    layers = opts.pop("layers", 3)
    base = dict(
        toy="ring",
        model=model,
        **studylib.budget_options(b),
        n_train=b["n_train"],
        n_quantiles=b["grids"],
        batch_size=1_000,
        hidden=hidden,
        layers=layers,
        learning_rate=1e-3,
        lr_schedule="constant",  # the reference's schedule and initial VI width
        vi_init_scale=0.0486,
        seed=seed,
        bootstrap=50,
        plots=False,
        progress=False,
        chunk_size=200_000,
        ode_solver="rk4",
        ode_steps=8,
    )
    # generators with a density (flow, maf, cnf): each draw's exact bin probabilities by
    # quadrature, no generation noise to subtract (benchmarks/RESULTS.md, "Quadrature");
    # `generated` then only applies to the oracle
    if opts.get("method") != "oracle" and b.get("quadrature", True):
        base["bin_probabilities"] = "quadrature"
    # AdamMCMC step: calamp's default 1e-4 (acceptance 0.3-0.4 on the ring flow; 1e-3, the
    # training rate, is rejected 95 % of the time: see RunConfig.sampler_lr)
    return studylib.run_config(base, opts, b, sampler_lr=1e-4)


def run(budget: str, tags: list[str], out: Path, seed: int) -> None:
    """Train/draw/fill every study point (resumable)."""
    jobs = ((tag, out / budget / tag, study_config(tag, budget, seed)) for tag in tags)
    studylib.run_points("ring", jobs)


def grid_keys(res: dict) -> list[tuple[int, str]]:
    """``(n, key)`` of a run's (r, phi) binnings (n x n quantiles), coarsest first."""
    return sorted((int(k.split("/q")[1]), k) for k in res["binnings"] if k.startswith("ring/"))


def power_law(n_q: np.ndarray, amp: np.ndarray, amp_err: np.ndarray) -> dict:
    """Weighted least-squares fit of log A = log a + b log n_Q; returns a, a_err, b, b_err."""
    x, y = np.log(n_q), np.log(amp)
    w = 1.0 / np.maximum(amp_err / amp, 1e-3) ** 2
    design = np.stack([np.ones_like(x), x], axis=1)
    cov = np.linalg.inv(design.T @ (design * w[:, None]))
    coef = cov @ design.T @ (w * y)
    resid = y - design @ coef
    chi2 = float(np.sum(w * resid**2))
    dof = max(1, len(x) - 2)
    scale = max(1.0, chi2 / dof)  # inflate errors when the points scatter more than their errors
    a = float(np.exp(coef[0]))
    return {
        "a": a,
        "a_err": float(a * np.sqrt(cov[0, 0] * scale)),
        "b": float(coef[1]),
        "b_err": float(np.sqrt(cov[1, 1] * scale)),
        "chi2_dof": chi2 / dof,
        "n_q_range": [float(n_q.min()), float(n_q.max())],
        "n_points": int(len(x)),
    }


def summarise(budget: str, out: Path) -> dict:
    """Collect every finished study point into the machine-readable summary."""
    summary = studylib.new_summary(
        budget, BUDGETS, reference={k: dict(v) for k, v in REFERENCE.items()}
    )
    folders = (out / budget / tag for tag in CONFIGS)
    for folder, res in studylib.reanalysed(folders, plots=False):
        rows = []
        for g, key in grid_keys(res):
            b = res["binnings"][key]
            f = np.asarray(b["amplification"]["factor"], float)
            rows.append(
                {
                    "grid": g,
                    "n_q": g * g,
                    "amp_mean": b["amplification"]["mean_factor"],
                    "amp_min": float(np.min(f)),
                    "amp_max": float(np.max(f)),
                    "amp_low": b["amplification"]["mean_factor_low"],
                    "amp_high": b["amplification"]["mean_factor_high"],
                    "corrected": not b["amplification"]["combined"]["is_bound"],
                    "mad": b["coverage"]["mad"],
                    "mad_r": (b["coverage"]["mad_axis"] or [None])[0],
                    "mad_phi": (b["coverage"]["mad_axis"] or [None, None])[1],
                    "n_prime": b["closure"]["n_prime_mean"],
                    "n_eq": b["closure"]["n_eq_mean"],
                    "n_prime_is_bound": b["closure"]["n_prime_is_bound"],
                    "n_eq_is_bound": b["closure"]["n_eq_is_bound"],
                    # n'/n_eq where both are estimates (not bounds)
                    "closure_ratio": (
                        b["closure"]["n_prime_mean"] / b["closure"]["n_eq_mean"]
                        if b["closure"]["n_eq_mean"] and b["closure"]["n_prime_mean"]
                        and not b["closure"]["n_eq_is_bound"]
                        and not b["closure"]["n_prime_is_bound"]
                        else None
                    ),
                    "verdict": b["closure"]["verdict"],
                }
            )
        # the paper's fit range, restricted to binnings where the noise-corrected estimate is
        # valid (elsewhere the raw estimate is only a lower bound capped near g)
        fit_rows = [
            r for r in rows if 225 <= r["n_q"] <= 40_000 and r["amp_mean"] > 0 and r["corrected"]
        ]
        fit = None
        if len(fit_rows) >= 3:
            nq = np.array([r["n_q"] for r in fit_rows], float)
            amp = np.array([r["amp_mean"] for r in fit_rows])
            # symmetric error from the 68 % interval of the combined estimate
            err = np.array(
                [
                    0.5 * ((r["amp_high"] or np.inf) - r["amp_low"])
                    if r["amp_high"] is not None
                    else r["amp_mean"]
                    for r in fit_rows
                ]
            )
            fit = power_law(nq, amp, err)
        summary["points"][folder.name] = studylib.point_summary(
            res,
            {"fit": fit, "rows": rows, "mad_by_grid": {str(r["grid"]): r["mad"] for r in rows}},
            [r["mad"] for r in rows],
            fields=("model", "method", "kl_factor", "kl_convention", "sigma"),
        )
    studylib.add_best_calibrated(summary, "cnf")
    for pt in summary["points"].values():
        if pt["method"] == "oracle":  # the check of the statistics: A = 1, no goals
            continue
        if pt.get("fit"):
            pt["fit"]["n_q_at_amplification_1"] = crossing(pt["fit"])
        pt["goals_met"] = goals_met(pt)
    for ref in summary["reference"].values():
        if "b" in ref:
            ref["n_q_at_amplification_1"] = crossing(ref)
    summary["goals"] = GOALS
    return summary


def figures(budget: str, out: Path, summary: dict, fig_dir: Path) -> list[Path]:
    """The paper's figures from the stored results (HEP style)."""
    import matplotlib.pyplot as plt

    from calamp import plotting

    plotting.use_style()
    made: list[Path] = []
    pts = summary["points"]
    colors = {t: f"C{i % 10}" for i, t in enumerate(pts)}

    # 1. one bin: CDF of h_j over draws per network, truth and the 68% credible set
    tag = next((t for t in ("cnf_vi_k10", "cnf_amcmc_s0.1") if t in pts), next(iter(pts), None))
    if tag is not None:
        with np.load(out / budget / tag / "results.npz") as data:
            key = (
                "ring/q10"
                if "fractions/ring/q10" in data.files
                else next(
                    k[len("fractions/") :] for k in data.files if k.startswith("fractions/ring/")
                )
            )
            fr, truth = data[f"fractions/{key}"], data[f"truth/{key}"]
        j = int(np.argmax(truth))  # any bin; the first of the largest truth
        fig, ax = plt.subplots()
        for k in range(fr.shape[0]):
            v = np.sort(fr[k, :, j])
            ax.step(
                v,
                np.arange(1, len(v) + 1) / len(v),
                where="post",
                color=f"C{k}",
                label=f"network {k}",
            )
            lo, hi = np.quantile(fr[k, :, j], [0.16, 0.84])
            ax.axvspan(lo, hi, color=f"C{k}", alpha=0.08)
        ax.axvline(truth[j], color="k", lw=2, label="truth")
        ax.set_xlabel(rf"$\hat h_j$ (bin {j} of {key})")
        ax.set_ylabel("Cumulative fraction of draws")
        ax.legend(fontsize=10)
        plotting.label_axes(ax, "Simulation", tag)
        made.append(plotting.save_figure(fig, fig_dir / "one_bin_cdf")[1])

    # 2. calibration curves for 5x5, 10x10, 50x50 grids
    for g in (5, 10, 50):
        fig, ax = plt.subplots()
        drawn = False
        for t in pts:
            b = studylib.load_results(out / budget / t)["binnings"].get(f"ring/q{g}")
            if b is None:
                continue
            cov = b["coverage"]
            band = (cov["band_low"], cov["band_high"]) if cov.get("band_low") else None
            plotting.plot_calibration(
                np.asarray(cov["levels"]),
                np.asarray(cov["empirical"]),
                band=band,
                label=f"{t} ({cov['mad']:.3f})",
                ax=ax,
                color=colors[t],
            )
            drawn = True
        if drawn:
            ax.legend(fontsize=8, loc="upper left")
            plotting.label_axes(ax, "Simulation", f"ring, {g}x{g} quantiles")
            made.append(plotting.save_figure(fig, fig_dir / f"calibration_{g}x{g}")[1])
        else:
            plt.close(fig)

    # 3. MAD, MAD_r, MAD_phi vs n_Q
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), sharey=True)
    for t, p in pts.items():
        nq = [r["n_q"] for r in p["rows"]]
        for ax, key in zip(axes, ("mad", "mad_r", "mad_phi"), strict=True):
            ax.plot(nq, [r[key] for r in p["rows"]], "o-", color=colors[t], label=t, ms=4)
    for ax, name in zip(axes, ("MAD", r"MAD$_r$", r"MAD$_\phi$"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("Number of quantiles $n_Q$")
        ax.set_ylabel(name)
    axes[0].legend(fontsize=8)
    made.append(plotting.save_figure(fig, fig_dir / "mad_vs_nq")[1])

    # 4. signed radial coverage deviation on the finest grid
    fig, ax = plt.subplots()
    for t in pts:
        res = studylib.load_results(out / budget / t)
        b = res["binnings"][grid_keys(res)[-1][1]]
        prof = b["coverage"].get("profile")
        if prof is None:
            continue
        edges = np.asarray(b["edges"][0])
        centers = 0.5 * (edges[:-1] + edges[1:])
        sel = centers <= 7.0
        ax.plot(centers[sel], np.asarray(prof, float)[sel], "-", color=colors[t], label=t)
    ax.axhline(0, color="grey", lw=1)
    ax.set_xlabel("$r$")
    ax.set_ylabel(r"Signed coverage deviation $\langle \bar c - c\rangle$")
    ax.legend(fontsize=8)
    plotting.label_axes(ax, "Simulation", "finest (r, phi) grid of the budget")
    made.append(plotting.save_figure(fig, fig_dir / "radial_coverage")[1])

    # 5. amplification vs n_Q with the power-law fit
    fig, ax = plt.subplots()
    for t, p in pts.items():
        nq = np.array([r["n_q"] for r in p["rows"]], float)
        plotting.plot_amplification_vs_bins(
            nq,
            np.array([r["amp_mean"] for r in p["rows"]]),
            lo=np.array([r["amp_min"] for r in p["rows"]]),
            hi=np.array([r["amp_max"] for r in p["rows"]]),
            label=t,
            ax=ax,
        )
        if p["fit"]:
            xx = np.geomspace(*p["fit"]["n_q_range"], 20)
            ax.plot(xx, p["fit"]["a"] * xx ** p["fit"]["b"], ":", color="k", lw=1)
    ax.legend(fontsize=8)
    plotting.label_axes(ax, "Simulation", "ring; dotted: fits a n_Q^b")
    made.append(plotting.save_figure(fig, fig_dir / "amplification_vs_nq")[1])

    # 6. JSD closure vs n_Q
    fig, ax = plt.subplots()
    for t, p in pts.items():
        nq = [r["n_q"] for r in p["rows"]]
        n = p["n_train"]
        ax.plot(nq, [r["n_prime"] / n for r in p["rows"]], "o-", color=colors[t], label=f"{t} n'")
        ax.plot(nq, [r["n_eq"] / n for r in p["rows"]], "s--", color=colors[t], ms=4)
    studylib.log_axes(
        ax,
        "Number of quantiles $n_Q$",
        "Amplification (solid: Bayesian n'/n, dashed: JSD n_eq/n)",
        fontsize=7,
    )
    made.append(plotting.save_figure(fig, fig_dir / "closure_vs_nq")[1])

    # 7. per-bin amplification on the finest grid of the headline VI point, as an (r, phi) map
    if tag is not None:
        res = studylib.load_results(out / budget / tag)
        keys = grid_keys(res)
        g, key = keys[len(keys) // 2]
        b = res["binnings"][key]
        per_bin = np.asarray(
            [np.nan if v is None else v for v in b["amplification"]["per_bin_mean"]], float
        ).reshape(g, g)
        fig, ax = plt.subplots()
        im = ax.imshow(
            per_bin.T / res["data"]["n_train"],
            origin="lower",
            aspect="auto",
            norm=plt.matplotlib.colors.LogNorm(),
        )
        fig.colorbar(im, ax=ax, label="per-bin amplification $n'_j/n$")
        ax.set_xlabel("r quantile index")
        ax.set_ylabel(r"$\phi$ quantile index")
        plotting.label_axes(ax, "Simulation", f"{tag}, {g}x{g}")
        made.append(plotting.save_figure(fig, fig_dir / "amplification_per_bin")[1])
    return made


DOCUMENT = Path(__file__).resolve().parent / "RING_RESULTS.md"
MCMC_POINT = Path(__file__).resolve().parent / "results" / "ring_adammcmc_point.json"


def _setting(pt: dict) -> str:
    if pt["method"] == "vi":
        return f"VI k = {studydoc.num(pt['kl_factor'])} ({pt.get('kl_convention', 'sum')} KL)"
    if pt["method"] in ("adammcmc", "sgld", "sghmc"):
        return f"{pt['method']} σ = {studydoc.num(pt['sigma'])}"
    return pt["method"]


READING_CPU = """\
## Reading (by hand; the figures are in the tables below)

* The oracle is the check of the statistics: its amplification is one at every grid. Its
  coverage is calibrated while the training set fills the cells; on the finest grids, with more
  cells than training events, most cells hold no training event, the bootstrap posterior puts
  no mass there and the truth falls outside every draw: a limit of the bootstrap as a
  posterior, not of the estimator (networks have a smooth density everywhere).
* VI with the true (summed) KL: the amplification rises with the number of quantiles, and the
  larger the KL factor the wider the posterior (under-confident, n' below n_eq) and the flatter
  the rise; the smallest factor is the best calibrated but still misses the MAD goal.
* VI with the reference code's per-tensor mean KL (`cnf_vi_k10_mean`) is the paper's setting:
  its power law and the point where A crosses one are close to the paper's VIB fit, while its
  calibration is over-confident on the fine grids (n' above n_eq): the paper's fit does not
  test calibration, the MAD does.
* The AdamMCMC points (the paper's other half) are not run at this budget yet: on the CNF
  every sampler step costs an ODE solve: from the measured step cost, an hour or more per point
  on this CPU (benchmarks/RESULTS.md); the coupling-flow AdamMCMC point below is from the main
  job.
"""


def _status(summary: dict) -> str:
    """What the summary's runs are, and which study points they lack (no figures)."""
    missing = [t for t in CONFIGS if t not in summary["points"]]
    if summary["budget"] != "cpu":
        return (
            "Status: these runs used the statistics and generation of their day (sampled bins "
            "with multinomial noise; the summary's fields are the ones it wrote), not the "
            "quadrature bin probabilities and the study settings of today's `ring_study.py`; "
            "the rerun at the issue's budget is pending, and until then no conclusion below is "
            "final."
        )
    text = (
        "Status: runs of today's code at the `cpu` budget (the paper's statistics; every "
        "generator's bin probabilities by quadrature of its density, so no generation noise; "
        "the oracle counts generated events)."
    )
    if missing:
        text += " Not run yet: " + ", ".join(f"`{t}`" for t in missing) + "."
    return text


def document(summary: dict, mcmc_point: dict | None = None) -> str:
    """RING_RESULTS.md from the summary JSON (and the AdamMCMC point's JSON): every number in
    it is a number of those files (``tests/test_docs.py``)."""
    num = studydoc.num
    budget = summary["budget"]
    lines = [
        "# Ring toy: calamp against the reference paper",
        "",
        "Generated by `python analysis/ring_study.py document` from "
        "`analysis/results/ring_summary.json` (written by `python analysis/ring_study.py report "
        f"--budget {budget}` from the runs of `python analysis/ring_study.py run --budget "
        f"{budget}`); the AdamMCMC section from `analysis/results/ring_adammcmc_point.json`. "
        "`tests/test_docs.py` checks that every number here is in those files. Figures: "
        "`analysis/figures/ring/`.",
        "",
        _status(summary),
        "",
        f"## Budget `{budget}` (as run)",
        "",
        *studydoc.settings_table(summary["budget_settings"]),
        "",
        "## Power-law fits A = a·n_Q^b (over the paper's n_Q range, where n' is an estimate "
        "and not a bound)",
        "",
    ]
    ref = summary.get("reference") or {}
    rows = []
    for key, r in ref.items():
        if isinstance(r, dict) and "b" in r:
            rows.append((f"paper: {key}", "–", f"{num(r['a'])} ± {num(r['a_err'])}",
                         f"{num(r['b'])} ± {num(r['b_err'])}", "–", "–", "–", "–"))
    for tag, pt in summary["points"].items():
        fit = pt.get("fit") or {}
        rng = fit.get("n_q_range") or [None, None]
        rows.append((
            f"`{tag}`", _setting(pt),
            f"{num(fit.get('a'))} ± {num(fit.get('a_err'))}" if fit else "no fit",
            f"{num(fit.get('b'))} ± {num(fit.get('b_err'))}" if fit else "no fit",
            f"{num(rng[0])}–{num(rng[1])} ({num(fit.get('n_points'))})" if fit else "–",
            num(pt.get("mean_mad")),
            num((pt.get("budget") or {}).get("total_seconds")),
            num((pt.get("budget") or {}).get("train_steps")),
        ))
    lines += studydoc.table(
        ("point", "setting", "a", "b", "n_Q range (points)", "mean MAD", "wall s", "steps"),
        rows,
    )
    best = summary.get("best_calibrated") or {}
    if best:
        lines += ["", "Best-calibrated setting per method (smallest mean MAD): "
                  + ", ".join(f"{m}: `{t}`" for m, t in best.items()) + "."]
    if budget == "cpu":
        lines += ["", READING_CPU.rstrip("\n")]
    if "goals" in summary:
        g = summary["goals"]
        lines += [
            "", "## Against the paper and the goals", "",
            f"Goals: b within {num(g['b_max_deviation'])} of 1 with a fit error at most "
            f"{num(g['b_err_max'])}; mean MAD at most {num(g['vi_mean_mad_max'])} (VI) or "
            f"{num(g['adammcmc_mad_max'])} (AdamMCMC); n'/n_eq within "
            f"[{num(g['closure_ratio_min'])}, {num(g['closure_ratio_max'])}] at every n_Q where "
            "both are estimates. n_Q at A = 1 is where the fit crosses 1 (the paper's, from its "
            "a and b).", "",
        ]
        ref_rows = [(f"paper: {k}", num(r.get("n_q_at_amplification_1")), "–", "–", "–")
                    for k, r in ref.items() if isinstance(r, dict) and "b" in r]

        def met(v: bool | None) -> str:
            return "n/a" if v is None else ("yes" if v else "no")

        rows = ref_rows + [
            (f"`{tag}`", num((pt.get("fit") or {}).get("n_q_at_amplification_1")),
             met(pt["goals_met"]["b"]), met(pt["goals_met"]["mad"]),
             met(pt["goals_met"]["closure"]))
            for tag, pt in summary["points"].items() if "goals_met" in pt
        ]
        lines += studydoc.table(("point", "n_Q at A = 1", "b goal", "MAD goal", "closure goal"),
                                rows)
    lines += ["", "## Per grid", "",
              "A = n'/n mean over networks [min, max]; MAD of the calibration curve and its "
              "radial and angular parts; n' and n_eq (JSD closure) of the posterior mean (≥: "
              "only a lower bound); n'/n_eq where both are estimates.", ""]
    for tag, pt in summary["points"].items():
        lines += [f"### `{tag}`: {pt['model']} {_setting(pt)}", ""]
        lines += studydoc.table(
            ("grid", "n_Q", "A [min, max]", "MAD", "MAD_r", "MAD_φ", "n'", "n_eq", "n'/n_eq",
             "verdict"),
            (
                (f"{r['grid']}×{r['grid']}", r["n_q"],
                 f"{num(r['amp_mean'])} [{num(r['amp_min'])}, {num(r['amp_max'])}]"
                 + ("" if r.get("corrected", True) else " (bound)"),
                 num(r["mad"]), num(r.get("mad_r")), num(r.get("mad_phi")),
                 ("≥" if r.get("n_prime_is_bound") else "") + num(r["n_prime"]),
                 ("≥" if r.get("n_eq_is_bound") else "") + num(r["n_eq"]),
                 num(r.get("closure_ratio")), r["verdict"])
                for r in pt["rows"]
            ),
        )
        lines.append("")
    if mcmc_point is not None:
        import ring_mcmc_point

        lines += ["## AdamMCMC σ = 0.1 on the coupling flow (main job)", "",
                  ring_mcmc_point.render(mcmc_point), ""]
    figs = studydoc.relative(summary.get("figures") or [])
    if figs:
        lines += ["## Figures", ""] + [f"* `{f}`" for f in figs]
    return "\n".join(lines)


def write_document(summary: dict) -> Path:
    """Write RING_RESULTS.md from ``summary`` and the AdamMCMC point's JSON."""
    import json

    point = json.loads(MCMC_POINT.read_text()) if MCMC_POINT.exists() else None
    return studydoc.write(DOCUMENT, document(summary, point))


def fit_line(tag: str, point: dict) -> str:
    """A point's line in the printed report: power-law fit, mean MAD, wall time."""
    fit = point["fit"] or {}
    return (
        f"{tag:<18} a={fit.get('a', float('nan')):.3g}±{fit.get('a_err', float('nan')):.2g}"
        f" b={fit.get('b', float('nan')):.3f}±{fit.get('b_err', float('nan')):.3f}"
        + studylib.cost_text(point)
    )


def main(argv: list[str] | None = None) -> int:
    study = studylib.Study("ring", __doc__, BUDGETS, CONFIGS, option="configs", documented="cpu")
    return study.main(
        argv,
        option_help=f"comma-separated study points (default all: {', '.join(CONFIGS)})",
        run=lambda args, tags: run(args.budget, tags, args.out, args.seed),
        summarise=lambda args: summarise(args.budget, args.out),
        figures=lambda args, summary: figures(args.budget, args.out, summary, args.figures),
        line=fit_line,
        document=write_document,
    )


if __name__ == "__main__":
    raise SystemExit(main())
