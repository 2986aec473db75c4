"""Per-draw histograms: calamp's DrawHistograms vs one ``hist.Hist`` with network/draw axes.

Run: ``python benchmarks/bench_draw_histograms.py [--quick] [--repeats 3]``

For K = 5 networks, s = 50 draws and chunks of 100,000 events per (network k, draw i), two
binnings (1D quantile binning with 10 bins, 2D (r, phi) quantile grid 20x20):

(a) :meth:`DrawHistograms.fill` (today's path: one boost-histogram fill per chunk into a flat
    (K, s, B) int64 array, flow folded into the outer bins);
(b) a ``hist.Hist`` with ``Integer`` axes "network" and "draw" plus the binning's axes (Int64
    storage, no flow bins), filled directly with ``h.fill(network=k, draw=i, x=...)``; the
    open-ended outer bins are emulated by clipping the events into the edges.

Reports events/s (median of repeats, 1 thread), the memory of each filled object (storage bytes
and pickled bytes, what a dask worker sends back) and the time of one exact merge ``a + b``.
Both paths must give identical counts (checked). ``--quick``: one timed repeat. Needs
``pip install -e .`` (or ``PYTHONPATH=.``).
"""

from __future__ import annotations

import argparse
import os
import pickle
import time
from collections.abc import Callable

import boost_histogram as bh
import hist
import numpy as np

from calamp.histograms import Binning, DrawHistograms, quantile_binning, to_polar

K, S, CHUNK = 5, 50, 100_000
POOL_CHUNKS = 8  # distinct chunks of events, cycled over the (k, i)


def _median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (and the object measured below)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def _chunks(x: np.ndarray) -> list[np.ndarray]:
    return [x[j * CHUNK : (j + 1) * CHUNK] for j in range(POOL_CHUNKS)]


def _fill_draw_histograms(binning: Binning, chunks: list[np.ndarray]) -> DrawHistograms:
    d = DrawHistograms(binning, K, S)
    for k in range(K):
        for i in range(S):
            d.fill(k, i, chunks[(k * S + i) % len(chunks)])
    return d


def _empty_hist(binning: Binning) -> hist.Hist:
    return hist.Hist(
        hist.axis.Integer(0, K, name="network", underflow=False, overflow=False),
        hist.axis.Integer(0, S, name="draw", underflow=False, overflow=False),
        *binning.hist_axes(),
        storage=bh.storage.Int64(),
    )


def _fill_hist(binning: Binning, chunks: list[np.ndarray]) -> hist.Hist:
    h = _empty_hist(binning)
    lo = [e[0] for e in binning.edges]
    hi = [e[-1] for e in binning.edges]
    for k in range(K):
        for i in range(S):
            cols = binning.columns(chunks[(k * S + i) % len(chunks)])
            # open-ended outer bins: clip into [first, last edge] (NaN stays NaN: no bin)
            axes = {
                n: np.clip(c, a, b) for n, c, a, b in zip(binning.names, cols, lo, hi, strict=True)
            }
            h.fill(network=k, draw=i, **axes)
    return h


def _merge_time(a: object, repeats: int) -> float:
    b = pickle.loads(pickle.dumps(a))
    t, _ = _median_time(lambda: a + b, max(repeats, 5))
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rep = 1 if args.quick else args.repeats
    rng = np.random.default_rng(0)
    n_pool = POOL_CHUNKS * CHUNK

    x1 = rng.normal(size=n_pool)
    b1 = quantile_binning(rng.normal(size=n_pool), 10)
    phi = rng.uniform(0.0, 2 * np.pi, 2 * n_pool)
    r = 4.0 + rng.gamma(2.0, 0.5, 2 * n_pool)
    rphi = to_polar(np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1))
    b2 = quantile_binning(rphi[n_pool:], 20, names=("r", "phi"))  # truth half
    cases = [("1D quantile, 10 bins", b1, _chunks(x1)), ("2D (r,phi) 20x20", b2, _chunks(rphi))]

    n_events = K * S * CHUNK
    load = os.getloadavg()
    print(
        f"K = {K}, s = {S}, chunks of {CHUNK:,} events per (k, i): {n_events:,} events per fill; "
        f"median of {rep} repeat(s), 1 thread; load {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    )
    head = f"{'binning':<22} {'path':<26} {'M events/s':>10} {'storage MB':>11}"
    print(f"{head} {'pickled MB':>11} {'merge ms':>9}")
    for label, binning, chunks in cases:
        t_a, d = _median_time(lambda b=binning, c=chunks: _fill_draw_histograms(b, c), rep)
        t_b, h = _median_time(lambda b=binning, c=chunks: _fill_hist(b, c), rep)
        assert isinstance(d, DrawHistograms) and isinstance(h, hist.Hist)
        want = d.counts.reshape(K, S, *binning.shape)
        if not np.array_equal(h.view(), want):
            msg = f"{label}: hist.Hist counts differ from DrawHistograms"
            raise AssertionError(msg)
        rows = [
            (
                "(a) DrawHistograms.fill",
                t_a,
                d.counts.nbytes + d.n_filled.nbytes,
                len(pickle.dumps(d)),
                _merge_time(d, rep),
            ),
            (
                "(b) hist.Hist Integer axes",
                t_b,
                h.view(flow=True).nbytes,
                len(pickle.dumps(h)),
                _merge_time(h, rep),
            ),
        ]
        for path, t, mem, pick, merge in rows:
            print(
                f"{label:<22} {path:<26} {n_events / t / 1e6:10.1f} {mem / 1e6:11.3f} "
                f"{pick / 1e6:11.3f} {merge * 1e3:9.3f}"
            )


if __name__ == "__main__":
    main()
