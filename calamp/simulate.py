"""Truth samples: a parametric photon-shower simulator and the ring toy (numpy only).

The shower simulator follows the GFlash parametrisation of Grindhammer & Peters
(hep-ex/0001020) for a homogeneous medium, as summarised in ``PHYSICS.md`` section 4:

* the photon converts at depth ``t_conv ~ Exp(9/7 X0)``;
* per shower, ``(ln T, ln alpha)`` is a correlated Gaussian draw (``T`` the shower maximum in
  X0 measured from the conversion point, ``alpha`` the shape of the gamma profile, and
  ``beta = (alpha - 1) / T``);
* ``n_spots`` energy spots of ``E / n_spots`` each get a depth ``t ~ Gamma(alpha, 1/beta)``
  (spots beyond the calorimeter depth leak out) and a radius from the two-component lateral
  profile at ``tau = t / T`` by inversion, ``r = R R_M sqrt(u / (1 - u))``, with a uniform
  azimuth;
* the spot energy collected by a cell gets sampling fluctuations
  ``Gamma(shape=E_cell / a^2, scale=a^2)`` with the stochastic term ``a`` (GeV^1/2). The sum of
  independent gammas of equal scale is a gamma, so drawing per cell is exactly equivalent to
  drawing per spot and summing, and the total visible energy has ``std / E = a / sqrt(E)``;
* optional Gaussian cell noise, then cells below ``threshold_gev`` are set to zero (with the
  default threshold 0 this only clips negative noise).

The impact point is uniform in the ``cell_size_mm x cell_size_mm`` square centred on the grid
centre (for the default even 10 x 10 grid that square straddles the four central cells; for an
odd grid it is the central cell). Images are indexed ``[iy, ix]``; cell ``ix`` spans
``x in [-W/2 + ix c, -W/2 + (ix + 1) c)`` with ``W = nx c``.

Random numbers are drawn in fixed blocks of ``BLOCK_SIZE`` showers, each block from its own
stream derived from the seed with :class:`numpy.random.SeedSequence`. For a scalar incident
energy the first ``n`` showers of a larger sample with the same seed are therefore identical to
a sample of ``n``, and chunked generation (:func:`iter_photon_showers`) gives the same showers
for every chunk size.

The analytic helpers (:func:`mean_image`, :func:`longitudinal_mean_max`,
:func:`mean_deposit_depth`) integrate the same model by quadrature, so that tests can compare the
Monte Carlo with independent numbers.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from calamp.io import ShowerSet

__all__ = [
    "BLOCK_SIZE",
    "CaloConfig",
    "LongitudinalParameters",
    "ShowerParameters",
    "iter_photon_showers",
    "longitudinal_mean_max",
    "longitudinal_parameters",
    "main",
    "mean_deposit_depth",
    "mean_image",
    "photon_showers",
    "provenance",
    "ring",
    "ring_log_prob",
    "ring_radius_cdf",
    "ring_radius_pdf",
    "sample_shower_parameters",
]

BLOCK_SIZE = 1024
"""Showers per independently seeded random-number block (part of the stream definition)."""

_ALPHA_MIN = 1.05  # floor on the gamma shape so that beta = (alpha - 1) / T stays positive

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


# ----------------------------------------------------------------------------------------------
# Parametrisation
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Monte Carlo
# ----------------------------------------------------------------------------------------------


def _block_generators(seed: SeedLike, n_blocks: int) -> Iterator[np.random.Generator]:
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    for k in range(n_blocks):
        child = np.random.SeedSequence(
            entropy=root.entropy, spawn_key=(*root.spawn_key, k), pool_size=root.pool_size
        )
        yield np.random.Generator(np.random.PCG64(child))


def _energy_array(n: int, energy: float | np.ndarray, cfg: CaloConfig) -> np.ndarray:
    if not isinstance(n, int | np.integer) or n < 0:
        msg = f"`n` must be a non-negative integer, got {n!r}"
        raise ValueError(msg)
    e = np.asarray(energy, dtype=float)
    if e.ndim == 0:
        e = np.full(n, float(e))
    elif e.shape != (n,):
        msg = f"`energy` must be a scalar or have shape ({n},), got shape {e.shape}"
        raise ValueError(msg)
    if n:
        _check_energy(e, cfg)
    return e


def _draw_parameters(
    rng: np.random.Generator, energy: np.ndarray, cfg: CaloConfig
) -> ShowerParameters:
    par = longitudinal_parameters(energy, cfg)
    z = rng.standard_normal((2, energy.size))
    ln_t = par.mean_ln_t + par.sigma_ln_t * z[0]
    ln_a = par.mean_ln_alpha + par.sigma_ln_alpha * (
        par.rho * z[0] + np.sqrt(1.0 - par.rho**2) * z[1]
    )
    t_max = np.exp(ln_t)
    alpha = np.maximum(np.exp(ln_a), _ALPHA_MIN)
    t_conv = rng.exponential(cfg.conversion_length_x0, energy.size)
    impact = rng.uniform(-cfg.impact_halfwidth_mm, cfg.impact_halfwidth_mm, (2, energy.size))
    return ShowerParameters(
        energy=energy,
        t_conv=t_conv,
        t_max=t_max,
        alpha=alpha,
        beta=(alpha - 1.0) / t_max,
        x0_mm=impact[0],
        y0_mm=impact[1],
    )


def _simulate_block(rng: np.random.Generator, energy: np.ndarray, cfg: CaloConfig) -> np.ndarray:
    """Showers of one block: (B, ny, nx) float64 visible energy in GeV."""
    b = energy.size
    m = cfg.n_spots
    par = _draw_parameters(rng, energy, cfg)
    t = rng.standard_gamma(np.broadcast_to(par.alpha[:, None], (b, m))) / par.beta[:, None]
    inside = par.t_conv[:, None] + t <= cfg.depth_x0
    r_core, r_tail, p_core = _lateral(t / par.t_max[:, None], np.log(energy)[:, None], cfg.z)
    u = rng.random((3, b, m))
    radius = np.where(u[0] < p_core, r_core, r_tail) * cfg.moliere_radius_mm
    radius *= np.sqrt(u[1] / (1.0 - u[1]))
    phi = (2.0 * math.pi) * u[2]
    c = cfg.cell_size_mm
    ix = np.floor((par.x0_mm[:, None] + radius * np.cos(phi)) / c + cfg.nx / 2)
    iy = np.floor((par.y0_mm[:, None] + radius * np.sin(phi)) / c + cfg.ny / 2)
    inside &= (ix >= 0) & (ix < cfg.nx) & (iy >= 0) & (iy < cfg.ny)
    n_cells = cfg.nx * cfg.ny
    flat = (np.arange(b)[:, None] * n_cells + iy * cfg.nx + ix)[inside].astype(np.intp)
    counts = np.bincount(flat, minlength=b * n_cells).reshape(b, cfg.ny, cfg.nx)
    deposit = counts * (energy / m)[:, None, None]
    if cfg.sampling_term > 0:
        a2 = cfg.sampling_term**2
        deposit = rng.standard_gamma(deposit / a2) * a2
    if cfg.noise_gev > 0:
        deposit = deposit + cfg.noise_gev * rng.standard_normal(deposit.shape)
    deposit[deposit < cfg.threshold_gev] = 0.0
    return deposit


def _blocks(n: int, energy: np.ndarray, seed: SeedLike, cfg: CaloConfig, fn):
    """Yield ``fn(rng, energy_block)`` truncated to the real showers, block by block."""
    n_blocks = -(-n // BLOCK_SIZE)
    for k, rng in enumerate(_block_generators(seed, n_blocks)):
        lo = k * BLOCK_SIZE
        hi = min(n, lo + BLOCK_SIZE)
        e = energy[lo:hi]
        if e.size < BLOCK_SIZE:  # always draw full blocks so prefixes agree
            e = np.concatenate([e, np.full(BLOCK_SIZE - e.size, e[-1])])
        yield lo, hi, fn(rng, e, cfg)


def sample_shower_parameters(
    n: int,
    energy: float | np.ndarray = 50.0,
    seed: SeedLike = None,
    *,
    config: CaloConfig | None = None,
) -> ShowerParameters:
    """The per-shower parameters that :func:`photon_showers` uses for the same arguments.

    Args:
        n: Number of showers.
        energy: Incident energy in GeV, scalar or (n,).
        seed: Integer seed or SeedSequence (None: fresh entropy).
        config: Calorimeter.

    Returns:
        Parameters with arrays of shape (n,).
    """
    cfg = config or CaloConfig()
    e = _energy_array(n, energy, cfg)
    parts = [p for _, _, p in _blocks(n, e, seed, cfg, lambda r, x, c: _draw_parameters(r, x, c))]
    fields = ShowerParameters.__dataclass_fields__
    if not parts:
        return ShowerParameters(**{f: np.zeros(0) for f in fields})
    cat = {f: np.concatenate([getattr(p, f) for p in parts])[:n] for f in fields}
    return ShowerParameters(**cat)


def iter_photon_showers(
    n: int,
    energy: float | np.ndarray = 50.0,
    seed: SeedLike = None,
    *,
    config: CaloConfig | None = None,
    chunk_size: int = 65536,
) -> Iterator[ShowerSet]:
    """Generate photon showers in chunks of ``chunk_size`` (the last one may be shorter).

    The concatenated chunks equal ``photon_showers(n, energy, seed, config=config)`` for every
    ``chunk_size``; memory stays bounded by ``chunk_size`` images plus one block of spots.

    Args:
        n: Number of showers.
        energy: Incident energy in GeV, scalar or (n,).
        seed: Integer seed or SeedSequence (None: fresh entropy).
        config: Calorimeter.
        chunk_size: Showers per yielded chunk.

    Yields:
        ShowerSet chunks with ``energy`` (chunk, ny, nx) GeV and ``source == "simulate"``.
    """
    from calamp.io import ShowerSet

    cfg = config or CaloConfig()
    e = _energy_array(n, energy, cfg)
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        msg = f"`chunk_size` must be a positive integer, got {chunk_size!r}"
        raise ValueError(msg)
    buf = np.empty((min(chunk_size, max(n, 1)), cfg.ny, cfg.nx), dtype=np.float32)
    filled = 0
    start = 0
    for lo, hi, block in _blocks(n, e, seed, cfg, _simulate_block):
        block = block[: hi - lo]
        pos = 0
        while pos < block.shape[0]:
            take = min(buf.shape[0] - filled, block.shape[0] - pos)
            buf[filled : filled + take] = block[pos : pos + take]
            filled += take
            pos += take
            if filled == buf.shape[0]:
                yield ShowerSet(buf.copy(), e[start : start + filled], source="simulate")
                start += filled
                filled = 0
    if filled:
        yield ShowerSet(buf[:filled].copy(), e[start : start + filled], source="simulate")


def photon_showers(
    n: int,
    energy: float | np.ndarray = 50.0,
    seed: SeedLike = None,
    *,
    config: CaloConfig | None = None,
) -> ShowerSet:
    """Simulate ``n`` photon showers with the GFlash-style parametric model.

    Args:
        n: Number of showers.
        energy: Incident energy in GeV, scalar or (n,).
        seed: Integer seed or SeedSequence (None: fresh entropy).
        config: Calorimeter (default :class:`CaloConfig`).

    Returns:
        ShowerSet with ``energy`` (n, ny, nx) float32 visible cell energies in GeV and
        ``incident_energy`` (n,) float32 GeV.
    """
    from calamp.io import ShowerSet

    cfg = config or CaloConfig()
    e = _energy_array(n, energy, cfg)
    out = np.empty((n, cfg.ny, cfg.nx), dtype=np.float32)
    for lo, hi, block in _blocks(n, e, seed, cfg, _simulate_block):
        out[lo:hi] = block[: hi - lo]
    return ShowerSet(out, e, source="simulate")


# ----------------------------------------------------------------------------------------------
# Ring toy
# ----------------------------------------------------------------------------------------------


def _check_ring(r0: float, shape: float, scale: float) -> None:
    if not (math.isfinite(r0) and shape > 0 and scale > 0):
        msg = f"`r0` must be finite and `shape`, `scale` > 0, got {r0!r}, {shape!r}, {scale!r}"
        raise ValueError(msg)


def ring(
    n: int, seed: SeedLike = None, *, r0: float = 4.0, shape: float = 2.0, scale: float = 0.5
) -> np.ndarray:
    """Points of the ring toy: ``r = r0 + Gamma(shape, scale)``, ``phi ~ U[0, 2 pi)``.

    Args:
        n: Number of points.
        seed: Integer seed or SeedSequence.
        r0: Inner edge radius.
        shape: Gamma shape.
        scale: Gamma scale.

    Returns:
        (n, 2) float64 Cartesian coordinates (x, y).
    """
    _check_ring(r0, shape, scale)
    if not isinstance(n, int | np.integer) or n < 0:
        msg = f"`n` must be a non-negative integer, got {n!r}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    r = r0 + rng.gamma(shape, scale, n)
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    return np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)


def ring_radius_pdf(
    r: np.ndarray | float, *, r0: float = 4.0, shape: float = 2.0, scale: float = 0.5
) -> np.ndarray:
    """Density of the radius, ``p(r)`` (zero below ``r0``); default ``4 (r-4) e^(-2 (r-4))``."""
    _check_ring(r0, shape, scale)
    x = np.asarray(r, dtype=float) - r0
    pos = x > 0
    xs = np.where(pos, x, 1.0)
    logp = (shape - 1.0) * np.log(xs) - xs / scale - math.lgamma(shape) - shape * math.log(scale)
    return np.where(pos, np.exp(logp), 0.0)


def ring_radius_cdf(
    r: np.ndarray | float, *, r0: float = 4.0, shape: float = 2.0, scale: float = 0.5
) -> np.ndarray:
    """Cumulative distribution of the radius (integer ``shape`` only: Erlang series)."""
    _check_ring(r0, shape, scale)
    if shape != int(shape):
        msg = f"`shape` must be an integer for the closed-form CDF, got {shape!r}"
        raise ValueError(msg)
    y = np.maximum(np.asarray(r, dtype=float) - r0, 0.0) / scale
    term = np.ones_like(y)
    total = np.ones_like(y)
    for k in range(1, int(shape)):
        term = term * y / k
        total = total + term
    with np.errstate(invalid="ignore"):
        tail = (total - 1.0) * np.exp(-y)
    return np.where(np.isinf(y), 1.0, -np.expm1(-y) - tail)


def ring_log_prob(
    xy: np.ndarray, *, r0: float = 4.0, shape: float = 2.0, scale: float = 0.5
) -> np.ndarray:
    """Exact log density in the plane, ``log p(r) - log(2 pi r)``.

    Args:
        xy: (n, 2) Cartesian points.
        r0: Inner edge radius.
        shape: Gamma shape.
        scale: Gamma scale.

    Returns:
        (n,) log density; ``-inf`` where ``r <= r0``.
    """
    xy = np.asarray(xy, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2:
        msg = f"`xy` must have shape (n, 2), got {xy.shape}"
        raise ValueError(msg)
    r = np.hypot(xy[:, 0], xy[:, 1])
    p = ring_radius_pdf(r, r0=r0, shape=shape, scale=scale)
    with np.errstate(divide="ignore"):
        return np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), -np.inf) - np.log(
            2.0 * math.pi * np.maximum(r, 1e-300)
        )


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


class _UsageError(Exception):
    pass


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m calamp.simulate",
        description="Simulate 10x10 photon showers (GFlash-style) and write them to a ROOT file.",
    )
    p.add_argument("--n", type=int, required=True, help="number of showers")
    p.add_argument("--out", required=True, help="output ROOT file")
    p.add_argument("--energy", type=float, default=50.0, help="incident energy in GeV (50)")
    p.add_argument("--seed", type=int, default=1, help="random seed (1)")
    p.add_argument("--tree", default="showers", help="tree / RNTuple name (showers)")
    p.add_argument("--rntuple", action="store_true", help="write an RNTuple instead of a TTree")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return p


def provenance(
    energy: float, seed: int | None, n: int, config: CaloConfig | None = None
) -> dict[str, object]:
    """JSON record of a simulated sample (stored in its ROOT file by ``write_showers``)."""
    from dataclasses import asdict

    from calamp import __version__

    return {
        "generator": "calamp.simulate.photon_showers",
        "calamp_version": __version__,
        "energy": float(energy),
        "seed": seed,
        "n": int(n),
        "config": asdict(config or CaloConfig()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m calamp.simulate --n N --out file.root [options]``.

    Returns:
        0 on success, 2 on bad options or a refused output (one line on stderr).
    """
    from calamp.io import CalampError, write_showers

    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.n < 1:
            raise _UsageError(f"argument --n: must be >= 1, got {args.n}")
        if args.seed < 0:
            raise _UsageError(f"argument --seed: must be >= 0, got {args.seed}")
        showers = photon_showers(args.n, args.energy, args.seed)
        write_showers(
            args.out,
            showers,
            tree=args.tree,
            overwrite=args.overwrite,
            rntuple=args.rntuple,
            provenance=provenance(args.energy, args.seed, args.n),
        )
    except SystemExit as done:  # --help
        return int(done.code or 0)
    except _UsageError as err:
        print(f"{parser.prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (CalampError, ValueError, OSError) as err:
        print(f"{parser.prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} showers of {args.energy:g} GeV to {args.out} ({args.tree})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
