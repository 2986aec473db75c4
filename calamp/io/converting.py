"""Converting one chunk of a resolved tree into a :class:`~calamp.io.showers.ShowerSet`.

Values: NaN or infinite energies, incident energies <= 0, and cell energies below
``-NEGATIVE_TOLERANCE_GEV`` are errors naming the first offending entry; cell energies in
``[-NEGATIVE_TOLERANCE_GEV, 0)`` (float rounding) are clipped to 0.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from calamp.io.errors import BadValueError, BranchError, _where
from calamp.io.resolving import _Plan
from calamp.io.showers import ShowerSet

if TYPE_CHECKING:
    import awkward as ak

NEGATIVE_TOLERANCE_GEV = 1e-6
"""Cell energies in ``[-NEGATIVE_TOLERANCE_GEV, 0)`` GeV are clipped to 0; lower ones are errors."""


def _numeric(values: np.ndarray, plan: _Plan, branch: str, kinds: str = "fiu") -> None:
    if values.dtype.kind not in kinds:
        want = "integer" if kinds == "iu" else "numeric"
        msg = (
            f"{_where(plan.path, plan.tree, branch)}: expected {want} values, found {values.dtype}"
        )
        raise BranchError(msg)


def _first_bad(bad: np.ndarray, plan: _Plan, branch: str | None, offset: int) -> tuple[str, int]:
    """Where the first entry flagged in ``bad`` is (message prefix), and its index in the chunk."""
    i = int(np.argmax(bad))
    return _where(plan.path, plan.tree, branch, offset + i), i


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
            at, i = _first_bad(bad, plan, branch, offset)
            msg = f"{at}: wrong shape, {counts[i]} cells, expected {expected}"
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
            at, i = _first_bad(c != counts, plan, name, offset)
            msg = f"{at}: {c[i]} values but '{bx}' has {counts[i]}"
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
        at, i = _first_bad(bad, plan, plan.energy, offset)
        row = flat[i]
        value = row[~np.isfinite(row)][0]
        msg = f"{at}: value {value} is not finite"
        raise BadValueError(msg)
    bad = (flat < -NEGATIVE_TOLERANCE_GEV).any(axis=1)
    if bad.any():
        at, i = _first_bad(bad, plan, plan.energy, offset)
        msg = f"{at}: negative energy {flat[i].min():.6g} GeV (below -{NEGATIVE_TOLERANCE_GEV:g})"
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
        at, i = _first_bad(bad, plan, plan.incident, offset)
        msg = f"{at}: incident energy {values[i]} is not a finite number > 0"
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
