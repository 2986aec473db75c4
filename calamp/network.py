"""One network as an independent unit of work: train, store its draws, generate.

:func:`run_network` is what an executor runs for network k (:mod:`calamp.executors`; the item
is k in :func:`network_task`): it reads only its inputs, writes the draws to ``out/draws``
(:class:`~calamp.bayes.store.DrawStore`, the hand-over to later generation) and the histogram
counts to ``out/partial``, and is skipped on ``--resume`` when they exist.
:func:`load_network` rebuilds a network from the draw store without training.
"""

from __future__ import annotations

import json
import sys
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

__all__ = ["load_network", "network_task", "run_group", "run_network"]


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
    from calamp.bayes.store import DrawStore
    from calamp.outputs import write_json

    out = Path(out)
    t0 = time.perf_counter()
    store = DrawStore(out / "draws")
    part = out / "partial" / f"net{k}.npz"
    info_path = out / "partial" / f"net{k}.json"
    if resume and _finished(out, k):
        with np.load(part) as data:
            info = json.loads(info_path.read_text())
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
    part.parent.mkdir(parents=True, exist_ok=True)
    if cfg.bin_probabilities == "quadrature":
        filled = integrate_network(cfg, nd, binnings, source.n_train)
        info = {**nd.info, "generate_seconds": filled["wall_seconds"],
                "quadrature": filled["quadrature"]}
        arrays = {f"probabilities/{key}": v for key, v in filled["probabilities"].items()}
        result = {"probabilities": filled["probabilities"], "mean_image": None, "info": info}
    else:
        filled = fill_network(cfg, nd, source.kind, binnings)
        info = {**nd.info, "generate_seconds": filled["wall_seconds"]}
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
    write_json(info_path, info)
    print(
        f"calamp: network {k + 1}/{cfg.networks} done in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    return result


def _finished(out: Path, k: int) -> bool:
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

    todo = tuple(k for k in ks if not (resume and _finished(Path(out), k)))
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
    import socket

    from calamp.folder import MARKER

    folder = Path(out)
    if not (folder / MARKER).exists():
        msg = (f"{socket.gethostname()}: results folder {folder} is not visible here; --out "
               "must be on a filesystem shared by client and workers")
        raise CalampError(msg)
    ks = (int(k),) if np.ndim(k) == 0 else tuple(int(v) for v in k)
    return run_group(cfg, ks, source, binnings, folder, resume=resume)


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
