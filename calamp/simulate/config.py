"""The simulated calorimeter and the parameter records of the shower simulator.

:class:`CaloConfig` is the geometry and material (PHYSICS.md section 4);
:class:`LongitudinalParameters` and :class:`ShowerParameters` hold the GFlash parameters of
:mod:`calamp.simulate.parametrisation` and the per-shower draws of
:mod:`calamp.simulate.sampling`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CaloConfig", "LongitudinalParameters", "SeedLike", "ShowerParameters"]

SeedLike = int | np.random.SeedSequence | None


@dataclass(frozen=True)
class CaloConfig:
    """Geometry and material of the simulated calorimeter.

    Defaults: a Si-W sampling calorimeter (2.1 mm W + 0.5 mm Si layers, PHYSICS.md section 4)
    read out by a 10 x 10 grid of 5 mm cells, 24 X0 deep.

    Attributes:
        nx: Cells along x.
        ny: Cells along y.
        cell_size_mm: Cell pitch in mm.
        x0_mm: Radiation length X0 in mm (only used to express the depth in mm).
        moliere_radius_mm: Molière radius R_M in mm.
        critical_energy_gev: Critical energy E_c in GeV.
        z: Effective atomic number.
        sampling_term: Stochastic term a in GeV^1/2 (resolution a / sqrt(E)); 0 disables the
            sampling fluctuations.
        noise_gev: Standard deviation of the Gaussian noise per cell in GeV.
        threshold_gev: Cells below this energy (GeV), after noise, are set to zero.
        n_spots: Energy spots per shower.
        depth_x0: Depth of the calorimeter in X0; energy deposited deeper leaks out.
        conversion_length_x0: Mean photon conversion depth in X0 (9/7).
        impact_halfwidth_mm: Impact point uniform in [-h, h]^2 around the grid centre (default:
            half a cell).
    """

    nx: int = 10
    ny: int = 10
    cell_size_mm: float = 5.0
    x0_mm: float = 4.3
    moliere_radius_mm: float = 11.0
    critical_energy_gev: float = 0.0083
    z: float = 72.0
    sampling_term: float = 0.16
    noise_gev: float = 0.0
    threshold_gev: float = 0.0
    n_spots: int = 200
    depth_x0: float = 24.0
    conversion_length_x0: float = 9.0 / 7.0
    impact_halfwidth_mm: float = 2.5

    def __post_init__(self) -> None:
        for name in ("nx", "ny", "n_spots"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                msg = f"`{name}` must be a positive integer, got {value!r}"
                raise ValueError(msg)
        positive = (
            "cell_size_mm",
            "x0_mm",
            "moliere_radius_mm",
            "critical_energy_gev",
            "z",
            "depth_x0",
            "conversion_length_x0",
        )
        for name in positive:
            value = float(getattr(self, name))
            if not value > 0:
                msg = f"`{name}` must be > 0, got {value!r}"
                raise ValueError(msg)
        for name in ("sampling_term", "noise_gev", "threshold_gev", "impact_halfwidth_mm"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                msg = f"`{name}` must be finite and >= 0, got {value!r}"
                raise ValueError(msg)

    @property
    def depth_mm(self) -> float:
        """Calorimeter depth in mm."""
        return self.depth_x0 * self.x0_mm

    @property
    def cell_edges_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell edges ``(x_edges (nx+1,), y_edges (ny+1,))`` in mm, centred on the beam axis."""
        c = self.cell_size_mm
        xe = c * (np.arange(self.nx + 1) - self.nx / 2)
        ye = c * (np.arange(self.ny + 1) - self.ny / 2)
        return xe, ye


@dataclass(frozen=True)
class LongitudinalParameters:
    """Mean, width and correlation of ``(ln T, ln alpha)`` (arrays broadcast like ``energy``)."""

    mean_ln_t: np.ndarray
    mean_ln_alpha: np.ndarray
    sigma_ln_t: np.ndarray
    sigma_ln_alpha: np.ndarray
    rho: np.ndarray


@dataclass(frozen=True)
class ShowerParameters:
    """Per-shower random parameters, each of shape (N,).

    Attributes:
        energy: Incident energy in GeV.
        t_conv: Conversion depth in X0.
        t_max: Shower maximum T in X0, measured from the conversion point.
        alpha: Shape of the gamma longitudinal profile.
        beta: Rate of the gamma profile in 1/X0, ``(alpha - 1) / t_max``.
        x0_mm: Impact point x in mm.
        y0_mm: Impact point y in mm.
    """

    energy: np.ndarray
    t_conv: np.ndarray
    t_max: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    x0_mm: np.ndarray
    y0_mm: np.ndarray
