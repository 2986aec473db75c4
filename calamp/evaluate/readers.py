"""Readers of per-draw samples: every one yields ``(k, i, images, incident)``.

Inputs for the draws (streamed chunk by chunk into the histograms, never held whole):

* a ROOT file with ``energy`` (N, ny, nx), ``incident_energy``, ``network`` and ``draw``
  branches — the layout ``calamp.run --write-samples`` writes;
* CaloChallenge-style HDF5 (``showers`` (N, voxels or ny, nx), ``incident_energies`` (N, 1)),
  either one file with ``network``/``draw`` datasets or a folder ``network_K/draw_I.h5``;
* in Python: an array (K, s, g, ny, nx), an iterable of ``(k, i, images)`` or
  ``(k, i, images, incident)``, or a callable ``sample(k, i, n) -> images`` (a torch or JAX
  model wrapped in a lambda), see :func:`calamp.evaluate.evaluate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from calamp.evaluate.errors import EvaluateError

__all__ = ["iterate_samples"]

_CHUNK = 50_000


# ------------------------------------------------------------------------------------------------
# readers: every one yields (k, i, images (n, ny, nx) GeV, incident (n,) GeV or None)
# ------------------------------------------------------------------------------------------------
def _check_images(images: Any, where: str, shape: tuple[int, int] | None) -> np.ndarray:
    arr = np.asarray(images, np.float64)
    if shape is not None and arr.ndim == 2:
        if arr.shape[1] != shape[0] * shape[1]:
            msg = f"{where}: {arr.shape[1]} voxels do not fit --shape {shape[0]},{shape[1]}"
            raise EvaluateError(msg)
        arr = arr.reshape(len(arr), *shape)
    elif arr.ndim == 2:
        side = int(round(np.sqrt(arr.shape[1])))
        if side * side != arr.shape[1]:
            msg = f"{where}: flat showers of {arr.shape[1]} voxels: give --shape NY,NX"
            raise EvaluateError(msg)
        arr = arr.reshape(len(arr), side, side)
    if arr.ndim != 3:
        msg = f"{where}: showers must have shape (N, ny, nx), got {arr.shape}"
        raise EvaluateError(msg)
    if not np.all(np.isfinite(arr)):
        msg = f"{where}: showers contain NaN or inf"
        raise EvaluateError(msg)
    if np.any(arr < 0):
        msg = f"{where}: showers contain negative cell energies"
        raise EvaluateError(msg)
    return arr


def _root_samples(path: Path, tree: str | None, chunk: int) -> Iterator[tuple]:
    import uproot

    from calamp import io

    try:
        f = uproot.open(path)
    except Exception as err:  # noqa: BLE001 - any failure to open is the user's file
        msg = f"{path}: not a readable ROOT file ({type(err).__name__})"
        raise EvaluateError(msg) from None
    names = [tree] if tree else sorted({k.split(";")[0] for k in f.keys()})
    trees = [n for n in names if n in f and hasattr(f[n], "keys")]
    found = [n for n in trees if {"network", "draw"} <= set(f[n].keys())]
    if not found:
        msg = (
            f"{path}: no tree with `network` and `draw` branches (trees: {', '.join(trees)}); "
            "per-draw samples need both, as `calamp.run --write-samples` writes them"
        )
        raise EvaluateError(msg)
    name = found[0]
    ids = uproot.iterate(f"{path}:{name}", ["network", "draw"], step_size=chunk, library="np")
    showers = io.iterate_showers(path, tree=name, step_size=chunk)
    for sh, idx in zip(showers, ids, strict=True):
        yield from _split_pairs(idx["network"], idx["draw"], sh.energy, sh.incident_energy)


def _split_pairs(net: np.ndarray, draw: np.ndarray, images: np.ndarray, inc: Any) -> Iterator:
    """One chunk of mixed (network, draw) rows -> one item per pair, in file order."""
    net, draw = np.asarray(net, np.int64).ravel(), np.asarray(draw, np.int64).ravel()
    inc = None if inc is None else np.asarray(inc, np.float64).ravel()
    pairs = np.stack([net, draw], axis=1)
    uniq = np.unique(pairs, axis=0)
    for k, i in uniq:
        sel = (net == k) & (draw == i)
        yield int(k), int(i), images[sel], None if inc is None else inc[sel]


def _h5_datasets(f: Any, where: str) -> tuple[Any, Any]:
    if "showers" not in f:
        msg = f"{where}: no `showers` dataset (CaloChallenge layout: showers, incident_energies)"
        raise EvaluateError(msg)
    return f["showers"], f["incident_energies"] if "incident_energies" in f else None


def _h5_file(path: Path, chunk: int, k: int | None, i: int | None) -> Iterator[tuple]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        msg = f"{path}: not a readable HDF5 file ({err})"
        raise EvaluateError(msg) from None
    with f:
        showers, inc = _h5_datasets(f, str(path))
        if k is None and not {"network", "draw"} <= set(f.keys()):
            msg = (
                f"{path}: no `network` and `draw` datasets; give a folder of "
                "network_K/draw_I.h5 files instead"
            )
            raise EvaluateError(msg)
        for a in range(0, len(showers), chunk):
            b = min(len(showers), a + chunk)
            images = showers[a:b]
            e = None if inc is None else inc[a:b]
            if k is None:
                yield from _split_pairs(f["network"][a:b], f["draw"][a:b], images, e)
            else:
                yield k, i, images, None if e is None else np.asarray(e).ravel()


def _h5_folder(root: Path, chunk: int) -> Iterator[tuple]:
    files = sorted(root.glob("network_*/draw_*.h5"))
    if not files:
        msg = f"{root}: no network_K/draw_I.h5 files"
        raise EvaluateError(msg)
    for path in files:
        try:
            k = int(path.parent.name.split("_", 1)[1])
            i = int(path.stem.split("_", 1)[1])
        except ValueError:
            msg = f"{path}: expected network_K/draw_I.h5 with integers K and I"
            raise EvaluateError(msg) from None
        yield from _h5_file(path, chunk, k, i)


def iterate_samples(
    source: str | Path, *, tree: str | None = None, chunk: int = _CHUNK
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray | None]]:
    """Stream per-draw samples from a ROOT file, an HDF5 file or a folder of HDF5 files.

    Yields:
        ``(k, i, images, incident)``: network, draw, (n, ny, nx) or flat (n, voxels) cell
        energies in GeV, (n,) incident energies in GeV (or None).
    """
    path = Path(source)
    if path.is_dir():
        return _h5_folder(path, chunk)
    if not path.exists():
        msg = f"{path}: no such file or folder"
        raise EvaluateError(msg)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return _h5_file(path, chunk, None, None)
    return _root_samples(path, tree, chunk)


def _from_python(
    draws: Any, networks: int | None, n_draws: int | None, events: int | None, chunk: int
) -> Iterator[tuple]:
    if callable(draws):
        if not (networks and n_draws and events):
            msg = "a callable `draws` needs `networks`, `n_draws` and `events`"
            raise EvaluateError(msg)
        for k in range(networks):
            for i in range(n_draws):
                left = events
                while left > 0:  # the callable is asked for chunks of at most `chunk`
                    n = min(chunk, left)
                    yield k, i, draws(k, i, n), None
                    left -= n
        return
    if isinstance(draws, np.ndarray):
        if draws.ndim != 5:
            msg = f"`draws` array must have shape (K, s, g, ny, nx), got {draws.shape}"
            raise EvaluateError(msg)
        for k in range(draws.shape[0]):
            for i in range(draws.shape[1]):
                for a in range(0, draws.shape[2], chunk):
                    yield k, i, draws[k, i, a : a + chunk], None
        return
    for item in draws:
        if len(item) == 3:
            yield (*item, None)
        else:
            yield tuple(item)
