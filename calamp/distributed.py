"""Scale-out on an existing dask cluster (``--scheduler ADDRESS`` or a ``distributed.Client``).

Plain ``distributed`` futures, no dask collections:

* :func:`map_networks` — the K independent networks (:func:`calamp.posterior.run_network`), one
  task each; the :class:`~calamp.sources.Source` is scattered once, results come back in
  network order.
* :func:`generate_histograms` — generation of one stored network spread over draws (and,
  optionally, event chunks): tasks get :class:`~calamp.bayes.store.DrawHandle` tokens (a path
  and indices, never a pickled model), rebuild the generator from the draw store, fill a
  :class:`~calamp.histograms.HistogramSet` with the same seeds as
  :func:`~calamp.posterior.fill_network`, and the partial sets are summed exactly (integer
  ``+``) in a tree reduction, as coffea's DaskExecutor does.
* :func:`read_showers_dask` — lazy reading of large ROOT inputs with ``uproot.dask`` (optional
  extra ``calamp[dask-io]``).

The results folder (and its draw store) is the hand-over between client and workers: it must be
on a filesystem that every worker sees under the same absolute path.

TensorFlow threads: :class:`TFThreadsPlugin` makes every worker process run TensorFlow with one
intra-op and one inter-op thread (``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS`` set
before TensorFlow starts there), so ``workers x threads_per_worker`` tasks use about as many
cores. TensorFlow cannot change its thread pools once it runs; a worker where it already ran
is reported on stderr, not changed.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import os
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from calamp.io import CalampError

try:  # distributed is a dependency; the guard keeps `import calamp.distributed` cheap to fail
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - distributed missing
    WorkerPlugin = object  # type: ignore[assignment,misc]

__all__ = [
    "CONNECT_TIMEOUT",
    "TFThreadsPlugin",
    "connect",
    "local_client",
    "generate_histograms",
    "limit_tf_threads",
    "map_networks",
    "probe_tf_threads",
    "read_showers_dask",
    "tf_thread_state",
]

CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler before --scheduler fails
_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
_applied_before_start: int | None = None  # threads set in this process before TF started


# ------------------------------------------------------------------------------------------------
# connecting and TensorFlow threads
# ------------------------------------------------------------------------------------------------
async def _identify(address: str, timeout: float) -> dict[str, Any]:
    """The ``identity`` reply of the dask server at ``address`` (raw comm, no Client)."""
    from distributed.comm import connect as comm_connect
    from distributed.core import send_recv

    comm = await comm_connect(address, timeout=timeout)
    try:
        return await asyncio.wait_for(send_recv(comm, op="identity"), timeout)
    finally:
        await comm.close()


def connect(address: str, *, timeout: float | None = None) -> Any:
    """A ``distributed.Client`` connected to the scheduler at ``address``.

    The scheduler is first asked for its identity over a plain connection, so a malformed or
    unreachable address fails within ``timeout`` without leaving a half-built client behind.

    Args:
        address: scheduler address, e.g. ``tcp://10.0.0.5:8786``.
        timeout: seconds to wait for the scheduler (default :data:`CONNECT_TIMEOUT`).

    Raises:
        CalampError: one line naming the address when it is malformed, unreachable or not a
            dask scheduler.
    """
    from distributed import Client

    t = CONNECT_TIMEOUT if timeout is None else float(timeout)
    try:
        # in its own thread: asyncio.run needs a thread without a running loop (Jupyter)
        with ThreadPoolExecutor(1) as pool:
            ident = pool.submit(asyncio.run, _identify(str(address), t)).result()
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
        msg = (f"option --scheduler: cannot connect to the dask scheduler at {address!r} "
               f"within {t:g} s ({type(err).__name__}: {detail})")
        raise CalampError(msg) from None
    kind = ident.get("type") if isinstance(ident, dict) else None
    if kind != "Scheduler":
        msg = (f"option --scheduler: {address!r} is a dask {kind or 'server'}, not a scheduler "
               "(give the scheduler's address, default port 8786)")
        raise CalampError(msg)
    return Client(address, timeout=f"{t}s", set_as_default=False)


def limit_tf_threads(threads: int = 1) -> dict[str, Any]:
    """Make TensorFlow in *this process* use ``threads`` intra-op and inter-op threads.

    Before TensorFlow is imported this sets ``TF_NUM_INTRAOP_THREADS`` and
    ``TF_NUM_INTEROP_THREADS`` (read when TensorFlow creates its CPU device). If TensorFlow is
    imported but not initialised, ``tf.config.threading`` is used. If it already runs, nothing
    can change: the returned state says so (``"ok": False``) unless the limit was set earlier.

    Returns:
        :func:`tf_thread_state` plus ``"how"`` (what was done).
    """
    global _applied_before_start
    n = int(threads)
    if n < 1:
        msg = f"`threads` must be >= 1, got {threads}"
        raise ValueError(msg)
    tf = sys.modules.get("tensorflow")
    if tf is None:
        for name in _ENV:
            os.environ[name] = str(n)
        _applied_before_start = n
        how = "environment set before TensorFlow starts"
    else:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
            _applied_before_start = n
            how = "tf.config.threading before TensorFlow initialised"
        except RuntimeError:  # "cannot be modified after initialization"
            how = "TensorFlow already running: thread pools unchanged"
    return {**tf_thread_state(threads=n), "how": how}


def tf_thread_state(threads: int = 1) -> dict[str, Any]:
    """TensorFlow thread settings of this process (run it on workers with ``client.run``).

    Returns:
        ``{"pid", "tensorflow_started", "limit" (threads set before TF started, or None),
        "intra_op", "inter_op" (tf.config values, 0 = TF default), "inter_op_threads" (live
        ``tf_Compute`` threads, Linux only, else None), "ok"}``.
    """
    tf = sys.modules.get("tensorflow")
    intra = inter = None
    if tf is not None:
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        inter = tf.config.threading.get_inter_op_parallelism_threads()
    live = None
    task_dir = Path("/proc/self/task")
    if task_dir.is_dir():
        live = 0
        for t in task_dir.iterdir():
            try:
                live += (t / "comm").read_text().strip() == "tf_Compute"
            except OSError:  # the thread ended meanwhile
                pass
    limited = _applied_before_start is not None and _applied_before_start <= threads
    ok = limited or (tf is not None and intra == threads and inter == threads)
    return {"pid": os.getpid(), "tensorflow_started": tf is not None,
            "limit": _applied_before_start, "intra_op": intra, "inter_op": inter,
            "inter_op_threads": live, "ok": bool(ok)}


def _thread_ticks() -> dict[str, int]:
    """CPU clock ticks (user + system) per live thread of this process (Linux)."""
    out = {}
    for t in Path("/proc/self/task").iterdir():
        try:
            fields = (t / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[t.name] = int(fields[11]) + int(fields[12])
    return out


def probe_tf_threads(size: int = 800, repeats: int = 40) -> dict[str, Any]:
    """Measure how many threads of this process work on a TensorFlow matmul (Linux only).

    Runs ``repeats`` (size, size) float32 matmuls and counts the threads that got at least 20 %
    of the CPU ticks spent meanwhile: 1 when TensorFlow runs single-threaded, about the number
    of intra-op threads otherwise. Run it on workers with ``client.run(probe_tf_threads)``.

    Returns:
        ``{"busy_threads", "ticks", "cpu_per_wall", "pid"}`` (``busy_threads`` None off Linux).
    """
    import time

    from calamp._tf import tf

    x = tf.random.stateless_normal((int(size), int(size)), seed=(1, 2))
    tf.matmul(x, x).numpy()  # warm-up
    linux = Path("/proc/self/task").is_dir()
    before = _thread_ticks() if linux else {}
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(int(repeats)):
        tf.matmul(x, x).numpy()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    busy = ticks = None
    if linux:
        after = _thread_ticks()
        spent = [after[t] - before.get(t, 0) for t in after]
        ticks = int(sum(spent))
        busy = sum(d >= 0.2 * ticks for d in spent) if ticks > 0 else 0
    return {"busy_threads": busy, "ticks": ticks, "cpu_per_wall": cpu / wall, "pid": os.getpid()}


class TFThreadsPlugin(WorkerPlugin):
    """Worker plugin: one TensorFlow thread (intra- and inter-op) per worker process.

    Register it with ``client.register_plugin(TFThreadsPlugin())`` before TensorFlow runs on the
    workers (:func:`map_networks` does); it also applies to workers that join later. Run workers
    with several processes and ``--nthreads 1`` for TensorFlow work.
    """

    name = "calamp-tf-threads"

    def __init__(self, threads: int = 1) -> None:
        self.threads = int(threads)
        self.state: dict[str, Any] | None = None

    def setup(self, worker: Any) -> None:
        del worker
        self.state = limit_tf_threads(self.threads)


def _prepare_workers(client: Any, threads: int) -> None:
    client.register_plugin(TFThreadsPlugin(threads))
    states = client.run(tf_thread_state, threads)
    bad = sorted(addr for addr, st in states.items() if not st["ok"])
    if bad:
        print(f"calamp: warning: TensorFlow already ran on {len(bad)} dask worker(s) "
              f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}) before its threads "
              f"could be limited to {threads}; restart those workers to avoid oversubscribing "
              "the cores", file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# networks
# ------------------------------------------------------------------------------------------------
def _network_task(k: int, cfg: Any, source: Any, binnings: Mapping[str, Any], out: str,
                  resume: bool) -> dict[str, Any]:
    """Worker side of :func:`map_networks`: one :func:`~calamp.posterior.run_network`."""
    from calamp.posterior import run_network

    folder = Path(out)
    from calamp.folder import MARKER

    if not (folder / MARKER).exists():
        msg = (f"dask worker {socket.gethostname()}: results folder {folder} is not visible "
               "here; --out must be on a filesystem shared by client and workers")
        raise CalampError(msg)
    return run_network(cfg, k, source, binnings, folder, resume=resume)


def map_networks(client: Any, cfg: Any, source: Any, binnings: Mapping[str, Any],
                 out: str | Path, *, resume: bool = False, threads: int = 1
                 ) -> list[dict[str, Any]]:
    """Run :func:`~calamp.posterior.run_network` for k = 0..K-1 on dask workers.

    Args:
        client: a ``distributed.Client``.
        cfg: the :class:`~calamp.config.RunConfig` (``cfg.networks`` tasks).
        source: the :class:`~calamp.sources.Source`; scattered to the cluster once.
        binnings: ``"OBS/qN"`` -> binning.
        out: the results folder, already created by the client; it must be visible to every
            worker under the same absolute path (draws, partial counts and checkpoints go there).
        resume: skip networks whose partial counts exist.
        threads: TensorFlow threads per worker process (default 1).

    Returns:
        The K dictionaries of ``run_network``, in network order.
    """
    import dataclasses

    from distributed import as_completed
    from tqdm.auto import tqdm

    folder = str(Path(out).resolve())
    _prepare_workers(client, threads)
    # progress bars of many workers would interleave in their logs; the client shows one
    wcfg = dataclasses.replace(cfg, progress=False)
    src = client.scatter(source, hash=False)
    futures = client.map(_network_task, range(cfg.networks), cfg=wcfg, source=src,
                         binnings=dict(binnings), out=folder, resume=resume, pure=False)
    try:
        with tqdm(total=len(futures), disable=not cfg.progress, desc="networks") as bar:
            for _ in as_completed(futures, loop=client.loop):
                bar.update(1)
        return client.gather(futures)
    finally:
        client.cancel([*futures, src])


def local_client(workers: int) -> Any:
    """A ``distributed.Client`` that starts (and on ``close()`` stops) its own local cluster of
    ``workers`` processes, one thread each.

    One process per core is how a small TensorFlow network uses a second core (a second
    intra-op thread makes it slower, benchmarks/RESULTS.md).
    """
    from distributed import Client

    return Client(
        n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=40, set_as_default=False,
    )


# ------------------------------------------------------------------------------------------------
# per-draw generation
# ------------------------------------------------------------------------------------------------
_cache: dict[tuple[str, int], tuple[tuple[int, int], Any, threading.Lock]] = {}
_cache_lock = threading.Lock()


def _cached_network(store_root: str, k: int) -> tuple[Any, threading.Lock]:
    """Network k of a store, rebuilt once per worker process (until its files change)."""
    from calamp.posterior import load_network

    stem = Path(store_root) / f"network_{k:04d}"
    try:
        stamp = (stem.with_suffix(".json").stat().st_mtime_ns,
                 stem.with_suffix(".npz").stat().st_mtime_ns)
    except FileNotFoundError:
        msg = (f"dask worker {socket.gethostname()}: no draws of network {k} under {store_root}; "
               "the draw store must be on a filesystem shared by client and workers")
        raise CalampError(msg) from None
    with _cache_lock:
        hit = _cache.get((store_root, k))
        if hit is None or hit[0] != stamp:
            hit = (stamp, load_network(store_root, k), threading.Lock())
            _cache[(store_root, k)] = hit
    return hit[1], hit[2]


def _draw_task(handle: Any, row: int, n_rows: int, chunks: tuple[int, int] | None, cfg: Any,
               kind: str, binnings: Mapping[str, Any]) -> Any:
    """Worker side of :func:`generate_histograms`: one draw (or a range of its event chunks)
    into a HistogramSet (1, n_rows) whose row ``row`` is filled."""
    from calamp.histograms import HistogramSet
    from calamp.posterior import generation_context
    from calamp.seeds import derive_seed
    from calamp.sources import decode_events, event_observables, split_key

    nd, lock = _cached_network(str(Path(handle.path).parent), handle.network)
    k, i = handle.network, handle.index
    hset = HistogramSet(binnings, 1, n_rows)
    names = None if kind == "ring" else tuple({split_key(key)[0] for key in binnings})
    seed = derive_seed(cfg.seed, "generate", k, i)
    ctx, e_inc = generation_context(nd, cfg.generated, derive_seed(cfg.seed, "context", k, i))
    g = int(cfg.generated)

    def fill(chunk: np.ndarray, start: int) -> None:
        echunk = None if e_inc is None else e_inc[start:start + len(chunk)]
        obs = event_observables(kind, decode_events(kind, nd.features, chunk, echunk), names)
        hset.fill(0, row, {key: obs[split_key(key)[0]] for key in binnings})

    with lock:  # one model object per worker process: draws take turns on its weights
        nd.model.set_eval_weights(nd.weights[i])
        if chunks is None:  # the whole draw: the very code of fill_network
            from calamp.posterior import draw_events

            for events in draw_events(cfg, nd, kind, i, g):
                obs = event_observables(kind, events, names)
                hset.fill(0, row, {key: obs[split_key(key)[0]] for key in binnings})
        else:  # generation block j is sample(., seed=fold_seed(stateless_seed(seed), j))
            from calamp.models.base import block_spans, fold_seed, stateless_seed

            base = stateless_seed(seed)
            spans = block_spans(g)
            for j in range(*chunks):
                start, stop = spans[j]
                cchunk = None if ctx is None else ctx[start:stop]
                fill(np.asarray(nd.model.sample(stop - start, cchunk, seed=fold_seed(base, j))),
                     start)
    return hset


def _sum(*parts: Any) -> Any:
    """Exact sum of partial histogram sets (integer counts)."""
    return functools.reduce(operator.add, parts)


def _tree_sum(client: Any, futures: list[Any], split_every: int) -> Any:
    """Tree reduction of futures by ``+`` on the workers: ceil(log_m(n)) levels, m = split_every."""
    level = list(futures)
    while len(level) > 1:
        level = [client.submit(_sum, *level[j:j + split_every], pure=False)
                 for j in range(0, len(level), split_every)]
    return level[0]


def generate_histograms(client: Any, store_root: str | Path, network: int, cfg: Any, kind: str,
                        binnings: Mapping[str, Any], *, draws: Sequence[int] | None = None,
                        chunks_per_task: int | None = None, split_every: int = 8
                        ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Generate ``cfg.generated`` events per draw of one stored network on dask workers.

    Tasks receive draw handles (store path, network, draw index); each worker rebuilds the
    generator from the store once and fills a :class:`~calamp.histograms.HistogramSet` with
    the per-draw seeds of :func:`~calamp.posterior.fill_network`
    (``derive_seed(cfg.seed, "generate", k, i)``, context ``derive_seed(cfg.seed, "context",
    k, i)``). Partial sets are summed exactly in a tree reduction, so the counts equal
    ``fill_network``'s for the same seeds, however the work is split.

    Args:
        client: a ``distributed.Client``.
        store_root: draw-store folder (e.g. ``out/draws``), visible to every worker.
        network: network index k.
        cfg: the :class:`~calamp.config.RunConfig` (``seed``, ``generated``, ``chunk_size``).
        kind: ``"ring"`` or ``"showers"``.
        binnings: ``"OBS/qN"`` -> binning.
        draws: draw indices to generate (default: all stored draws of the network).
        chunks_per_task: split each draw into tasks of this many generation blocks
            (:data:`~calamp.models.base.SEED_BLOCK` events each)
            (default: one task per draw).
        split_every: fan-in of the tree reduction (>= 2).

    Returns:
        ``(counts, n_filled)``: ``{key: (len(draws), B) int64}`` and ``(len(draws),) int64``,
        rows in the order of ``draws``.
    """
    from calamp.bayes.store import DrawStore

    if split_every < 2:
        msg = f"`split_every` must be >= 2, got {split_every}"
        raise ValueError(msg)
    if chunks_per_task is not None and chunks_per_task < 1:
        msg = f"`chunks_per_task` must be >= 1 or None, got {chunks_per_task}"
        raise ValueError(msg)
    root = Path(store_root).resolve()
    handles = [h for h in DrawStore(root).handles() if h.network == int(network)]
    if not handles:
        msg = f"no draws of network {network} in {root}"
        raise CalampError(msg)
    if draws is None:
        chosen = handles
    else:
        bad = [i for i in draws if not 0 <= int(i) < len(handles)]
        if bad or len(draws) == 0:
            msg = f"`draws` must be indices in [0, {len(handles)}), got {list(draws)}"
            raise ValueError(msg)
        chosen = [handles[int(i)] for i in draws]
    from calamp.models.base import block_spans

    n_chunks = max(1, len(block_spans(int(cfg.generated))))
    if chunks_per_task is None or chunks_per_task >= n_chunks:
        spans: list[tuple[int, int] | None] = [None]
    else:
        spans = [(j, min(n_chunks, j + chunks_per_task))
                 for j in range(0, n_chunks, chunks_per_task)]
    _prepare_workers(client, 1)
    bins = dict(binnings)
    futures = [client.submit(_draw_task, h, row, len(chosen), span, cfg, kind, bins, pure=False)
               for row, h in enumerate(chosen) for span in spans]
    total = _tree_sum(client, futures, split_every)
    try:
        hset = total.result()
    finally:
        client.cancel([*futures, total])
    counts = {key: np.array(h.counts[0]) for key, h in hset.items()}
    return counts, np.array(next(iter(hset.values())).n_filled[0])


# ------------------------------------------------------------------------------------------------
# large ROOT inputs
# ------------------------------------------------------------------------------------------------
def read_showers_dask(path: str | Path, tree: str | None = None, *, energy: str = "energy",
                      incident_energy: str = "incident_energy",
                      step_size: str | int = "100 MB") -> Any:
    """Lazily open the shower branches of a large ROOT file as a dask-awkward array.

    Needs the optional extra ``pip install 'calamp[dask-io]'`` (``dask-awkward``, which pins an
    older dask than the rest of calamp; install it in its own environment).

    Args:
        path: ROOT file (local, XRootD or HTTP).
        tree: TTree name (default: the file's only TTree).
        energy: cell-energy branch (per event (ny, nx) or flat ny*nx).
        incident_energy: incident-energy branch (GeV).
        step_size: partition size for ``uproot.dask``.

    Returns:
        A dask-awkward record array with fields ``energy`` and ``incident_energy``; compute
        partitions with ``dask.compute`` or map them with ``dask_awkward.map_partitions``.
    """
    try:
        import dask_awkward  # noqa: F401
    except ImportError:
        msg = ("read_showers_dask needs dask-awkward: pip install 'calamp[dask-io]' (it pins an "
               "older dask, so use a separate environment)")
        raise CalampError(msg) from None
    import uproot

    path = str(path)
    if tree is None:
        with uproot.open(path) as f:
            trees = [k.split(";")[0] for k, c in f.classnames().items() if c == "TTree"]
        if len(trees) != 1:
            msg = f"{path}: give `tree` (TTrees found: {sorted(set(trees))})"
            raise CalampError(msg)
        tree = trees[0]
    return uproot.dask({path: tree}, filter_name=[energy, incident_energy],
                       step_size=step_size)
