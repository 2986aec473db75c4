"""The command line of ``calamp evaluate`` (the parser is :func:`calamp.cli.build_parser`'s)."""

from __future__ import annotations

import argparse

from calamp.cli import main as calamp_main
from calamp.evaluate.core import evaluate
from calamp.evaluate.errors import EvaluateError

__all__ = ["add_arguments", "main", "run_command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``calamp evaluate SAMPLES --truth TRUTH --n-train N [...]``."""
    p.description = (
        "Amplification, calibration and closure of any Bayesian generator from its "
        "per-draw samples (ROOT with network/draw branches, or CaloChallenge HDF5)."
    )
    p.add_argument("samples", help="samples.root, samples.h5, or a folder network_K/draw_I.h5")
    p.add_argument(
        "--truth",
        required=True,
        help="truth showers (ROOT or HDF5 file), 'simulator', or a calamp results folder whose "
        "binnings and truth to reuse",
    )
    p.add_argument("--n-train", type=int, required=True, help="training showers per network")
    p.add_argument("--observables", default=None, help="comma-separated built-in observables")
    p.add_argument("--n-quantiles", default="5,10,20", help="comma-separated numbers of bins")
    p.add_argument("--out", default="calamp-evaluate", help="results folder")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation")
    p.add_argument("--shape", default=None, help="NY,NX of flat voxel vectors (HDF5)")
    p.add_argument(
        "--incident-energy",
        type=float,
        default=None,
        help="GeV, for samples without incident energies",
    )
    p.add_argument("--truth-events", type=int, default=200_000, help="simulator truth size")
    p.add_argument("--tree", default=None, help="tree of a ROOT samples file")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-plots", action="store_true", help="skip the figures")


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        msg = f"option {option}: expected comma-separated integers, got {text!r}"
        raise EvaluateError(msg) from None


def run_command(args: argparse.Namespace) -> None:
    """Evaluate the samples the parsed options name (raises ``EvaluateError``)."""
    from calamp.config import SHOWER_OBSERVABLES

    obs = None
    if args.observables:
        obs = tuple(o.strip() for o in args.observables.split(",") if o.strip())
        unknown = [o for o in obs if o not in SHOWER_OBSERVABLES and not o.startswith("cell_")]
        if unknown:
            msg = (
                f"option --observables: unknown {', '.join(unknown)} (known: "
                f"{', '.join(SHOWER_OBSERVABLES)}, cell_<iy>_<ix>)"
            )
            raise EvaluateError(msg)
    shape = None
    if args.shape:
        shape = _ints(args.shape, "--shape")
        if len(shape) != 2 or min(shape) < 3:
            msg = f"option --shape: expected NY,NX >= 3, got {args.shape!r}"
            raise EvaluateError(msg)
    evaluate(
        args.samples,
        args.truth,
        n_train=args.n_train,
        observables=obs,
        n_quantiles=_ints(args.n_quantiles, "--n-quantiles"),
        out=args.out,
        overwrite=args.overwrite,
        incident_energy=args.incident_energy,
        shape=shape,
        truth_events=args.truth_events,
        tree=args.tree,
        seed=args.seed,
        plots=not args.no_plots,
    )


def main(argv: list[str] | None = None, *, prog: str = "calamp evaluate") -> int:
    """Entry point of ``calamp evaluate`` (exit 0 ok, 2 bad input or option); the parser is
    :func:`calamp.cli.build_parser`'s."""
    return calamp_main(argv, prog=prog, command="evaluate")
