"""One network as an independent unit of work: train, store its draws, generate.

:func:`run_network` is what the in-process executor runs for network k (:mod:`calamp.executors`;
the item is k in :func:`network_task`): it reads only its inputs, writes the draws to
``out/draws`` (:class:`~calamp.bayes.store.DrawStore`, the hand-over to later generation) and
the histogram counts to ``out/partial``, and is skipped on ``--resume`` when they exist.
On dask workers the same work is two task stages (:meth:`~calamp.executors.DaskExecutor.
map_then`): :func:`train_task` per group of networks, then :func:`fill_task` per block of
draws (:func:`draw_blocks`), which starts as soon as its network is trained; the client joins
the blocks and writes them with :func:`store_filled`.
:func:`load_network` rebuilds a network from the draw store without training.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from calamp.atomic import atomic_path
from calamp.config import RunConfig
from calamp.generation import fill_network, integrate_network
from calamp.histograms import Binning
from calamp.io import CalampError
from calamp.posterior import NetworkDraws, train_network
from calamp.sources import RingFeatures, Source

__all__ = [
    "cached_network",
    "draw_blocks",
    "is_finished",
    "fill_task",
    "load_finished",
    "load_network",
    "network_task",
    "remember_network",
    "run_group",
    "run_network",
    "store_filled",
    "train_and_store",
    "train_task",
]


def run_network(
    cfg: RunConfig,
    k: int,
    source: Source,
    binnings: Mapping[str, Binning],
    out: str | Path,
    *,
    resume: bool = False,
    pretrained: tuple[Any, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything for network k: train, store its draws, generate into its histograms.

    An independent unit of work (what a dask worker runs): it reads only its inputs, writes its
    draws to ``out/draws`` (the hand-over to later generation) and its histogram counts to
    ``out/partial/net{k}.npz``; with ``resume`` a network whose counts exist is not redone.

    Returns:
        ``{"counts": {key: (s, B)}, "n_filled": (s,), "mean_image": (s, ny, nx) | None,
        "info": training and generation facts}`` (with common generation noise also
        ``"batch_counts"`` and ``"batch_filled"``, :func:`~calamp.generation.fill_network`);
        with ``cfg.bin_probabilities == "quadrature"``
        ``{"probabilities": {key: (s, B)}, "mean_image": None, "info": ...}``
        (the draws' exact bin probabilities, :func:`~calamp.generation.integrate_network`).
    """
    out = Path(out)
    t0 = time.perf_counter()
    if resume and is_finished(out, k):
        return load_finished(out, k, binnings)
    nd = train_and_store(cfg, k, source, out, pretrained=pretrained)
    if cfg.bin_probabilities == "quadrature":
        filled = integrate_network(cfg, nd, binnings, source.n_train)
    else:
        filled = fill_network(cfg, nd, source.kind, binnings)
    result = store_filled(cfg, k, out, nd.info, filled)
    print(
        f"calamp: network {k + 1}/{cfg.networks} done in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    return result


def train_and_store(
    cfg: RunConfig,
    k: int,
    source: Source,
    out: Path,
    *,
    pretrained: tuple[Any, dict[str, Any]] | None = None,
) -> NetworkDraws:
    """Train network k (resuming from ``out/checkpoints``) and save its draws to ``out/draws``
    (unless they are there); returns the trained network."""
    from calamp.bayes.store import DrawStore

    store = DrawStore(out / "draws")
    nd = train_network(cfg, k, source, workdir=out / "checkpoints", pretrained=pretrained)
    if k not in store.networks():
        meta = {
            "method": cfg.method,
            "model": nd.model.config(),
            "features": nd.features.to_dict(),
            "seed": cfg.seed,
            "config": cfg.to_dict(),
            "info": nd.info,
            "context": None if nd.context is None else nd.context.tolist(),
            "incident": None if nd.incident is None else nd.incident.tolist(),
        }
        store.save(k, nd.weights, meta)
    return nd


def store_filled(
    cfg: RunConfig, k: int, out: Path, info: dict[str, Any], filled: dict[str, Any]
) -> dict[str, Any]:
    """Write network k's generated histograms (``filled``: :func:`~calamp.generation.
    fill_network` or :func:`~calamp.generation.integrate_network` over all its draws) and facts
    to ``out/partial``, and return them as :func:`run_network` does."""
    from calamp.outputs import write_json

    part = out / "partial" / f"net{k}.npz"
    part.parent.mkdir(parents=True, exist_ok=True)
    info = {**info, "generate_seconds": filled["wall_seconds"]}
    if cfg.bin_probabilities == "quadrature":
        info["quadrature"] = filled["quadrature"]
        arrays = {f"probabilities/{key}": v for key, v in filled["probabilities"].items()}
        result = {"probabilities": filled["probabilities"], "mean_image": None, "info": info}
    else:
        arrays = {f"counts/{key}": v for key, v in filled["counts"].items()}
        arrays["n_filled"] = filled["n_filled"]
        result = {
            "counts": filled["counts"],
            "n_filled": filled["n_filled"],
            "mean_image": filled["mean_image"],
            "info": info,
        }
        if "batch_filled" in filled:  # common generation noise
            arrays.update({f"batch_counts/{key}": v for key, v in filled["batch_counts"].items()})
            arrays["batch_filled"] = filled["batch_filled"]
            result["batch_counts"] = filled["batch_counts"]
            result["batch_filled"] = filled["batch_filled"]
    if filled["mean_image"] is not None:
        arrays["mean_image"] = filled["mean_image"]
    with atomic_path(part) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    write_json(out / "partial" / f"net{k}.json", info)
    return result


def load_finished(out: Path, k: int, binnings: Mapping[str, Binning]) -> dict[str, Any]:
    """Network k's stored result (:func:`store_filled`), as :func:`run_network` returns it."""
    with np.load(out / "partial" / f"net{k}.npz") as data:
        info = json.loads((out / "partial" / f"net{k}.json").read_text())
        if "n_filled" not in data.files:  # quadrature
            return {
                "probabilities": {key: data[f"probabilities/{key}"] for key in binnings},
                "mean_image": None,
                "info": info,
            }
        result = {
            "counts": {key: data[f"counts/{key}"] for key in binnings},
            "n_filled": data["n_filled"],
            "mean_image": data["mean_image"] if "mean_image" in data.files else None,
            "info": info,
        }
        if "batch_filled" in data.files:  # common generation noise
            result["batch_counts"] = {key: data[f"batch_counts/{key}"] for key in binnings}
            result["batch_filled"] = data["batch_filled"]
        return result


def is_finished(out: Path, k: int) -> bool:
    """Whether network k's draws and histograms are stored in the results folder ``out``."""
    from calamp.bayes.store import DrawStore

    part = out / "partial"
    return ((part / f"net{k}.npz").exists() and (part / f"net{k}.json").exists()
            and k in DrawStore(out / "draws").networks())


def run_group(
    cfg: RunConfig,
    ks: tuple[int, ...],
    source: Source,
    binnings: Mapping[str, Binning],
    out: str | Path,
    *,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """:func:`run_network` for the networks ``ks`` of one group
    (:func:`calamp.posterior.network_groups`); the unfinished ones are first trained together
    (:func:`calamp.posterior.pretrain_group`). Returns the networks' results in order."""
    from calamp.posterior import pretrain_group

    todo = tuple(k for k in ks if not (resume and is_finished(Path(out), k)))
    pretrained = pretrain_group(cfg, todo, source) if len(todo) > 1 else {}
    return [
        run_network(
            cfg, k, source, binnings, out, resume=resume, pretrained=pretrained.pop(k, None)
        )
        for k in ks
    ]


def network_task(
    k: int,
    *,
    cfg: RunConfig,
    source: Source,
    binnings: Mapping[str, Binning],
    out: str,
    resume: bool = False,
) -> dict[str, Any]:
    """:func:`run_group` as an executor task (:mod:`calamp.executors`): the item is a group of
    networks (a tuple of k; an int k is the group of one).

    Refuses, in one line naming the host, to run where the results folder ``out`` (an absolute
    path) is not visible, e.g. on a dask worker without the shared filesystem.
    """
    folder = _visible(out)
    ks = (int(k),) if np.ndim(k) == 0 else tuple(int(v) for v in k)
    return run_group(cfg, ks, source, binnings, folder, resume=resume)


def draw_blocks(draws: int, workers: int) -> list[range]:
    """A network's draws cut into ``min(draws, workers)`` contiguous blocks of near-equal size:
    the generation tasks of :func:`fill_task` (one per worker, so the last network's
    generation does not run on one core while the others idle)."""
    n = max(1, min(int(draws), int(workers)))
    cuts = (np.arange(n + 1) * int(draws)) // n
    return [range(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def train_task(
    ks: tuple[int, ...],
    *,
    cfg: RunConfig,
    source: Source,
    binnings: Mapping[str, Binning],
    out: str,
    resume: bool = False,
) -> dict[int, dict[str, Any]]:
    """First stage of the job's task graph on workers (:meth:`~calamp.executors.DaskExecutor.
    map_then`): train the networks ``ks`` of one group (together where
    :func:`~calamp.posterior.pretrain_group` allows) and store their draws.

    The trained networks stay in this worker's cache for its :func:`fill_task` calls.

    Returns:
        ``{k: training facts}``.
    """
    from calamp.posterior import pretrain_group

    del binnings, resume  # finished networks never reach this task (the client loads them)
    folder = _visible(out)
    pretrained = pretrain_group(cfg, ks, source) if len(ks) > 1 else {}
    infos = {}
    for k in ks:
        nd = train_and_store(cfg, k, source, folder, pretrained=pretrained.pop(k, None))
        if cfg.method != "oracle":
            remember_network(folder / "draws", k, nd)
        infos[k] = nd.info
    return infos


def fill_task(
    item: tuple[int, int, int],
    trained: Mapping[int, dict[str, Any]],
    *,
    cfg: RunConfig,
    source: Source,
    binnings: Mapping[str, Binning],
    out: str,
    resume: bool = False,
) -> dict[str, Any]:
    """Second stage (:meth:`~calamp.executors.DaskExecutor.map_then`): item ``(k, start,
    stop)``, the draws ``start:stop`` of network k generated into histograms
    (:func:`~calamp.generation.fill_network`; per-draw seeds, so the blocks of any split
    concatenate to the whole network's), or for quadrature all draws
    (:func:`~calamp.generation.integrate_network`, the rule is chosen on draw 0).

    The network comes from this worker's cache or the draw store (the oracle is rebuilt from
    its training set); ``trained`` (the group's training facts) only orders it after training.
    """
    from calamp.posterior import oracle_network

    del trained, resume
    folder = _visible(out)
    k, start, stop = (int(v) for v in item)
    if cfg.method == "oracle":
        nd, lock = oracle_network(cfg, k, source), threading.Lock()
    else:
        nd, lock = cached_network(folder / "draws", k)
    with lock:  # one model object per worker process: tasks take turns on its weights
        if cfg.bin_probabilities == "quadrature":
            return integrate_network(cfg, nd, binnings, source.n_train)
        return fill_network(cfg, nd, source.kind, binnings, range(start, stop))


def _visible(out: str | Path) -> Path:
    """The results folder ``out``, or a one-line error naming the host where it is not visible
    (e.g. a dask worker without the shared filesystem)."""
    import socket

    from calamp.folder import MARKER

    folder = Path(out)
    if not (folder / MARKER).exists():
        msg = (f"{socket.gethostname()}: results folder {folder} is not visible here; --out "
               "must be on a filesystem shared by client and workers")
        raise CalampError(msg)
    return folder


_cache: dict[tuple[str, int], tuple[tuple[int, int], NetworkDraws, threading.Lock]] = {}
_cache_lock = threading.Lock()
CACHE_SIZE = 2
"""Networks a process keeps (a default shower network's 50 draws are ~280 MB)."""


def _keep(key: tuple[str, int], entry: tuple[tuple[int, int], NetworkDraws, threading.Lock]
          ) -> None:
    """Cache ``entry`` under ``key``, dropping the oldest entries beyond :data:`CACHE_SIZE`
    (call with ``_cache_lock`` held)."""
    _cache.pop(key, None)
    _cache[key] = entry
    while len(_cache) > CACHE_SIZE:
        del _cache[next(iter(_cache))]


def _stamp(store_root: str | Path, k: int) -> tuple[int, int]:
    stem = Path(store_root) / f"network_{k:04d}"
    return (stem.with_suffix(".json").stat().st_mtime_ns,
            stem.with_suffix(".npz").stat().st_mtime_ns)


def remember_network(store_root: str | Path, k: int, nd: NetworkDraws) -> None:
    """Keep the trained network k in this process's cache (valid while its stored draws are)."""
    with _cache_lock:
        _keep((str(store_root), int(k)), (_stamp(store_root, k), nd, threading.Lock()))


def cached_network(store_root: str | Path, k: int) -> tuple[NetworkDraws, threading.Lock]:
    """Network k of a draw store, rebuilt once per process (until its files change), and the
    lock that serialises the tasks setting its eval weights."""
    import socket

    try:
        stamp = _stamp(store_root, k)
    except FileNotFoundError:
        msg = (f"{socket.gethostname()}: no draws of network {k} under {store_root}; the draw "
               "store must be on a filesystem shared by client and workers")
        raise CalampError(msg) from None
    key = (str(store_root), int(k))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is None or hit[0] != stamp:
            hit = (stamp, load_network(store_root, k), threading.Lock())
            _keep(key, hit)
    return hit[1], hit[2]


def load_network(store_root: str | Path, k: int) -> NetworkDraws:
    """Rebuild network k (model, feature map, draws) from a draw store, without training."""
    from calamp.bayes.store import DrawStore
    from calamp.models import build_generator
    from calamp.preprocess import ShowerPreprocessor

    weights, meta = DrawStore(store_root).load(k)
    if meta["model"].get("kind") == "oracle":
        msg = "oracle networks have no stored model; re-run the job to regenerate them"
        raise CalampError(msg)
    model = build_generator(meta["model"])
    f = meta["features"]
    if f.get("kind") == "ring":
        feats: Any = RingFeatures(f["scale"])
    elif f.get("kind") == "identity":
        from calamp.models.oracle import IdentityFeatures

        feats = IdentityFeatures(f["shape"])
    else:
        feats = ShowerPreprocessor.from_dict(f)
    ctx = None if meta.get("context") is None else np.asarray(meta["context"], np.float32)
    inc = meta.get("incident")
    inc = None if inc is None else np.asarray(inc, np.float32)
    return NetworkDraws(k, model, feats, np.asarray(weights, np.float32), ctx, meta["info"], inc)
