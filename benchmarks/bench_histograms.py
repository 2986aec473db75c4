"""Histogram fill throughput (entries/s, median of repeats) for calamp.histograms.

Run: ``python benchmarks/bench_histograms.py [--n 2000000] [--repeats 7]``

Rows: boost-histogram 1D Variable axis (100 quantile bins) raw, the numpy
``searchsorted + bincount`` alternative, :meth:`Binning.counts` (incl. flow folding),
the alternative design (one histogram with Integer network/draw axes), the ring's (r, phi)
200x200 quantile grid, and the :class:`DrawHistograms` path (1D and 2D, chunks of 10^5 and of
N events). Needs ``pip install -e .`` (or ``PYTHONPATH=.``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import boost_histogram as bh
import numpy as np

from calamp.histograms import DrawHistograms, quantile_binning, to_polar


def _median_rate(fn: Callable[[], object], n: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2_000_000, help="events per fill")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    n, rep = args.n, args.repeats
    rng = np.random.default_rng(0)

    x1 = rng.normal(size=n)
    b1 = quantile_binning(x1, 100)
    inner = b1.edges[0][1:-1]

    phi = rng.uniform(0.0, 2 * np.pi, n)
    r = 4.0 + rng.gamma(2.0, 0.5, n)
    rphi = to_polar(np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1))
    b2 = quantile_binning(rphi, 200)

    def raw_bh() -> None:
        h = bh.Histogram(bh.axis.Variable(b1.edges[0]), storage=bh.storage.Int64())
        h.fill(x1)

    def raw_np() -> None:
        np.bincount(np.searchsorted(inner, x1, side="right"), minlength=100)

    big = bh.Histogram(
        bh.axis.Integer(0, 5),
        bh.axis.Integer(0, 50),
        bh.axis.Variable(b1.edges[0]),
        storage=bh.storage.Int64(),
    )

    def alt_int_axes() -> None:  # the alternative design: one hist with (network, draw) axes
        big.fill(2, 3, x1)

    def draws(binning, x, chunk):  # noqa: ANN001, ANN202
        def run() -> None:
            d = DrawHistograms(binning, 1, 1)
            for start in range(0, len(x), chunk):
                d.fill(0, 0, x[start : start + chunk])

        return run

    rows = [
        ("1D Variable(100), boost-histogram raw fill", raw_bh),
        ("1D Variable(100), numpy searchsorted+bincount", raw_np),
        ("1D alt: Integer(K) x Integer(s) x Variable, scalar k,i", alt_int_axes),
        ("1D QuantileBinning.counts (fold flow)", lambda: b1.counts(x1)),
        ("1D DrawHistograms.fill, one chunk", draws(b1, x1, n)),
        ("1D DrawHistograms.fill, chunks of 1e5", draws(b1, x1, 100_000)),
        ("2D (r,phi) 200x200 QuantileBinning.counts", lambda: b2.counts(rphi)),
        ("2D (r,phi) 200x200 DrawHistograms, one chunk", draws(b2, rphi, n)),
        ("2D (r,phi) 200x200 DrawHistograms, chunks 1e5", draws(b2, rphi, 100_000)),
    ]
    print(f"N = {n:,} events per fill, median of {rep} repeats, 1 thread")
    print(f"{'path':<56} {'M entries/s':>12}")
    for name, fn in rows:
        print(f"{name:<56} {_median_rate(fn, n, rep) / 1e6:12.1f}")


if __name__ == "__main__":
    main()
