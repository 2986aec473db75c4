"""Writing showers to a ROOT file, and reading back the provenance record stored with them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from calamp.atomic import atomic_path
from calamp.io.errors import OutputExistsError
from calamp.io.resolving import _open
from calamp.io.showers import ShowerSet

PROVENANCE_KEY = "calamp_provenance"
"""Name of the TObjString holding how a shower file was made (JSON), see :func:`write_showers`."""


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
    with atomic_path(p) as tmp, uproot.recreate(tmp) as f:
        first = {k: v[:chunk_size] for k, v in columns.items()}
        if rntuple:
            f[tree] = first
        else:
            f.mktree(
                tree,
                {k: (v.dtype, v.shape[1:]) if v.ndim > 1 else v.dtype for k, v in columns.items()},
            )
            f[tree].extend(first)
        for lo in range(chunk_size, n, chunk_size):
            f[tree].extend({k: v[lo : lo + chunk_size] for k, v in columns.items()})
        if provenance is not None:
            f[PROVENANCE_KEY] = json.dumps(dict(provenance), sort_keys=True)
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
