"""Analytic expectations of the shower simulator's model, by quadrature.

The analytic helpers (:func:`mean_image`, :func:`longitudinal_mean_max`,
:func:`mean_deposit_depth`) integrate the same model by quadrature, so that tests can compare the
Monte Carlo with independent numbers.
"""

from __future__ import annotations

import math

import numpy as np

from calamp.simulate.config import CaloConfig
from calamp.simulate.parametrisation import _ALPHA_MIN, _lateral, longitudinal_parameters

__all__ = ["longitudinal_mean_max", "mean_deposit_depth", "mean_image"]


def longitudinal_mean_max(
    energy: float | np.ndarray, config: CaloConfig | None = None
) -> np.ndarray:
    """Mean depth of the shower maximum, ``E[t_conv + T]``, in X0 (analytic, log-normal T).

    Args:
        energy: Incident energy in GeV, scalar or array.
        config: Calorimeter.

    Returns:
        Mean shower-maximum depth in X0, shaped like ``energy``.
    """
    cfg = config or CaloConfig()
    par = longitudinal_parameters(energy, cfg)
    return cfg.conversion_length_x0 + np.exp(par.mean_ln_t + 0.5 * par.sigma_ln_t**2)


def _hermite_nodes(
    energy: float, cfg: CaloConfig, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes of the correlated ``(ln T, ln alpha)``: ``(T, alpha, weight)``."""
    par = longitudinal_parameters(energy, cfg)
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2.0 * math.pi)
    z1, z2 = np.meshgrid(x, x, indexing="ij")
    weight = np.outer(w, w).ravel()
    rho = float(par.rho)
    ln_t = par.mean_ln_t + par.sigma_ln_t * z1.ravel()
    ln_a = par.mean_ln_alpha + par.sigma_ln_alpha * (
        rho * z1.ravel() + math.sqrt(1.0 - rho**2) * z2.ravel()
    )
    return np.exp(ln_t), np.maximum(np.exp(ln_a), _ALPHA_MIN), weight


def mean_deposit_depth(
    energy: float, config: CaloConfig | None = None, *, n_hermite: int = 24
) -> float:
    """Energy-weighted mean depth of the deposits, ``E[t_conv + alpha / beta]``, in X0.

    No leakage (an infinitely deep calorimeter); integrated by Gauss-Hermite quadrature over the
    correlated ``(ln T, ln alpha)``.

    Args:
        energy: Incident energy in GeV.
        config: Calorimeter.
        n_hermite: Quadrature nodes per dimension.

    Returns:
        Mean deposit depth in X0.
    """
    cfg = config or CaloConfig()
    t_max, alpha, weight = _hermite_nodes(float(energy), cfg, n_hermite)
    return float(cfg.conversion_length_x0 + np.sum(weight * alpha * t_max / (alpha - 1.0)))


def _rect_cdf(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Integral of ``R^2 / (pi (x^2 + y^2 + R^2)^2)`` over ``[0, a] x [0, b]`` (odd in a, b)."""
    ca = np.sqrt(a * a + r * r)
    cb = np.sqrt(b * b + r * r)
    return (a / ca * np.arctan(b / ca) + b / cb * np.arctan(a / cb)) / (2.0 * math.pi)


def mean_image(
    energy: float,
    config: CaloConfig | None = None,
    *,
    n_hermite: int = 8,
    n_depth: int = 40,
    n_impact: int = 5,
) -> np.ndarray:
    """Expected energy fraction per cell, by quadrature of the simulator's model.

    Integrates the lateral profile exactly over each cell (closed form of the rectangle
    integral of ``R^2 / (pi (r^2 + R^2)^2)``), and by quadrature over the impact point
    (Gauss-Legendre), the depth of the deposit (Gauss-Legendre, weighted by the probability that
    the conversion depth leaves it inside the calorimeter, ``1 - exp(-(L - t) / lambda)``) and
    ``(ln T, ln alpha)`` (Gauss-Hermite). Sampling fluctuations do not change the mean; noise
    and threshold are not included.

    Args:
        energy: Incident energy in GeV.
        config: Calorimeter.
        n_hermite: Gauss-Hermite nodes per dimension.
        n_depth: Gauss-Legendre nodes in depth.
        n_impact: Gauss-Legendre nodes per impact coordinate.

    Returns:
        (ny, nx) mean fraction of the incident energy deposited in each cell.
    """
    cfg = config or CaloConfig()
    e = float(energy)
    t_max, alpha, w_h = _hermite_nodes(e, cfg, n_hermite)
    beta = (alpha - 1.0) / t_max
    lgam = np.array([math.lgamma(a) for a in alpha])
    # depth nodes per Hermite node on [0, U], U covering the gamma to ~15 sigma
    u_hi = np.minimum(cfg.depth_x0, (alpha + 15.0 * np.sqrt(alpha) + 15.0) / beta)
    xg, wg = np.polynomial.legendre.leggauss(n_depth)
    t = 0.5 * (xg[None, :] + 1.0) * u_hi[:, None]  # (G, K)
    w_t = 0.5 * wg[None, :] * u_hi[:, None]
    log_g = (
        (alpha[:, None] - 1.0) * np.log(beta[:, None] * t)
        + np.log(beta[:, None])
        - beta[:, None] * t
        - lgam[:, None]
    )
    conv = -np.expm1(-(cfg.depth_x0 - t) / cfg.conversion_length_x0)
    w_depth = w_h[:, None] * w_t * np.exp(log_g) * conv  # (G, K)
    tau = t / t_max[:, None]
    r_core, r_tail, p_core = _lateral(tau, math.log(e), cfg.z)
    # impact nodes
    xi, wi = np.polynomial.legendre.leggauss(n_impact)
    h = cfg.impact_halfwidth_mm
    pos = h * xi
    w_imp = np.outer(wi, wi) / 4.0  # averages over the square
    xe, ye = cfg.cell_edges_mm
    a = xe[None, :] - pos[:, None]  # (J, nx+1)
    b = ye[None, :] - pos[:, None]  # (J, ny+1)
    aa = a[None, :, None, None, :]  # (1, Jx, 1, 1, nx+1)
    bb = b[None, None, :, :, None]  # (1, 1, Jy, ny+1, 1)
    out = np.zeros((cfg.ny, cfg.nx))
    rm = cfg.moliere_radius_mm
    keep = w_depth > 1e-14 * w_depth.max()
    for g in range(t.shape[0]):
        ks = np.flatnonzero(keep[g])
        if ks.size == 0:
            continue
        for comp_r, comp_w in ((r_core[g], p_core[g]), (r_tail[g], 1.0 - p_core[g])):
            radius = (comp_r[ks] * rm)[:, None, None, None, None]
            corner = _rect_cdf(aa, bb, radius)  # (K, Jx, Jy, ny+1, nx+1)
            cell = np.diff(np.diff(corner, axis=3), axis=4)  # (K, Jx, Jy, ny, nx)
            weight = (w_depth[g, ks] * comp_w[ks])[:, None, None] * w_imp
            out += (weight.reshape(1, -1) @ cell.reshape(weight.size, -1)).reshape(out.shape)
    return out
