"""Throughput of the parametric shower simulator and of shower file I/O.

Usage: ``python benchmarks/bench_simulate.py [--n 100000] [--repeat 3] [--energy 50]``.
Prints a table of median wall times over ``--repeat`` runs and the showers per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from calamp.io import read_showers, write_showers
from calamp.simulate import CaloConfig, photon_showers


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="showers per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    parser.add_argument("--energy", type=float, default=50.0, help="incident energy in GeV")
    args = parser.parse_args(argv)

    rows = []
    for n_spots in (100, 200, 400):
        cfg = CaloConfig(n_spots=n_spots)
        t = _median_time(
            lambda cfg=cfg: photon_showers(args.n, args.energy, 1, config=cfg), args.repeat
        )
        rows.append((f"photon_showers (n_spots={n_spots})", t))
    showers = photon_showers(args.n, args.energy, 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.root")
        t = _median_time(lambda: write_showers(path, showers, overwrite=True), args.repeat)
        rows.append(("write_showers (TTree)", t))
        t = _median_time(lambda: read_showers(path), args.repeat)
        rows.append(("read_showers (TTree)", t))
    print(
        f"n = {args.n} showers of {args.energy:g} GeV, median of {args.repeat} runs, "
        f"{os.cpu_count()} CPUs visible"
    )
    print(f"{'task':<34} {'seconds':>9} {'showers/s':>12}")
    for name, t in rows:
        print(f"{name:<34} {t:>9.3f} {args.n / t:>12.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
