"""Scale-out on a dask cluster (``--scheduler``, ``--workers N`` or a ``distributed.Client``).

Plain ``distributed`` futures, no dask collections; the executors of :mod:`calamp.executors`
do the mapping and tree reductions.

* :func:`connect` — a client for a scheduler address, failing in one line when it is wrong;
  :func:`local_client` — a local cluster of one-thread worker processes (both cores busy).
* :func:`generate_histograms` — generation of one stored network spread over draws (and,
  optionally, event chunks): tasks get :class:`~calamp.bayes.store.DrawHandle` tokens (a path
  and indices, never a pickled model), rebuild the generator from the draw store, fill a
  :class:`~calamp.histograms.HistogramSet` with the same seeds as
  :func:`~calamp.generation.fill_network`, and the partial sets are summed exactly (integer
  ``+``) by :meth:`~calamp.executors.DaskExecutor.reduce`.
* :func:`read_showers_dask` — lazy reading of large ROOT inputs with ``uproot.dask`` (optional
  extra ``calamp[dask-io]``).

The results folder (and its draw store) is the hand-over between client and workers: it must be
on a filesystem that every worker sees under the same absolute path. The TensorFlow-thread
helpers (:func:`limit_tf_threads`, :func:`tf_thread_state`, :func:`probe_tf_threads`,
:class:`TFThreadsPlugin`) live in :mod:`calamp.executors` and are re-exported here.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from calamp.executors import (
    DaskExecutor,
    TFThreadsPlugin,
    limit_tf_threads,
    probe_tf_threads,
    tf_thread_state,
)
from calamp.io import CalampError

__all__ = [
    "CONNECT_TIMEOUT",
    "TFThreadsPlugin",
    "connect",
    "local_client",
    "generate_histograms",
    "limit_tf_threads",
    "probe_tf_threads",
    "read_showers_dask",
    "tf_thread_state",
]

CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler before --scheduler fails


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
def _draw_task(task: tuple[Any, int, int, tuple[int, int] | None], *, cfg: Any, kind: str,
               binnings: Mapping[str, Any]) -> Any:
    """Worker side of :func:`generate_histograms`: task (handle, row, n_rows, chunks) = one draw
    (or a range of its event chunks) into a HistogramSet (1, n_rows) whose row ``row`` is
    filled."""
    handle, row, n_rows, chunks = task
    from calamp.generation import generation_context
    from calamp.histograms import HistogramSet
    from calamp.network import cached_network
    from calamp.seeds import derive_seed
    from calamp.sources import decode_events, event_observables, split_key

    nd, lock = cached_network(str(Path(handle.path).parent), handle.network)
    k, i = handle.network, handle.index
    hset = HistogramSet(binnings, 1, n_rows)
    names = tuple({split_key(key)[0] for key in binnings})
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
            from calamp.generation import draw_events

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


def generate_histograms(client: Any, store_root: str | Path, network: int, cfg: Any, kind: str,
                        binnings: Mapping[str, Any], *, draws: Sequence[int] | None = None,
                        chunks_per_task: int | None = None, split_every: int = 8
                        ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Generate ``cfg.generated`` events per draw of one stored network on dask workers.

    Tasks receive draw handles (store path, network, draw index); each worker rebuilds the
    generator from the store once and fills a :class:`~calamp.histograms.HistogramSet` with
    the per-draw seeds of :func:`~calamp.generation.fill_network`
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
    tasks = [(h, row, len(chosen), span) for row, h in enumerate(chosen) for span in spans]
    hset = DaskExecutor(client).reduce(
        _draw_task, tasks, operator.add, shared={"cfg": cfg, "kind": kind,
                                                 "binnings": dict(binnings)},
        split_every=split_every,
    )
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
