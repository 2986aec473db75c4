"""Posterior draws on disk, so generation can run later, elsewhere or in parallel.

Layout under ``root``: per network k one ``network_{k:04d}.npz`` (array ``draws``, float32,
shape (s, P)) and one ``network_{k:04d}.json`` (``{"format": ..., "network": k, "shape":
[s, P], "meta": {...}}``). Each file is written to a temporary file in ``root`` and renamed
into place (atomic on POSIX); the JSON is renamed last and marks a complete entry. A
:class:`DrawHandle` (path, network, index) is a small picklable token that a dask worker turns
into one weight vector with :func:`load_draw`. Pure numpy and json: no TensorFlow.
"""

from __future__ import annotations

import json
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calamp.atomic import atomic_path
from calamp.stats.arrays import jsonable

__all__ = ["DrawHandle", "DrawStore", "load_draw"]

_FORMAT = "calamp.draws/1"
_NAME = re.compile(r"^network_(\d+)\.json$")


@dataclass(frozen=True)
class DrawHandle:
    """One posterior draw on disk: ``path`` of the network's .npz, ``network`` k, ``index`` i."""

    path: str
    network: int
    index: int


def _network_index(network: int) -> int:
    if isinstance(network, bool):
        msg = f"`network` must be a non-negative integer, got {network!r}"
        raise ValueError(msg)
    try:
        k = operator.index(network)
    except TypeError:
        msg = f"`network` must be a non-negative integer, got {network!r}"
        raise ValueError(msg) from None
    if k < 0:
        msg = f"`network` must be a non-negative integer, got {k}"
        raise ValueError(msg)
    return k


def load_draw(handle: DrawHandle) -> np.ndarray:
    """Load the weight vector of one draw, shape (P,) float32."""
    with np.load(handle.path) as npz:
        draws = npz["draws"]
    if not 0 <= handle.index < draws.shape[0]:
        msg = (
            f"`handle.index` {handle.index} out of range for {handle.path} ({draws.shape[0]} draws)"
        )
        raise IndexError(msg)
    return np.array(draws[handle.index], dtype=np.float32)


class DrawStore:
    """Posterior draws of K networks in the folder ``root`` (created on first save).

    Args:
        root: folder of the store.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"DrawStore({str(self.root)!r})"

    def _paths(self, network: int) -> tuple[Path, Path]:
        stem = f"network_{network:04d}"
        return self.root / f"{stem}.npz", self.root / f"{stem}.json"

    def save(
        self, network: int, draws: np.ndarray, meta: dict[str, Any], *, overwrite: bool = False
    ) -> None:
        """Store the draws of one network.

        Args:
            network: network index k ≥ 0.
            draws: (s, P) finite weight vectors; stored as float32.
            meta: JSON-serialisable description (method, hyperparameters, seed, step, model
                config); numpy scalars and arrays are converted to Python values.
            overwrite: replace an existing entry for ``network`` (refused otherwise).

        Raises:
            ValueError: bad ``network``, ``draws`` or ``meta``.
            FileExistsError: the entry exists and ``overwrite`` is false.
        """
        k = _network_index(network)
        arr = np.asarray(draws)
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
            msg = f"`draws` must have shape (s, P) with s, P >= 1, got {arr.shape}"
            raise ValueError(msg)
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
            msg = "`draws` must be finite numbers (NaN/inf found or not numeric)"
            raise ValueError(msg)
        if not isinstance(meta, dict):
            msg = f"`meta` must be a dict, got {type(meta).__name__}"
            raise ValueError(msg)
        record = {"format": _FORMAT, "network": k, "shape": list(arr.shape), "meta": meta}
        try:
            text = json.dumps(jsonable(record), allow_nan=False, indent=1)
        except (TypeError, ValueError) as err:
            msg = f"`meta` is not JSON-serialisable: {err}"
            raise ValueError(msg) from err
        npz_path, json_path = self._paths(k)
        if not overwrite and (npz_path.exists() or json_path.exists()):
            msg = f"draws of network {k} exist in {self.root}: pass overwrite=True to replace them"
            raise FileExistsError(msg)
        self.root.mkdir(parents=True, exist_ok=True)
        if overwrite:
            json_path.unlink(missing_ok=True)  # the entry is incomplete until the JSON is back
        data = np.ascontiguousarray(arr, dtype=np.float32)
        with atomic_path(npz_path, fsync=True) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, draws=data)
        with atomic_path(json_path, fsync=True) as tmp:
            tmp.write_text(text, encoding="utf-8")

    def _record(self, network: int) -> dict[str, Any]:
        k = _network_index(network)
        npz_path, json_path = self._paths(k)
        if not (json_path.exists() and npz_path.exists()):
            msg = f"no draws of network {k} in {self.root} (networks: {self.networks()})"
            raise FileNotFoundError(msg)
        with json_path.open(encoding="utf-8") as fh:
            record = json.load(fh)
        if record.get("format") != _FORMAT:
            msg = f"{json_path} is not a calamp draw record (format {record.get('format')!r})"
            raise ValueError(msg)
        return record

    def load(self, network: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Draws (s, P) float32 and the meta dict of one network."""
        record = self._record(network)
        npz_path, _ = self._paths(_network_index(network))
        with np.load(npz_path) as npz:
            draws = npz["draws"]
        if list(draws.shape) != record["shape"]:
            msg = f"{npz_path} holds shape {draws.shape}, its JSON says {tuple(record['shape'])}"
            raise ValueError(msg)
        return draws, record["meta"]

    def networks(self) -> list[int]:
        """Sorted indices of the networks with a complete entry."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            match = _NAME.match(path.name)
            if match and path.with_suffix(".npz").exists():
                found.append(int(match.group(1)))
        return sorted(found)

    def handles(self) -> list[DrawHandle]:
        """One :class:`DrawHandle` per stored draw, ordered by network then draw index."""
        out = []
        for k in self.networks():
            n_draws = int(self._record(k)["shape"][0])
            path = os.fspath(self._paths(k)[0])
            out.extend(DrawHandle(path=path, network=k, index=i) for i in range(n_draws))
        return out
