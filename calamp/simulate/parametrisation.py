"""The GFlash homogeneous-medium parametrisation (Grindhammer & Peters, hep-ex/0001020;
PHYSICS.md section 4): the correlated ``(ln T, ln alpha)`` of the longitudinal profile and the
two-component lateral profile, shared by the Monte Carlo and the quadrature.
"""

from __future__ import annotations

import math

import numpy as np

from calamp.simulate.config import CaloConfig, LongitudinalParameters

__all__ = ["longitudinal_parameters"]

_ALPHA_MIN = 1.05  # floor on the gamma shape so that beta = (alpha - 1) / T stays positive


def _check_energy(energy: np.ndarray, config: CaloConfig) -> None:
    e = np.asarray(energy, dtype=float)
    ln_y = np.log(np.maximum(e, 1e-300) / config.critical_energy_gev)
    if not (np.all(np.isfinite(e)) and np.all(ln_y > 2.0)):
        lo = math.exp(2.0) * config.critical_energy_gev
        msg = (
            f"`energy` must be finite and > {lo:.3g} GeV (7.4 E_c), got {e.min()!r} .. {e.max()!r}"
        )
        raise ValueError(msg)


def longitudinal_parameters(
    energy: float | np.ndarray, config: CaloConfig | None = None
) -> LongitudinalParameters:
    """GFlash homogeneous-medium parameters of ``(ln T, ln alpha)``.

    Args:
        energy: Incident energy in GeV, scalar or array.
        config: Calorimeter (uses ``critical_energy_gev`` and ``z``).

    Returns:
        The means, standard deviations and correlation, broadcast like ``energy``.
    """
    cfg = config or CaloConfig()
    e = np.asarray(energy, dtype=float)
    _check_energy(e, cfg)
    ln_y = np.log(e / cfg.critical_energy_gev)
    return LongitudinalParameters(
        mean_ln_t=np.log(ln_y - 0.812),
        mean_ln_alpha=np.log(0.81 + (0.458 + 2.26 / cfg.z) * ln_y),
        sigma_ln_t=1.0 / (-1.4 + 1.26 * ln_y),
        sigma_ln_alpha=1.0 / (-0.58 + 0.86 * ln_y),
        rho=0.705 - 0.023 * ln_y,
    )


def _lateral(
    tau: np.ndarray, ln_e: np.ndarray, z: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core radius, tail radius (units of R_M) and core probability at relative depth ``tau``."""
    r_core = 0.0251 + 0.00319 * ln_e + (0.1162 - 0.000381 * z) * tau
    k1 = 0.659 - 0.00309 * z
    k2 = 0.645
    k3 = -2.59
    k4 = 0.3585 + 0.0412 * ln_e
    r_tail = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    p1 = 2.632 - 0.00094 * z
    p2 = 0.401 + 0.00187 * z
    p3 = 1.313 - 0.0686 * ln_e
    s = (p2 - tau) / p3
    p_core = p1 * np.exp(s - np.exp(s))
    return r_core, r_tail, p_core
