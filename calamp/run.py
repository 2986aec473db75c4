"""The main job: ``calamp [run] FILE.root [options]`` = ``python -m calamp.run FILE.root``.

Trains K Bayesian generators on the showers in FILE.root (or on the ring toy with
``--toy ring``), draws from their posteriors, fills per-draw histograms and writes amplification,
calibration and closure results to ``--out``. Bad input or options print one line and exit 2.

The parser and the other commands (``calamp evaluate|report|simulate``) are :mod:`calamp.cli`'s;
this module contributes the options (:func:`add_arguments`) and the job (:func:`run_command`).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from calamp.cli import build_parser as calamp_parser
from calamp.cli import main as calamp_main
from calamp.config import METHODS, MODELS, PRESETS, ConfigError, RunConfig, load_toml, make_config

__all__ = ["ON_INTERRUPT", "add_arguments", "build_parser", "main", "run_command"]

_HELP = {
    "model": f"generator family: {', '.join(MODELS)} (default flow)",
    "method": f"Bayesian method: {', '.join(METHODS)} (default vi; oracle = truth samples "
    "as draws, a closure check that must give A = 1)",
    "kl_factor": "VI: KL factor k in loss = data + k·KL/n (default 1)",
    "kl_convention": "VI: 'sum' (true KL) or 'mean' (reference code's per-tensor mean)",
    "prior_scale": "VI and SG-MCMC: Gaussian prior N(0, s²) width of every weight (default 1)",
    "sigma": "AdamMCMC: proposal noise σ (default 0.1)",
    "sampler_lr": "AdamMCMC/SGLD/SGHMC step size (default 0: AdamMCMC 1e-4, SGLD/SGHMC "
    "1e-3)",
    "friction": "SGHMC friction (default 0.1)",
    "inverse_temperature": "SG-MCMC: target exp(-λU) (default 1)",
    "mh_noise": "AdamMCMC minibatch Metropolis-Hastings: none (default: the plain minibatch "
    "ratio, as the reference code; samples wider than the posterior) or penalty (exact: corrects "
    "the acceptance for the minibatch noise; needs small steps)",
    "networks": "K independent networks (default 5)",
    "draws": "s posterior draws per network (default 50)",
    "generated": "g generated events per draw (default 10000)",
    "bin_probabilities": "sampled (count generated events, default) or quadrature (ring: exact "
    "bin probabilities of each draw's density, no generation noise)",
    "generation_noise": "independent (default: own latent noise per draw) or common (common "
    "random numbers: the same noise for every draw of a network; exact n' with few events, "
    "coverage judged only where g >= 10 n')",
    "centroid_features": "showers: add the centroid (x, y) as two features smeared by this "
    "many cells (e.g. 0.017; default 0: off)",
    "train_steps": "(pre-)training steps per network",
    "batch_size": "training batch size",
    "learning_rate": "Adam learning rate",
    "lr_schedule": "learning-rate schedule: cosine (default) or constant",
    "vi_init_scale": "initial posterior std of the VI weights (default 1e-3)",
    "vi_scale_lr": "learning rate of the VI widths as a multiple of --learning-rate (default 1)",
    "mcmc_steps": "SG-MCMC steps after pre-training incl. burn-in (0: burn-in + draws x thin)",
    "burn_in": "SG-MCMC steps discarded before the first draw (default 1000)",
    "mcmc_thin": "SG-MCMC steps between draws (0: 2 x measured autocorrelation time)",
    "max_thin": "upper bound of the measured thinning (default 100)",
    "chains": "SG-MCMC: C chains per network, s/C draws each, with between-chain R-hat (default 1)",
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


ON_INTERRUPT = "interrupted; checkpoints are kept, continue with --resume"
_FIELDS = {f.name for f in dataclasses.fields(RunConfig)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``calamp run``; every :class:`~calamp.config.RunConfig` field is one."""
    p.description = __doc__.split("\n\n")[1]
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


def run_command(args: argparse.Namespace) -> None:
    """Run the main job the parsed options describe (raises ``ConfigError``/``CalampError``)."""
    opts = {k: v for k, v in vars(args).items() if k in _FIELDS}
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


def build_parser(prog: str = "python -m calamp.run") -> argparse.ArgumentParser:
    """The calamp argument parser (:func:`calamp.cli.build_parser`): arguments that do not start
    with a command (``evaluate``, ``report``, ``simulate``, ``run``) are those of ``run``, where
    every :class:`~calamp.config.RunConfig` field is an option. Its errors raise ``ConfigError``.
    """
    return calamp_parser(prog)


def main(argv: list[str] | None = None, *, prog: str = "calamp") -> int:
    """Entry point; returns the process exit code (0 ok, 2 bad input/option, 130 interrupted).

    ``calamp evaluate|report|simulate ...`` run those commands (:mod:`calamp.cli`); anything
    else is the main job (``calamp FILE.root`` = ``calamp run FILE.root`` = ``python -m
    calamp.run FILE.root``).
    """
    return calamp_main(argv, prog=prog)


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m calamp.run"))
