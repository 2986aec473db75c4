"""Reading calorimeter showers from ROOT files: :func:`iterate_showers` and :func:`read_showers`.

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

The file is resolved in :mod:`calamp.io.resolving`, each chunk converted and its values checked
in :mod:`calamp.io.converting`; every problem is an :class:`~calamp.io.errors.InputError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from calamp.io.converting import _convert
from calamp.io.errors import CorruptFileError, _describe, _where
from calamp.io.resolving import _open, _Plan, _resolve
from calamp.io.showers import ShowerSet


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
    **options: Any,
) -> ShowerSet:
    """Read all selected showers into memory; the arguments (the keyword-only ones in
    ``options``) are those of :func:`iterate_showers`.

    Returns:
        ShowerSet with ``energy`` (N, ny, nx) float32 GeV, ``incident_energy`` (N,) float32 GeV
        and ``source`` the file path.
    """
    sets = list(iterate_showers(path, tree, energy, incident_energy, **options))
    if len(sets) == 1:
        return sets[0]
    return ShowerSet.concatenate(sets)
