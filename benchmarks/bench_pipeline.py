"""End-to-end wall time of the main job, and peak memory of one draw of g = 10^7 events.

Run: ``python benchmarks/bench_pipeline.py [--quick] [--threads 1] [--skip-default]``
(needs ``pip install -e .`` or ``PYTHONPATH=.``).

1. ``python -m calamp.run --toy ring --quick`` (and, unless ``--quick``/``--skip-default``, the
   default preset) in a subprocess: wall time and peak resident memory (``ru_maxrss`` of the
   child).
2. One posterior draw of g = 10^7 ring events (coupling flow, ``sample_chunks`` with chunks of
   10^5) filled into (r, phi) quantile histograms, in a subprocess: peak memory must stay bounded
   (the events alone would be 10^7 x 2 x 4 B = 80 MB in float32, 160 MB in float64).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

_DRAW = r"""
import resource, sys, time
import numpy as np
from calamp.histograms import quantile_binning, to_polar
from calamp.models.flows import CouplingFlow
from calamp.simulate import ring
g = int(sys.argv[1])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
m = CouplingFlow(2, 0, n_couplings=3, hidden=(32, 32), seed=0)
b = quantile_binning(to_polar(ring(100_000, 1)), 20)
counts = np.zeros(b.n_bins, np.int64)
m.sample(10, seed=0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
for chunk in m.sample_chunks(g, seed=1, chunk_size=100_000):
    counts += b.counts(to_polar(chunk.astype(np.float64) * 1.3))
dt = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{g} {dt:.1f} {before / 1024:.0f} {after / 1024:.0f} {int(counts.sum())}")
"""


def _child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode:
        print(proc.stderr[-2000:], file=sys.stderr)
        msg = f"{' '.join(cmd)} failed with exit code {proc.returncode}"
        raise RuntimeError(msg)
    return dt, rss, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="quick job and g = 10^6 only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-default", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ)
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        env[var] = str(args.threads)
    print(f"# bench_pipeline  threads={args.threads}  load(1,5,15 min)={os.getloadavg()}")
    print("| job | wall s | peak RSS of children so far (MB) |")
    print("|---|---|---|")
    presets = ["--quick"] if (args.quick or args.skip_default) else ["--quick", ""]
    for preset in presets:
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "calamp.run", "--toy", "ring", "--out", out,
                   "--overwrite", "--no-progress", "--no-plots"]
            if preset:
                cmd.append(preset)
            dt, rss, _ = _child(cmd, env)
        print(f"| main job, ring toy, {preset or 'default'} preset | {dt:.0f} | {rss:.0f} |")
    g = 1_000_000 if args.quick else 10_000_000
    _, _, out = _child([sys.executable, "-c", _DRAW, str(g)], env)
    n, dt, before, after, filled = out.split()
    print(f"\none draw of g = {int(n):,} events (coupling flow, chunks of 10^5, 20x20 quantile "
          f"histogram): {float(dt):.1f} s, peak RSS {before} MB before generation -> {after} MB "
          f"after ({filled} entries filled)")


if __name__ == "__main__":
    main()
