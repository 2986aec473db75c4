"""High-level observables of calorimeter shower images (vectorised numpy, no per-event loops).

Images are (N, ny, nx) cell energies in GeV; the grid is centred on 0 with square cells of
``cell_size`` mm, so the centre of cell (iy, ix) is at
``x = (ix - (nx - 1) / 2) * cell_size`` and ``y = (iy - (ny - 1) / 2) * cell_size``.
Each observable is later binned in quantiles of a large truth sample (arXiv:2408.00838,
calorimeter application), so every function here returns one float64 value per event.

Empty (all-zero) images are valid: energy-weighted quantities (centroids, widths, fractions)
are defined as 0 there, without NaN or warnings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLD_GEV",
    "OBSERVABLES",
    "ObservableInfo",
    "observable_info",
    "shower_observables",
]

DEFAULT_THRESHOLD_GEV = 1e-3
"""Default cell threshold for ``n_hit``: 1 MeV (cells strictly above it count)."""


@dataclass(frozen=True)
class ObservableInfo:
    """Plotting metadata of an observable.

    Attributes:
        label: axis label (matplotlib mathtext), unit included.
        unit: unit string ("" if dimensionless).
        discrete: True if the observable takes integer values (quantile edges collide).
    """

    label: str
    unit: str
    discrete: bool = False


OBSERVABLES: dict[str, ObservableInfo] = {
    "e_total": ObservableInfo(r"$E_\mathrm{tot}$ [GeV]", "GeV"),
    "e_ratio": ObservableInfo(r"$E_\mathrm{tot}/E_\mathrm{inc}$", ""),
    "n_hit": ObservableInfo(r"$N_\mathrm{hit}$", "", discrete=True),
    "e_max": ObservableInfo(r"$E_\mathrm{max}$ [GeV]", "GeV"),
    "e_max_frac": ObservableInfo(r"$E_\mathrm{max}/E_\mathrm{tot}$", ""),
    "x_centroid": ObservableInfo(r"$\langle x \rangle$ [mm]", "mm"),
    "y_centroid": ObservableInfo(r"$\langle y \rangle$ [mm]", "mm"),
    "x_width": ObservableInfo(r"$\sigma_x$ [mm]", "mm"),
    "y_width": ObservableInfo(r"$\sigma_y$ [mm]", "mm"),
    "f_core3x3": ObservableInfo(r"$E_{3\times 3}/E_\mathrm{tot}$", ""),
}
"""Registry of the named observables (per-cell energies: see :func:`observable_info`)."""

_CELL = re.compile(r"cell_(\d+)_(\d+)")


def observable_info(name: str) -> ObservableInfo:
    """Metadata of an observable, including per-cell energies ``cell_{iy}_{ix}``."""
    if name in OBSERVABLES:
        return OBSERVABLES[name]
    m = _CELL.fullmatch(name)
    if m:
        return ObservableInfo(rf"$E_{{{m[1]},{m[2]}}}$ [GeV]", "GeV")
    msg = f"unknown observable {name!r}; known: {sorted(OBSERVABLES)} and cell_<iy>_<ix>"
    raise KeyError(msg)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0."""
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape), dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _box3_at_hottest(e: np.ndarray) -> np.ndarray:
    """Energy in the 3x3 window around each image's hottest cell, shifted inside the grid."""
    n, ny, nx = e.shape
    flat_max = np.argmax(e.reshape(n, -1), axis=1)
    cy = np.clip(flat_max // nx, 1, ny - 2)
    cx = np.clip(flat_max % nx, 1, nx - 2)
    # summed-area table with a zero row/column in front: S[i, j] = sum e[:i, :j]
    s = np.zeros((n, ny + 1, nx + 1), dtype=np.float64)
    np.cumsum(np.cumsum(e, axis=1), axis=2, out=s[:, 1:, 1:])
    rows = np.arange(n)
    y0, y1, x0, x1 = cy - 1, cy + 2, cx - 1, cx + 2
    return s[rows, y1, x1] - s[rows, y0, x1] - s[rows, y1, x0] + s[rows, y0, x0]


def shower_observables(
    energy: np.ndarray,
    incident_energy: float | np.ndarray | None = None,
    *,
    cell_size: float = 5.0,
    threshold: float = DEFAULT_THRESHOLD_GEV,
    cells: bool = False,
) -> dict[str, np.ndarray]:
    """High-level observables of shower images (see DESIGN.md, "Observables for showers").

    Args:
        energy: (N, ny, nx) cell energies in GeV, ny, nx >= 3.
        incident_energy: incident energy in GeV, scalar or (N,); if None, ``e_ratio`` is omitted.
        cell_size: cell pitch in mm (square cells).
        threshold: cells with energy strictly above it (GeV) count in ``n_hit``.
        cells: also return per-cell energies ``cell_{iy}_{ix}`` (GeV).

    Returns:
        name -> (N,) float64 array:
        ``e_total`` (GeV), ``e_ratio`` (E_total / E_inc), ``n_hit`` (integer-valued count),
        ``e_max`` (hottest cell, GeV), ``e_max_frac`` (e_max / e_total),
        ``x_centroid``, ``y_centroid`` (energy-weighted, mm), ``x_width``, ``y_width``
        (energy-weighted RMS about the centroid, mm), ``f_core3x3`` (energy fraction in the 3x3
        window centred on the hottest cell; the window is shifted to stay inside the grid when
        the hottest cell is on the border; first cell in C order on ties). Ratios, centroids and
        widths are 0 for an image with zero total energy.
    """
    e = np.asarray(energy, dtype=np.float64)
    if e.ndim != 3 or e.shape[1] < 3 or e.shape[2] < 3:
        msg = f"`energy` must have shape (N, ny, nx) with ny, nx >= 3, got {np.shape(energy)}"
        raise ValueError(msg)
    if not cell_size > 0:
        msg = f"`cell_size` must be > 0 mm, got {cell_size}"
        raise ValueError(msg)
    n, ny, nx = e.shape
    x = (np.arange(nx) - (nx - 1) / 2.0) * cell_size
    y = (np.arange(ny) - (ny - 1) / 2.0) * cell_size

    e_total = e.sum(axis=(1, 2))
    e_x = e.sum(axis=1)  # (N, nx) column sums
    e_y = e.sum(axis=2)  # (N, ny) row sums
    x_c = _safe_div(e_x @ x, e_total)
    y_c = _safe_div(e_y @ y, e_total)
    x2 = _safe_div(e_x @ (x * x), e_total)
    y2 = _safe_div(e_y @ (y * y), e_total)
    e_max = e.reshape(n, -1).max(axis=1) if n else np.zeros(0)

    out: dict[str, np.ndarray] = {"e_total": e_total}
    if incident_energy is not None:
        e_inc = np.broadcast_to(np.asarray(incident_energy, dtype=np.float64), (n,))
        if np.any(~(e_inc > 0)):
            msg = "`incident_energy` must be > 0 GeV"
            raise ValueError(msg)
        out["e_ratio"] = e_total / e_inc
    out["n_hit"] = np.count_nonzero(e > threshold, axis=(1, 2)).astype(np.float64)
    out["e_max"] = e_max
    out["e_max_frac"] = _safe_div(e_max, e_total)
    out["x_centroid"] = x_c
    out["y_centroid"] = y_c
    out["x_width"] = np.sqrt(np.clip(x2 - x_c * x_c, 0.0, None))
    out["y_width"] = np.sqrt(np.clip(y2 - y_c * y_c, 0.0, None))
    out["f_core3x3"] = _safe_div(_box3_at_hottest(e), e_total) if n else np.zeros(0)
    if cells:
        for iy in range(ny):
            for ix in range(nx):
                out[f"cell_{iy}_{ix}"] = e[:, iy, ix].copy()
    return out
