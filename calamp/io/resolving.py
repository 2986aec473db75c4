"""Opening a ROOT file and resolving tree, layout, branches, image shape and entry range.

:func:`_open` checks that the path is a readable ROOT file; :func:`_resolve` turns the reader
arguments into a :class:`_Plan` (the input layouts are described in :mod:`calamp.io.reading`).
Storage objects are dispatched on their class name, ``TTree`` or ``ROOT::RNTuple``.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calamp.io.errors import (
    BranchError,
    CalampError,
    CorruptFileError,
    EmptyTreeError,
    MissingFileError,
    NotRootError,
    TreeError,
    _closest,
    _describe,
    _where,
)

_STORAGE_CLASSES = ("TTree", "TNtuple", "TNtupleD", "ROOT::RNTuple")
_DEFAULT_SPARSE_SHAPE = (10, 10)


def _open(path: str) -> Any:
    import uproot

    if not os.path.exists(path):
        msg = f"{_where(path)}: no such file"
        raise MissingFileError(msg)
    if os.path.isdir(path):
        msg = f"{_where(path)}: is a directory, not a ROOT file"
        raise NotRootError(msg)
    with open(path, "rb") as fh:
        head = fh.read(20)
    if head[:4] != b"root":
        msg = f"{_where(path)}: not a ROOT file (it does not start with the bytes 'root')"
        raise NotRootError(msg)
    size = os.path.getsize(path)
    if len(head) == 20:
        version = struct.unpack(">i", head[4:8])[0]
        end = (
            struct.unpack(">q", head[12:20])[0]
            if version >= 1000000
            else struct.unpack(">i", head[12:16])[0]
        )
        if size < end:
            msg = f"{_where(path)}: truncated ROOT file ({size} bytes, its header says {end})"
            raise CorruptFileError(msg)
    try:
        return uproot.open(path)
    except Exception as err:
        msg = f"{_where(path)}: cannot open ROOT file ({_describe(err)})"
        raise CorruptFileError(msg) from err


@dataclass(frozen=True)
class _Plan:
    """What to read: resolved tree, layout, branch names, image shape and entry range."""

    path: str
    tree: str
    layout: str  # "dense" or "sparse"
    energy: str | None
    cells: tuple[str, str, str] | None
    incident: str | None
    incident_value: float | None
    shape: tuple[int, int] | None
    start: int
    stop: int


def _storages(f: Any) -> dict[str, str]:
    """Tree-like objects in the file: name (no cycle) -> class name."""
    out: dict[str, str] = {}
    for key, cls in f.classnames().items():
        if cls in _STORAGE_CLASSES:
            out.setdefault(key.rsplit(";", 1)[0], cls)
    return out


def _layout_branches(
    keys: set[str],
    energy: str | None,
    cells: tuple[str | None, str | None, str | None],
) -> tuple[str, list[str]] | None:
    """Layout and required branch names for an object with these keys (None: unsuitable)."""
    sparse_names = tuple(c or d for c, d in zip(cells, ("cell_x", "cell_y", "cell_e"), strict=True))
    if any(c is not None for c in cells):
        return "sparse", list(sparse_names)
    if energy is not None:
        return "dense", [energy]
    if "energy" in keys:
        return "dense", ["energy"]
    if set(sparse_names) <= keys:
        return "sparse", list(sparse_names)
    return None


def _check_shape_arg(shape: Sequence[int] | None) -> tuple[int, int] | None:
    if shape is None:
        return None
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        msg = f"`shape` must be a pair (ny, nx) of positive integers, got {shape!r}"
        raise ValueError(msg) from None
    if ny < 1 or nx < 1:
        msg = f"`shape` must be a pair (ny, nx) of positive integers, got {shape!r}"
        raise ValueError(msg)
    return ny, nx


def _resolve(
    path: str | os.PathLike,
    tree: str | None,
    energy: str | None,
    incident_energy: str | float | None,
    cell_x: str | None,
    cell_y: str | None,
    cell_e: str | None,
    shape: Sequence[int] | None,
    entry_start: int | None,
    entry_stop: int | None,
) -> _Plan:
    p = os.fspath(path)
    shp = _check_shape_arg(shape)
    incident_value = None
    if isinstance(incident_energy, int | float | np.number) and not isinstance(
        incident_energy, bool
    ):
        incident_value = float(incident_energy)
        if not (math.isfinite(incident_value) and incident_value > 0):
            msg = (
                f"`incident_energy` must be a branch name or a number > 0, got {incident_energy!r}"
            )
            raise ValueError(msg)
    with _open(p) as f:
        try:
            return _resolve_open(
                f,
                p,
                tree,
                energy,
                incident_energy,
                incident_value,
                (cell_x, cell_y, cell_e),
                shp,
                entry_start,
                entry_stop,
            )
        except CalampError:
            raise
        except Exception as err:
            msg = f"{_where(p, tree)}: cannot read the file structure ({_describe(err)})"
            raise CorruptFileError(msg) from err


def _resolve_open(
    f: Any,
    p: str,
    tree: str | None,
    energy: str | None,
    incident_energy: str | float | None,
    incident_value: float | None,
    cells: tuple[str | None, str | None, str | None],
    shp: tuple[int, int] | None,
    entry_start: int | None,
    entry_stop: int | None,
) -> _Plan:
    storages = _storages(f)
    if tree is None:
        suitable = []
        for name in storages:
            keys = set(f[name].keys())
            lay = _layout_branches(keys, energy, cells)
            if lay is not None and set(lay[1]) <= keys:
                suitable.append(name)
        if not storages:
            msg = f"{_where(p)}: no TTree or RNTuple in the file (keys: {_closest('', f.keys())})"
            raise TreeError(msg)
        if not suitable:
            wanted = energy or (
                "cell_x/cell_y/cell_e" if any(cells) else "'energy' or cell_x/cell_y/cell_e"
            )
            listing = "; ".join(
                f"'{n}' ({', '.join(sorted(f[n].keys())) or 'no branches'})" for n in storages
            )
            msg = f"{_where(p)}: no tree has the branches {wanted}; trees: {listing}"
            raise TreeError(msg)
        if len(suitable) > 1:
            names = ", ".join(f"'{n}'" for n in sorted(suitable))
            msg = f"{_where(p)}: several candidate trees ({names}); choose one with --tree"
            raise TreeError(msg)
        tree = suitable[0]
    elif tree not in storages:
        if tree in {k.rsplit(";", 1)[0] for k in f.keys()}:
            msg = f"{_where(p, tree)}: is a {f.classname_of(tree)}, not a TTree or RNTuple"
            raise TreeError(msg)
        msg = f"{_where(p, tree)}: no such tree; available: {_closest(tree, storages)}"
        raise TreeError(msg)
    obj = f[tree]
    keys = set(obj.keys())
    lay = _layout_branches(keys, energy, cells)
    if lay is None:
        msg = (
            f"{_where(p, tree, 'energy')}: missing branch (nor cell_x/cell_y/cell_e); "
            f"available: {_closest('energy', keys)}"
        )
        raise BranchError(msg)
    layout, names = lay
    for name in names:
        if name not in keys:
            msg = f"{_where(p, tree, name)}: missing branch; available: {_closest(name, keys)}"
            raise BranchError(msg)
    incident = None
    if incident_value is None:
        incident = incident_energy if isinstance(incident_energy, str) else "incident_energy"
        if incident not in keys:
            msg = (
                f"{_where(p, tree, incident)}: missing branch; available: "
                f"{_closest(incident, keys)}; pass a number (GeV) as incident_energy to use "
                "a constant"
            )
            raise BranchError(msg)
    n = int(obj.num_entries)
    if n == 0:
        msg = f"{_where(p, tree)}: the tree has no entries"
        raise EmptyTreeError(msg)
    start, stop, _ = slice(entry_start, entry_stop).indices(n)
    if stop <= start:
        msg = (
            f"{_where(p, tree)}: entry range [{entry_start}, {entry_stop}) selects no entries "
            f"(the tree has {n})"
        )
        raise EmptyTreeError(msg)
    if layout == "sparse" and shp is None:
        shp = _DEFAULT_SPARSE_SHAPE
    return _Plan(
        path=p,
        tree=tree,
        layout=layout,
        energy=names[0] if layout == "dense" else None,
        cells=tuple(names) if layout == "sparse" else None,
        incident=incident,
        incident_value=incident_value,
        shape=shp,
        start=start,
        stop=stop,
    )
