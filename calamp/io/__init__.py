"""Reading, validating and writing calorimeter showers (numpy, uproot, awkward).

* :mod:`calamp.io.errors` — :class:`CalampError`, :class:`InputError` and its subclasses, and
  the helpers that write their one-line messages (file, tree, branch, entry);
* :mod:`calamp.io.showers` — the :class:`ShowerSet` container (numpy only);
* :mod:`calamp.io.resolving` — opening a ROOT file and resolving tree / RNTuple, layout,
  branches, image shape and entry range;
* :mod:`calamp.io.converting` — one chunk to images and incident energies, with the value
  checks (:data:`NEGATIVE_TOLERANCE_GEV`);
* :mod:`calamp.io.reading` — the input layouts and the readers :func:`iterate_showers` and
  :func:`read_showers`;
* :mod:`calamp.io.writing` — :func:`write_showers` and :func:`read_provenance`.

uproot and awkward are imported inside the functions that need them, so that
``from calamp.io import ShowerSet`` (used by the numpy-only simulator) stays light.
"""

from __future__ import annotations

from calamp.io.converting import NEGATIVE_TOLERANCE_GEV
from calamp.io.errors import (
    BadValueError,
    BranchError,
    CalampError,
    CorruptFileError,
    EmptyTreeError,
    InputError,
    MissingFileError,
    NotRootError,
    OutputExistsError,
    TreeError,
)
from calamp.io.reading import iterate_showers, read_showers
from calamp.io.showers import ShowerSet
from calamp.io.writing import PROVENANCE_KEY as PROVENANCE_KEY
from calamp.io.writing import read_provenance, write_showers

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
