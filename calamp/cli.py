"""The calamp command line: one parser with the commands ``run`` (the default), ``evaluate``,
``report`` and ``simulate``, and the error contract they all share.

``calamp FILE.root [options]`` = ``calamp run FILE.root [options]`` = ``python -m calamp.run
FILE.root [options]``; ``calamp evaluate|report|simulate ...`` are the other commands (also
``python -m calamp.evaluate|report|simulate ...``). Each command module contributes
``add_arguments(parser)`` and ``run_command(args)``; the simulator's command line lives here,
so that :mod:`calamp.simulate` stays numerical.

Errors: our own (a bad option or value, bad input, a refused action) are one line
``calamp: error: <message>`` on stderr and exit code 2, whether argparse or the command finds
them; Ctrl-C is exit code 130 with a hint; anything else is a bug and keeps its traceback.
Command modules are imported when the parser is built, TensorFlow only when a job starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

__all__ = ["CalampParser", "build_parser", "guarded", "main"]

DEFAULT_COMMAND = "run"


def guarded(body: Callable[[], Any], *, on_interrupt: str = "interrupted") -> int:
    """Run ``body()`` and return the process exit code (0, 2 or 130).

    ``ConfigError`` (bad option) and ``CalampError`` (bad input, refused action) print
    ``calamp: error: <message>`` (on one line) and give 2; ``KeyboardInterrupt`` prints
    ``calamp: <on_interrupt>`` and gives 130.
    """
    try:
        body()
    except KeyboardInterrupt:
        print(f"calamp: {on_interrupt}", file=sys.stderr)
        return 130
    except Exception as err:
        from calamp.config import ConfigError
        from calamp.io import CalampError

        if isinstance(err, ConfigError | CalampError):
            print(f"calamp: error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2
        raise
    return 0


class CalampParser(argparse.ArgumentParser):
    """An argument parser whose errors (unknown option, bad type, missing argument) raise
    :class:`~calamp.config.ConfigError`, so that :func:`guarded` reports them like any other.

    On the top-level parser, ``default_command`` is put in front of arguments that do not start
    with a command (``calamp FILE.root`` = ``calamp run FILE.root``) and ``fixed_command`` in
    front of all of them (``python -m calamp.simulate ...`` = ``calamp simulate ...``).
    """

    default_command: str | None = None
    fixed_command: str | None = None
    commands: dict[str, argparse.ArgumentParser]
    handlers: dict[str, _Command]

    def error(self, message: str):  # type: ignore[override]
        from calamp.config import ConfigError

        raise ConfigError(message)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self.default_command is not None or self.fixed_command is not None:
            args = list(sys.argv[1:] if args is None else args)
            if self.fixed_command is not None:
                args = [self.fixed_command, *args]
            elif not args or args[0] not in {*self.commands, "-h", "--help"}:
                args = [self.default_command, *args]
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        text = super().format_help()
        if self.default_command is not None and self.fixed_command is None:
            default = self.commands[self.default_command]
            text += f"\nwithout a command, {self.default_command!r}:\n\n{default.format_help()}"
        return text


class _Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]
    on_interrupt: str = "interrupted"


def _commands() -> dict[str, _Command]:
    """The commands, in the order ``--help`` lists them (their modules load here)."""
    from calamp.evaluate import add_arguments as evaluate_arguments
    from calamp.evaluate import run_command as evaluate_command
    from calamp.report import add_arguments as report_arguments
    from calamp.report import run_command as report_command
    from calamp.run import ON_INTERRUPT as RUN_INTERRUPTED
    from calamp.run import add_arguments as run_arguments
    from calamp.run import run_command

    return {
        "run": _Command(
            "train K Bayesian generators on FILE.root (or --toy ring) and analyse their "
            "posterior draws (the default command)",
            run_arguments,
            run_command,
            RUN_INTERRUPTED,
        ),
        "evaluate": _Command(
            "amplification, calibration and closure of any generator from its per-draw samples",
            evaluate_arguments,
            evaluate_command,
        ),
        "report": _Command(
            "redraw the figures of a results folder", report_arguments, report_command
        ),
        "simulate": _Command(
            "simulate photon showers and write them to a ROOT file",
            add_simulate_arguments,
            run_simulate,
        ),
    }


def build_parser(prog: str = "calamp", *, command: str | None = None) -> CalampParser:
    """The one parser of every calamp command line.

    Args:
        prog: the program name in usage lines (``calamp``, ``python -m calamp.run``).
        command: make the parser one command's own entry point (``python -m calamp.simulate``
            is ``build_parser("python -m calamp.simulate", command="simulate")``): every
            argument list goes to that command, whose usage line names ``prog``.
    """
    commands = _commands()
    if command is not None and command not in commands:
        raise ValueError(f"unknown command {command!r} (known: {', '.join(commands)})")
    parser = CalampParser(
        prog=prog,
        usage=f"%(prog)s [-h] [{{{','.join(commands)}}}] ...",
        description="Bayesian amplification and calibration for generative calorimeter "
        "simulators. Without a command the arguments go to 'run' "
        f"({prog} FILE.root = {prog} run FILE.root).",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", prog=prog, parser_class=CalampParser
    )
    parser.commands = {}
    parser.handlers = commands
    for name, cmd in commands.items():
        extra = {"prog": prog} if name == command else {}
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, **extra)
        cmd.add_arguments(p)
        parser.commands[name] = p
    if command is None:
        parser.default_command = DEFAULT_COMMAND
    else:
        parser.fixed_command = command
    return parser


def main(
    argv: Sequence[str] | None = None, *, prog: str = "calamp", command: str | None = None
) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run its command; returns the exit code
    (0 ok or ``--help``, 2 bad option or input with one line on stderr, 130 interrupted).

    ``prog`` and ``command`` are those of :func:`build_parser`.
    """
    parser = build_parser(prog, command=command)
    parsed: list[argparse.Namespace] = []
    try:
        code = guarded(lambda: parsed.append(parser.parse_args(argv)))
    except SystemExit as done:  # --help
        return int(done.code or 0)
    if code:
        return code
    args = parsed[0]
    cmd = parser.handlers[args.command]
    return guarded(lambda: cmd.run(args), on_interrupt=cmd.on_interrupt)


# ------------------------------------------------------------------------------------------------
# calamp simulate (the computation is calamp.simulate's)
# ------------------------------------------------------------------------------------------------
def add_simulate_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``calamp simulate --n N --out file.root [options]``."""
    p.description = (
        "Simulate 10x10 photon showers (GFlash-style) and write them to a ROOT file."
    )
    p.add_argument("--n", type=int, required=True, help="number of showers")
    p.add_argument("--out", required=True, help="output ROOT file")
    p.add_argument("--energy", type=float, default=50.0, help="incident energy in GeV (50)")
    p.add_argument("--seed", type=int, default=1, help="random seed (1)")
    p.add_argument("--tree", default="showers", help="tree / RNTuple name (showers)")
    p.add_argument("--rntuple", action="store_true", help="write an RNTuple instead of a TTree")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run_simulate(args: argparse.Namespace) -> None:
    """Simulate ``args.n`` showers and write them to ``args.out``."""
    from calamp.config import ConfigError
    from calamp.io import CalampError, write_showers
    from calamp.simulate import photon_showers, provenance

    if args.n < 1:
        raise ConfigError(f"argument --n: must be >= 1, got {args.n}")
    if args.seed < 0:
        raise ConfigError(f"argument --seed: must be >= 0, got {args.seed}")
    try:
        showers = photon_showers(args.n, args.energy, args.seed)
    except ValueError as err:  # the simulator's own check of the energy (n and seed are above)
        raise ConfigError(f"argument --energy: {err}") from None
    try:
        write_showers(
            args.out,
            showers,
            tree=args.tree,
            overwrite=args.overwrite,
            rntuple=args.rntuple,
            provenance=provenance(args.energy, args.seed, args.n),
        )
    except (ValueError, OSError) as err:
        if isinstance(err, CalampError):
            raise
        raise CalampError(f"cannot write {args.out}: {err}") from None
    print(f"wrote {args.n} showers of {args.energy:g} GeV to {args.out} ({args.tree})")
