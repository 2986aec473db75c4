"""The :class:`ShowerSet` container of calorimeter images (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
