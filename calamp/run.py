"""Command line: ``python -m calamp.run FILE.root [options]`` (also the ``calamp`` script).

Trains K Bayesian generators on the showers in FILE.root (or on the ring toy with
``--toy ring``), draws from their posteriors, fills per-draw histograms and writes amplification,
calibration and closure results to ``--out``. Bad input or options print one line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from calamp.cli import guarded
from calamp.config import METHODS, MODELS, PRESETS, ConfigError, RunConfig, load_toml, make_config

__all__ = ["main", "build_parser"]

_HELP = {
    "model": f"generator family: {', '.join(MODELS)} (default flow)",
    "method": f"Bayesian method: {', '.join(METHODS)} (default vi; oracle = truth samples "
    "as draws, a closure check that must give A = 1)",
    "kl_factor": "VI: KL factor k in loss = data + k·KL/n (default 1)",
    "kl_convention": "VI: 'sum' (true KL) or 'mean' (reference code's per-tensor mean)",
    "prior_scale": "VI and SG-MCMC: Gaussian prior N(0, s²) width of every weight (default 1)",
    "sigma": "AdamMCMC: proposal noise σ (default 0.1)",
    "sampler_lr": "AdamMCMC/SGLD/SGHMC step size (default 1e-3)",
    "friction": "SGHMC friction (default 0.1)",
    "inverse_temperature": "SG-MCMC: target exp(-λU) (default 1)",
    "networks": "K independent networks (default 5)",
    "draws": "s posterior draws per network (default 50)",
    "generated": "g generated events per draw (default 10000)",
    "train_steps": "(pre-)training steps per network",
    "batch_size": "training batch size",
    "learning_rate": "Adam learning rate",
    "lr_schedule": "learning-rate schedule: cosine (default) or constant",
    "vi_init_scale": "initial posterior std of the VI weights (default 1e-3)",
    "mcmc_steps": "SG-MCMC steps after pre-training incl. burn-in (0: burn-in + draws x thin)",
    "burn_in": "SG-MCMC steps discarded before the first draw (default 1000)",
    "mcmc_thin": "SG-MCMC steps between draws (0: 2 x measured autocorrelation time)",
    "max_thin": "upper bound of the measured thinning (default 100)",
    "hidden": "hidden units per layer",
    "ode_solver": "CNF integrator: dopri (adaptive) or rk4 (fixed steps)",
    "ode_steps": "CNF: rk4 steps (default 16)",
    "layers": "flow: coupling layers; cnf/gan: hidden layers",
    "observables": "comma-separated observables to histogram",
    "n_quantiles": "comma-separated numbers of quantile bins (per axis)",
    "truth_events": "size of the truth sample for binning and truth fractions",
    "truth": "auto | simulator | holdout",
    "holdout_fraction": "share of the file kept as finite truth when --truth holdout",
    "n_train": "training events per network (0: from the input)",
    "toy": "run on a toy instead of a file: ring",
    "tree": "TTree/RNTuple name in the input (default: auto-detect)",
    "branch": "cell-energy branch (default: energy)",
    "incident_branch": "incident-energy branch (default: incident_energy)",
    "seed": "master seed (default 1)",
    "chunk_size": "events per generation chunk",
    "write_samples": "write N generated showers per draw to samples.root",
    "bootstrap": "bootstrap replicas for errors (0: none)",
    "scheduler": "dask scheduler address for scale-out",
    "workers": "local worker processes for the networks (0: automatic, 1: this process)",
}
_SKIP = {"preset", "plots", "progress"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"calamp: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every :class:`~calamp.config.RunConfig` field is an option."""
    p = _Parser(prog="python -m calamp.run", description=__doc__.split("\n\n")[1])
    p.add_argument("input", nargs="?", help="input ROOT file with showers")
    p.add_argument("--out", default="calamp-results", help="output folder (default calamp-results)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--config", help="TOML file with options (command line wins)")
    p.add_argument("--quick", action="store_true", help="small preset (~2 min on 2 cores)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--no-plots",
        dest="plots",
        action="store_const",
        const=False,
        default=None,
        help="skip figures",
    )
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_const",
        const=False,
        default=None,
        help="no progress bars",
    )
    for f in dataclasses.fields(RunConfig):
        if f.name in _SKIP:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("int", int):
            kind = int
        elif f.type in ("float", float):
            kind = float
        else:
            kind = str
        p.add_argument(flag, dest=f.name, type=kind, default=None, help=_HELP.get(f.name))
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 2 bad input/option, 130 interrupted).

    ``calamp evaluate|report|simulate ...`` run :func:`calamp.evaluate.main`,
    :func:`calamp.report.main` or :func:`calamp.simulate.main` on the remaining arguments;
    anything else is the main job (``calamp FILE.root`` = ``python -m calamp.run FILE.root``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["evaluate"]:
        from calamp.evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    if argv[:1] == ["report"]:
        from calamp.report import main as report_main

        return report_main(argv[1:])
    if argv[:1] == ["simulate"]:
        from calamp.simulate import main as simulate_main

        return simulate_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a malformed option (one line already printed)
        return int(exc.code or 0)
    opts = {
        k: v
        for k, v in vars(args).items()
        if k not in ("input", "out", "overwrite", "resume", "config", "quick")
    }
    def job() -> None:
        file_opts = load_toml(args.config) if args.config else {}
        if args.quick:
            opts["preset"] = "quick"
        cfg = make_config(file_opts, opts)
        if args.input is None and cfg.toy is None:
            raise ConfigError("no input file given (pass FILE.root or --toy ring)")
        if args.input is not None and cfg.toy is not None:
            raise ConfigError(f"give either an input file or --toy {cfg.toy}, not both")
        from calamp.job import run_job

        run_job(
            cfg,
            input_path=args.input,
            out=Path(args.out),
            overwrite=args.overwrite,
            resume=args.resume,
        )

    return guarded(job, on_interrupt="interrupted; checkpoints are kept, continue with --resume")


if __name__ == "__main__":
    raise SystemExit(main())
