"""Where calamp's units of work run: one ``map``/``reduce`` interface, in this process or on dask.

Coffea-style executors. The job hands an executor a function, the items to map it over and the
inputs every call shares (``map_then``: and a second function whose calls depend on the
first's, per item); the executor decides where the calls run:

* :class:`LocalExecutor` — in this process, in order (no dask involved);
* :class:`DaskExecutor` — on the workers of a ``distributed.Client``: the shared inputs are
  scattered once (each task gets only its item and references to them), results come back in
  item order, and :meth:`DaskExecutor.reduce` sums partial results on the workers in a tree
  (fan-in ``split_every``, ⌈log_m n⌉ levels), as coffea's DaskExecutor does.

Functions must be pure in their arguments (seeds come with the items), so both executors give
the same numbers. TensorFlow threads: a :class:`DaskExecutor` registers
:class:`TFThreadsPlugin`, so every worker process runs TensorFlow with one intra-op and one
inter-op thread (``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS`` set before TensorFlow
starts there) and ``workers × threads_per_worker`` tasks use about as many cores. TensorFlow
cannot change its thread pools once it runs; a worker where it already ran is reported on
stderr, not changed.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

try:  # distributed is a dependency; the guard keeps this module importable without it
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - distributed missing
    WorkerPlugin = object  # type: ignore[assignment,misc]

__all__ = [
    "DaskExecutor",
    "LocalExecutor",
    "TFThreadsPlugin",
    "limit_tf_threads",
    "probe_tf_threads",
    "tf_thread_state",
]

_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
_applied_before_start: int | None = None  # threads set in this process before TF started


# ------------------------------------------------------------------------------------------------
# executors
# ------------------------------------------------------------------------------------------------
class LocalExecutor:
    """Runs every call in this process, in item order."""

    in_process = True

    def map(self, fn: Callable[..., Any], items: Iterable[Any], *,
            shared: Mapping[str, Any] | None = None, desc: str = "", progress: bool = False
            ) -> list[Any]:
        """``[fn(item, **shared) for item in items]`` (progress is shown by ``fn`` itself)."""
        del desc, progress
        kw = dict(shared or {})
        return [fn(item, **kw) for item in items]

    def map_then(self, fn: Callable[..., Any], items: Iterable[Any], then: Callable[..., Any],
                 split: Callable[[Any], Iterable[Any]], *,
                 shared: Mapping[str, Any] | None = None, desc: str = "",
                 progress: bool = False,
                 on_item: Callable[[int, Any, list[Any]], None] | None = None,
                 ) -> tuple[list[Any], list[list[Any]]]:
        """:meth:`DaskExecutor.map_then` in this process: item by item, ``fn`` then its
        ``then`` calls, ``on_item`` after each item."""
        del desc, progress
        kw = dict(shared or {})
        firsts: list[Any] = []
        thens: list[list[Any]] = []
        for j, item in enumerate(items):
            first = fn(item, **kw)
            subs = [then(sub, first, **kw) for sub in split(item)]
            firsts.append(first)
            thens.append(subs)
            if on_item is not None:
                on_item(j, first, subs)
        return firsts, thens

    def reduce(self, fn: Callable[..., Any], items: Iterable[Any],
               combine: Callable[[Any, Any], Any], *, shared: Mapping[str, Any] | None = None,
               split_every: int = 8) -> Any:
        """``combine`` of ``fn(item, **shared)`` over the items, left to right."""
        _check_split(split_every)
        return functools.reduce(combine, self.map(fn, _nonempty(items), shared=shared))


class DaskExecutor:
    """Runs calls as tasks on the workers of ``client`` (one TensorFlow thread per worker).

    Args:
        client: a ``distributed.Client``.
        threads: TensorFlow threads per worker process (default 1).
    """

    in_process = False

    def __init__(self, client: Any, *, threads: int = 1) -> None:
        self.client = client
        self.threads = int(threads)
        client.register_plugin(TFThreadsPlugin(self.threads))
        states = client.run(tf_thread_state, self.threads)
        bad = sorted(addr for addr, st in states.items() if not st["ok"])
        if bad:
            print(f"calamp: warning: TensorFlow already ran on {len(bad)} dask worker(s) "
                  f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}) before its threads "
                  f"could be limited to {self.threads}; restart those workers to avoid "
                  "oversubscribing the cores", file=sys.stderr)

    def slots(self) -> int:
        """Tasks the cluster runs at once: the threads of its workers (at least 1)."""
        workers = self.client.scheduler_info().get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def _scatter(self, shared: Mapping[str, Any] | None) -> dict[str, Any]:
        return {k: self.client.scatter(v, hash=False) for k, v in (shared or {}).items()}

    def map(self, fn: Callable[..., Any], items: Iterable[Any], *,
            shared: Mapping[str, Any] | None = None, desc: str = "", progress: bool = False
            ) -> list[Any]:
        """``fn(item, **shared)`` for every item as one task each; results in item order.

        The shared inputs are scattered to the cluster once; a bar counts finished tasks.
        """
        from distributed import as_completed
        from tqdm.auto import tqdm

        kw = self._scatter(shared)
        futures = self.client.map(fn, list(items), pure=False, **kw)
        try:
            with tqdm(total=len(futures), disable=not progress, desc=desc or None) as bar:
                for _ in as_completed(futures, loop=self.client.loop):
                    bar.update(1)
            return self.client.gather(futures)
        finally:
            self.client.cancel([*futures, *kw.values()])

    def map_then(self, fn: Callable[..., Any], items: Iterable[Any], then: Callable[..., Any],
                 split: Callable[[Any], Iterable[Any]], *,
                 shared: Mapping[str, Any] | None = None, desc: str = "",
                 progress: bool = False,
                 on_item: Callable[[int, Any, list[Any]], None] | None = None,
                 ) -> tuple[list[Any], list[list[Any]]]:
        """Two stages in one task graph: ``r = fn(item, **shared)`` for every item, and for
        every ``sub`` in ``split(item)`` a task ``then(sub, r, **shared)`` that starts as soon as
        its item's ``fn`` task is done (a dask dependency, not a barrier between the stages).

        ``fn`` tasks have the higher priority and run in item order: a free worker starts the
        next long ``fn`` task before the short ``then`` tasks, and takes ``then`` tasks of
        finished items (earlier items first) where no ``fn`` task is left, so neither core
        idles while the other finishes the last item.
        ``on_item(index, r, then_results)`` is called on the client as soon as an item's
        tasks are all done (in completion order). A bar counts finished ``then`` tasks.

        Returns:
            ``(firsts, thens)``: the ``fn`` results in item order, and per item the list of its
            ``then`` results in ``split`` order.
        """
        from distributed import as_completed
        from tqdm.auto import tqdm

        items = list(items)
        kw = self._scatter(shared)
        n = len(items)
        # explicit priorities (dask runs the higher first): every fn task before every then
        # task, and within a stage the items in order (equal priorities leave it to dask)
        firsts = [self.client.submit(fn, item, pure=False, priority=2 * n - j, **kw)
                  for j, item in enumerate(items)]
        thens = [
            [self.client.submit(then, sub, first, pure=False, priority=n - j, **kw)
             for sub in split(item)]
            for j, (item, first) in enumerate(zip(items, firsts, strict=True))
        ]
        owner = {fut.key: j for j, futs in enumerate(thens) for fut in futs}
        left = [len(futs) for futs in thens]
        flat = [fut for futs in thens for fut in futs]
        try:
            with tqdm(total=len(flat), disable=not progress, desc=desc or None) as bar:
                for fut in as_completed(flat, loop=self.client.loop):
                    bar.update(1)
                    j = owner[fut.key]
                    left[j] -= 1
                    if left[j] == 0 and on_item is not None:
                        on_item(j, firsts[j].result(), self.client.gather(thens[j]))
            return self.client.gather(firsts), [self.client.gather(futs) for futs in thens]
        finally:
            self.client.cancel([*firsts, *flat, *kw.values()])

    def reduce(self, fn: Callable[..., Any], items: Iterable[Any],
               combine: Callable[[Any, Any], Any], *, shared: Mapping[str, Any] | None = None,
               split_every: int = 8) -> Any:
        """``combine`` of ``fn(item, **shared)`` over the items, reduced on the workers in a
        tree of fan-in ``split_every``; only the total comes back. ``combine`` must be
        associative (exact for integer histogram counts)."""
        _check_split(split_every)
        items = _nonempty(items)
        kw = self._scatter(shared)
        futures = self.client.map(fn, items, pure=False, **kw)
        level = list(futures)
        made = []
        while len(level) > 1:
            level = [self.client.submit(_combine_all, combine, *level[j:j + split_every],
                                        pure=False)
                     for j in range(0, len(level), split_every)]
            made.extend(level)
        try:
            return level[0].result()
        finally:
            self.client.cancel([*futures, *made, *kw.values()])


def _combine_all(combine: Callable[[Any, Any], Any], *parts: Any) -> Any:
    return functools.reduce(combine, parts)


def _nonempty(items: Iterable[Any]) -> list[Any]:
    out = list(items)
    if not out:
        msg = "reduce needs at least one item"
        raise ValueError(msg)
    return out


def _check_split(split_every: int) -> None:
    if int(split_every) < 2:
        msg = f"`split_every` must be >= 2, got {split_every}"
        raise ValueError(msg)


# ------------------------------------------------------------------------------------------------
# TensorFlow threads of worker processes
# ------------------------------------------------------------------------------------------------
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
    workers (:class:`DaskExecutor` does); it also applies to workers that join later. Run workers
    with several processes and ``--nthreads 1`` for TensorFlow work.
    """

    name = "calamp-tf-threads"

    def __init__(self, threads: int = 1) -> None:
        self.threads = int(threads)
        self.state: dict[str, Any] | None = None

    def setup(self, worker: Any) -> None:
        del worker
        self.state = limit_tf_threads(self.threads)
