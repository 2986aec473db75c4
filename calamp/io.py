"""Reading, validating and writing calorimeter showers (numpy, uproot, awkward).

Input layouts (see DESIGN.md, "Input contract"), in a TTree or an RNTuple (dispatched on the
object's class name, ``TTree`` or ``ROOT::RNTuple``):

* dense: branch ``energy`` with a fixed-size array per entry, either ``(ny, nx)`` or flat
  ``(ny * nx,)`` (reshaped with ``shape``, default square); a variable-length branch is accepted
  when every entry has the same number of cells;
* sparse: jagged branches ``cell_x``, ``cell_y`` (integer column / row indices,
  ``0 <= cell_x < nx``) and ``cell_e`` (energies); densified into ``(ny, nx)`` images (``shape``,
  default ``(10, 10)``); repeated indices in one entry are summed.

The incident energy comes from the branch ``incident_energy`` (float, GeV); a file without it is
an error, unless the caller passes a number as ``incident_energy``, which is then used for every
entry.

Values: NaN or infinite energies, incident energies <= 0, and cell energies below
``-NEGATIVE_TOLERANCE_GEV`` are errors naming the first offending entry; cell energies in
``[-NEGATIVE_TOLERANCE_GEV, 0)`` (float rounding) are clipped to 0.

Every problem with an input is an :class:`InputError` subclass whose one-line message names the
file and, where they apply, the tree, the branch and the entry number (counted from the start of
the tree). All calamp errors derive from :class:`CalampError`; the command lines map it to exit
code 2.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import awkward as ak

# uproot and awkward are imported inside the functions that need them, so that
# ``from calamp.io import ShowerSet`` (used by the numpy-only simulator) stays light.

__all__ = [
    "NEGATIVE_TOLERANCE_GEV",
    "BadValueError",
    "BranchError",
    "CalampError",
    "CorruptFileError",
    "EmptyTreeError",
    "InputError",
    "MissingFileError",
    "NotRootError",
    "OutputExistsError",
    "ShowerSet",
    "TreeError",
    "iterate_showers",
    "read_provenance",
    "read_showers",
    "write_showers",
]

PROVENANCE_KEY = "calamp_provenance"
"""Name of the TObjString holding how a shower file was made (JSON), see :func:`write_showers`."""

NEGATIVE_TOLERANCE_GEV = 1e-6
"""Cell energies in ``[-NEGATIVE_TOLERANCE_GEV, 0)`` GeV are clipped to 0; lower ones are errors."""

_STORAGE_CLASSES = ("TTree", "TNtuple", "TNtupleD", "ROOT::RNTuple")
_DEFAULT_SPARSE_SHAPE = (10, 10)


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


class CalampError(Exception):
    """Base class of all errors calamp raises on purpose (command lines exit with code 2)."""


class InputError(CalampError):
    """An input file cannot be used; the message names file, tree, branch and entry."""


class MissingFileError(InputError):
    """The input file does not exist."""


class NotRootError(InputError):
    """The input is not a ROOT file."""


class CorruptFileError(InputError):
    """The ROOT file is truncated or cannot be decoded."""


class TreeError(InputError):
    """No suitable tree / RNTuple, several candidates, or the named one is missing."""


class EmptyTreeError(TreeError):
    """The tree (or the requested entry range) has no entries."""


class BranchError(InputError):
    """A branch is missing or has the wrong type or shape."""


class BadValueError(InputError):
    """A value is NaN/inf, negative, or an index is out of range."""


class OutputExistsError(CalampError):
    """An output file exists and ``overwrite`` was not given."""


def _where(path: str, tree: str | None = None, branch: str | None = None, entry=None) -> str:
    parts = [f"file '{path}'"]
    if tree is not None:
        parts.append(f"tree '{tree}'")
    if branch is not None:
        parts.append(f"branch '{branch}'")
    if entry is not None:
        parts.append(f"entry {entry}")
    return ", ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _describe(err: BaseException, limit: int = 160) -> str:
    text = _one_line(err)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}"


def _closest(name: str, available: Iterable[str]) -> str:
    avail = sorted(set(available))
    if not avail:
        return "none"
    ranked = sorted(
        avail, key=lambda a: -difflib.SequenceMatcher(None, name.lower(), a.lower()).ratio()
    )
    return ", ".join(f"'{a}'" for a in ranked)


# ----------------------------------------------------------------------------------------------
# ShowerSet
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ShowerSet:
    """A set of calorimeter images.

    Attributes:
        energy: (N, ny, nx) float32 cell energies in GeV.
        incident_energy: (N,) float32 incident energies in GeV.
        source: Where the showers came from (file path, or ``"simulate"``).
    """

    energy: np.ndarray
    incident_energy: np.ndarray
    source: str = field(default="")

    def __post_init__(self) -> None:
        e = np.ascontiguousarray(self.energy, dtype=np.float32)
        inc = np.ascontiguousarray(self.incident_energy, dtype=np.float32)
        if e.ndim != 3:
            msg = f"`energy` must have shape (N, ny, nx), got {e.shape}"
            raise ValueError(msg)
        if inc.shape != (e.shape[0],):
            msg = f"`incident_energy` must have shape ({e.shape[0]},), got {inc.shape}"
            raise ValueError(msg)
        object.__setattr__(self, "energy", e)
        object.__setattr__(self, "incident_energy", inc)

    def __len__(self) -> int:
        return self.energy.shape[0]

    def __getitem__(self, index: Any) -> ShowerSet:
        """Select showers by slice, index array or boolean mask (an int gives a set of one)."""
        if isinstance(index, int | np.integer):
            index = slice(index, index + 1 if index != -1 else None)
        return ShowerSet(self.energy[index], self.incident_energy[index], self.source)

    def __repr__(self) -> str:
        return f"ShowerSet(n={len(self)}, shape={self.shape}, source={self.source!r})"

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape ``(ny, nx)``."""
        return self.energy.shape[1], self.energy.shape[2]

    @property
    def n_cells(self) -> int:
        """Cells per image, ``ny * nx``."""
        return self.energy.shape[1] * self.energy.shape[2]

    @classmethod
    def concatenate(cls, sets: Sequence[ShowerSet]) -> ShowerSet:
        """Join sets with equal image shapes, in order."""
        sets = list(sets)
        if not sets:
            msg = "`sets` must contain at least one ShowerSet"
            raise ValueError(msg)
        shapes = {s.shape for s in sets}
        if len(shapes) > 1:
            msg = f"`sets` have different image shapes: {sorted(shapes)}"
            raise ValueError(msg)
        sources = list(dict.fromkeys(s.source for s in sets))
        return cls(
            np.concatenate([s.energy for s in sets]),
            np.concatenate([s.incident_energy for s in sets]),
            ", ".join(sources),
        )

    def split(self, k: int, seed: int | np.random.SeedSequence | None = None) -> list[ShowerSet]:
        """Split into ``k`` disjoint sets whose sizes differ by at most one.

        Args:
            k: Number of parts (e.g. one per independent network).
            seed: None keeps the order (contiguous parts); otherwise the showers are shuffled
                with this seed first.

        Returns:
            List of ``k`` ShowerSets that together hold every shower exactly once.
        """
        if not isinstance(k, int | np.integer) or not 1 <= k <= len(self):
            msg = f"`k` must be an integer in [1, {len(self)}], got {k!r}"
            raise ValueError(msg)
        index = np.arange(len(self))
        if seed is not None:
            index = np.random.default_rng(seed).permutation(len(self))
        return [self[part] for part in np.array_split(index, k)]


# ----------------------------------------------------------------------------------------------
# Opening and resolving
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Converting chunks
# ----------------------------------------------------------------------------------------------


def _numeric(values: np.ndarray, plan: _Plan, branch: str, kinds: str = "fiu") -> None:
    if values.dtype.kind not in kinds:
        want = "integer" if kinds == "iu" else "numeric"
        msg = (
            f"{_where(plan.path, plan.tree, branch)}: expected {want} values, found {values.dtype}"
        )
        raise BranchError(msg)


def _first_entry(mask_per_entry: np.ndarray, offset: int) -> int:
    return offset + int(np.argmax(mask_per_entry))


def _dense_images(arr: ak.Array, plan: _Plan, offset: int) -> np.ndarray:
    import awkward as ak

    branch = plan.energy
    where = _where(plan.path, plan.tree, branch)
    if arr.ndim == 1:
        msg = f"{where}: expected an array of cells per entry, found one number per entry"
        raise BranchError(msg)
    try:
        values = ak.to_numpy(arr)
    except ValueError:
        values = None
    if values is None:  # variable-length lists: accept if every entry has the same length
        if arr.ndim != 2:
            msg = f"{where}: expected a fixed-size array of cells per entry, found {arr.type}"
            raise BranchError(msg)
        counts = ak.to_numpy(ak.num(arr, axis=1))
        expected = math.prod(plan.shape) if plan.shape else int(counts[0])
        bad = counts != expected
        if bad.any():
            entry = _first_entry(bad, offset)
            msg = (
                f"{_where(plan.path, plan.tree, branch, entry)}: wrong shape, "
                f"{counts[int(np.argmax(bad))]} cells, expected {expected}"
            )
            raise BranchError(msg)
        values = ak.to_numpy(ak.flatten(arr)).reshape(len(arr), expected)
    _numeric(values, plan, branch)
    if values.ndim == 3:
        if plan.shape is not None and values.shape[1:] != plan.shape:
            msg = f"{where}: wrong shape, entries are {values.shape[1:]}, expected {plan.shape}"
            raise BranchError(msg)
        return values.astype(np.float32, copy=False)
    if values.ndim != 2:
        msg = f"{where}: wrong shape, entries are {values.shape[1:]}, expected (ny, nx) or (cells,)"
        raise BranchError(msg)
    k = values.shape[1]
    if plan.shape is not None:
        if math.prod(plan.shape) != k:
            msg = f"{where}: wrong shape, {k} cells per entry cannot form {plan.shape}"
            raise BranchError(msg)
        shp = plan.shape
    else:
        side = math.isqrt(k)
        if side * side != k:
            msg = f"{where}: {k} cells per entry is not a square image; pass shape=(ny, nx)"
            raise BranchError(msg)
        shp = (side, side)
    return values.reshape(len(values), *shp).astype(np.float32, copy=False)


def _sparse_images(chunk: ak.Array, plan: _Plan, offset: int) -> np.ndarray:
    import awkward as ak

    bx, by, be = plan.cells
    ny, nx = plan.shape
    n = len(chunk)
    parts = {}
    counts = None
    for name in (bx, by, be):
        arr = chunk[name]
        if arr.ndim != 2:
            where = _where(plan.path, plan.tree, name)
            msg = f"{where}: expected a variable-length list per entry, found {arr.type}"
            raise BranchError(msg)
        c = ak.to_numpy(ak.num(arr, axis=1))
        if counts is None:
            counts = c
        elif (c != counts).any():
            bad = c != counts
            entry = _first_entry(bad, offset)
            i = int(np.argmax(bad))
            msg = (
                f"{_where(plan.path, plan.tree, name, entry)}: {c[i]} values but "
                f"'{bx}' has {counts[i]}"
            )
            raise BranchError(msg)
        parts[name] = ak.to_numpy(ak.flatten(arr))
    _numeric(parts[bx], plan, bx, "iu")
    _numeric(parts[by], plan, by, "iu")
    _numeric(parts[be], plan, be)
    owner = np.repeat(np.arange(n), counts)
    for name, size in ((bx, nx), (by, ny)):
        idx = parts[name]
        bad = (idx < 0) | (idx >= size)
        if bad.any():
            i = int(np.argmax(bad))
            entry = offset + int(owner[i])
            msg = (
                f"{_where(plan.path, plan.tree, name, entry)}: cell index {idx[i]} out of range "
                f"[0, {size}) for shape {plan.shape}"
            )
            raise BadValueError(msg)
    e = parts[be].astype(np.float32, copy=False)
    finite = np.isfinite(e)
    if not finite.all():
        i = int(np.argmax(~finite))
        where = _where(plan.path, plan.tree, be, offset + int(owner[i]))
        msg = f"{where}: value {e[i]} is not finite"
        raise BadValueError(msg)
    low = e < -NEGATIVE_TOLERANCE_GEV
    if low.any():
        i = int(np.argmax(low))
        msg = (
            f"{_where(plan.path, plan.tree, be, offset + int(owner[i]))}: negative energy "
            f"{e[i]:.6g} GeV (below -{NEGATIVE_TOLERANCE_GEV:g})"
        )
        raise BadValueError(msg)
    flat = owner * (ny * nx) + parts[by].astype(np.intp) * nx + parts[bx].astype(np.intp)
    dense = np.bincount(flat, weights=e, minlength=n * ny * nx)
    return dense.reshape(n, ny, nx).astype(np.float32)


def _check_values(images: np.ndarray, plan: _Plan, offset: int) -> np.ndarray:
    flat = images.reshape(len(images), -1)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        entry = _first_entry(bad, offset)
        row = flat[int(np.argmax(bad))]
        value = row[~np.isfinite(row)][0]
        msg = f"{_where(plan.path, plan.tree, plan.energy, entry)}: value {value} is not finite"
        raise BadValueError(msg)
    bad = (flat < -NEGATIVE_TOLERANCE_GEV).any(axis=1)
    if bad.any():
        entry = _first_entry(bad, offset)
        value = flat[int(np.argmax(bad))].min()
        msg = (
            f"{_where(plan.path, plan.tree, plan.energy, entry)}: negative energy {value:.6g} GeV "
            f"(below -{NEGATIVE_TOLERANCE_GEV:g})"
        )
        raise BadValueError(msg)
    if (flat < 0).any():
        images = np.maximum(images, np.float32(0.0))
    return images


def _incident(chunk: ak.Array, plan: _Plan, offset: int) -> np.ndarray:
    import awkward as ak

    n = len(chunk)
    if plan.incident is None:
        return np.full(n, plan.incident_value, dtype=np.float32)
    arr = chunk[plan.incident]
    where = _where(plan.path, plan.tree, plan.incident)
    if arr.ndim != 1:
        msg = f"{where}: expected one number per entry, found {arr.type}"
        raise BranchError(msg)
    values = ak.to_numpy(arr)
    _numeric(values, plan, plan.incident)
    values = values.astype(np.float32, copy=False)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        entry = _first_entry(bad, offset)
        msg = (
            f"{_where(plan.path, plan.tree, plan.incident, entry)}: incident energy "
            f"{values[int(np.argmax(bad))]} is not a finite number > 0"
        )
        raise BadValueError(msg)
    return values


def _convert(chunk: ak.Array, plan: _Plan, offset: int) -> ShowerSet:
    if plan.layout == "dense":
        images = _check_values(_dense_images(chunk[plan.energy], plan, offset), plan, offset)
    else:
        images = _sparse_images(chunk, plan, offset)
        if (images < 0).any():
            images = np.maximum(images, np.float32(0.0))
    return ShowerSet(images, _incident(chunk, plan, offset), source=plan.path)


def _branch_names(plan: _Plan) -> list[str]:
    names = [plan.energy] if plan.layout == "dense" else list(plan.cells)
    if plan.incident is not None:
        names.append(plan.incident)
    return names


def _iterate(plan: _Plan, step_size: int | str) -> Iterator[ShowerSet]:
    with _open(plan.path) as f:
        obj = f[plan.tree]
        it = obj.iterate(
            _branch_names(plan),
            entry_start=plan.start,
            entry_stop=plan.stop,
            step_size=step_size,
            library="ak",
        )
        offset = plan.start
        while True:
            try:
                chunk = next(it)
            except StopIteration:
                return
            except Exception as err:
                msg = (
                    f"{_where(plan.path, plan.tree)}: cannot read entries from {offset} "
                    f"({_describe(err)})"
                )
                raise CorruptFileError(msg) from err
            yield _convert(chunk, plan, offset)
            offset += len(chunk)


# ----------------------------------------------------------------------------------------------
# Public reading
# ----------------------------------------------------------------------------------------------


def iterate_showers(
    path: str | os.PathLike,
    tree: str | None = None,
    energy: str | None = None,
    incident_energy: str | float | None = None,
    *,
    cell_x: str | None = None,
    cell_y: str | None = None,
    cell_e: str | None = None,
    shape: Sequence[int] | None = None,
    entry_start: int | None = None,
    entry_stop: int | None = None,
    step_size: int | str = "100 MB",
) -> Iterator[ShowerSet]:
    """Read showers chunk by chunk (files larger than memory).

    The file, tree and branches are checked when this function is called; value errors
    (NaN, negative energies, indices out of range) are raised by the chunk that holds them.

    Args:
        path: ROOT file.
        tree: TTree or RNTuple name; None picks the only one with a suitable branch set.
        energy: Dense cell-energy branch (default ``energy``).
        incident_energy: Branch name (default ``incident_energy``), or a number in GeV used for
            every entry.
        cell_x: Sparse column-index branch (default ``cell_x``; naming any of the three selects
            the sparse layout).
        cell_y: Sparse row-index branch (default ``cell_y``).
        cell_e: Sparse cell-energy branch in GeV (default ``cell_e``).
        shape: Image shape ``(ny, nx)``; default: the stored shape, or square for a flat dense
            branch, or ``(10, 10)`` for the sparse layout.
        entry_start: First entry (Python slice semantics).
        entry_stop: Entry after the last one.
        step_size: Entries (int) or memory (e.g. ``"100 MB"``) per chunk, as in uproot.

    Yields:
        ShowerSet chunks with ``energy`` (chunk, ny, nx) float32 GeV.

    Raises:
        InputError: a subclass naming the file, tree, branch and entry at fault.
    """
    plan = _resolve(
        path, tree, energy, incident_energy, cell_x, cell_y, cell_e, shape, entry_start, entry_stop
    )
    return _iterate(plan, step_size)


def read_showers(
    path: str | os.PathLike,
    tree: str | None = None,
    energy: str | None = None,
    incident_energy: str | float | None = None,
    *,
    cell_x: str | None = None,
    cell_y: str | None = None,
    cell_e: str | None = None,
    shape: Sequence[int] | None = None,
    entry_start: int | None = None,
    entry_stop: int | None = None,
    step_size: int | str = "100 MB",
) -> ShowerSet:
    """Read all selected showers into memory; arguments as in :func:`iterate_showers`.

    Returns:
        ShowerSet with ``energy`` (N, ny, nx) float32 GeV, ``incident_energy`` (N,) float32 GeV
        and ``source`` the file path.
    """
    chunks = list(
        iterate_showers(
            path,
            tree,
            energy,
            incident_energy,
            cell_x=cell_x,
            cell_y=cell_y,
            cell_e=cell_e,
            shape=shape,
            entry_start=entry_start,
            entry_stop=entry_stop,
            step_size=step_size,
        )
    )
    if len(chunks) == 1:
        return chunks[0]
    return ShowerSet.concatenate(chunks)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def write_showers(
    path: str | os.PathLike,
    showers: ShowerSet,
    *,
    tree: str = "showers",
    overwrite: bool = False,
    extra_branches: Mapping[str, np.ndarray] | None = None,
    rntuple: bool = False,
    chunk_size: int = 50_000,
    provenance: Mapping[str, Any] | None = None,
) -> str:
    """Write showers in the dense layout: ``energy`` (ny, nx) float32 and ``incident_energy``.

    The file is written under a temporary name and renamed at the end, so an interrupted write
    leaves no half-written output; missing parent folders are created.

    Args:
        path: Output ROOT file.
        showers: The showers to write.
        tree: Tree / RNTuple name.
        overwrite: Replace an existing file.
        extra_branches: More per-entry branches, name -> array of shape (N,) or (N, ...)
            (e.g. an int32 ``draw`` index).
        rntuple: Write an RNTuple instead of a TTree.
        chunk_size: Entries per basket / cluster written at once.
        provenance: How the showers were made (JSON-serialisable), stored as the TObjString
            ``calamp_provenance``; :func:`read_provenance` reads it back. ``calamp.simulate``
            records its configuration and seed here, so the main job can use the simulator as
            the source of fresh training sets and of the truth.

    Returns:
        The path written.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    import uproot

    p = os.fspath(path)
    if os.path.exists(p) and not overwrite:
        msg = f"file '{p}' exists; pass overwrite=True (--overwrite) to replace it"
        raise OutputExistsError(msg)
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        msg = f"`chunk_size` must be a positive integer, got {chunk_size!r}"
        raise ValueError(msg)
    n = len(showers)
    columns: dict[str, np.ndarray] = {
        "energy": showers.energy,
        "incident_energy": showers.incident_energy,
    }
    for name, values in (extra_branches or {}).items():
        arr = np.ascontiguousarray(values)
        if name in columns:
            msg = f"`extra_branches` must not redefine '{name}'"
            raise ValueError(msg)
        if arr.ndim < 1 or arr.shape[0] != n or arr.dtype.kind not in "biuf":
            msg = (
                f"`extra_branches['{name}']` must be a numeric array with {n} entries, got "
                f"{arr.dtype} {arr.shape}"
            )
            raise ValueError(msg)
        columns[name] = arr
    folder = os.path.dirname(os.path.abspath(p))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(p)}.{os.getpid()}.tmp")
    try:
        with uproot.recreate(tmp) as f:
            first = {k: v[:chunk_size] for k, v in columns.items()}
            if rntuple:
                f[tree] = first
            else:
                f.mktree(
                    tree,
                    {
                        k: (v.dtype, v.shape[1:]) if v.ndim > 1 else v.dtype
                        for k, v in columns.items()
                    },
                )
                f[tree].extend(first)
            for lo in range(chunk_size, n, chunk_size):
                f[tree].extend({k: v[lo : lo + chunk_size] for k, v in columns.items()})
            if provenance is not None:
                f[PROVENANCE_KEY] = json.dumps(dict(provenance), sort_keys=True)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return p


def read_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance record written by :func:`write_showers` (``None`` if the file has none).

    Raises:
        InputError: the file is missing or not readable ROOT (as :func:`read_showers`).
    """
    p = os.fspath(path)
    f = _open(p)
    try:
        if PROVENANCE_KEY not in f:
            return None
        text = str(f[PROVENANCE_KEY])
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    finally:
        f.close()
