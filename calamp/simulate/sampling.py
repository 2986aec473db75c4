"""The Monte Carlo of the parametric photon-shower simulator (numpy only).

The shower simulator follows the GFlash parametrisation of Grindhammer & Peters
(hep-ex/0001020) for a homogeneous medium, as summarised in ``PHYSICS.md`` section 4
(the formulas are :mod:`calamp.simulate.parametrisation`'s):

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

The quadrature of the same model is :mod:`calamp.simulate.expectation`'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from calamp.simulate.config import CaloConfig, SeedLike, ShowerParameters
from calamp.simulate.parametrisation import (
    _ALPHA_MIN,
    _check_energy,
    _lateral,
    longitudinal_parameters,
)

if TYPE_CHECKING:
    from calamp.io import ShowerSet

__all__ = ["BLOCK_SIZE", "iter_photon_showers", "photon_showers", "sample_shower_parameters"]

BLOCK_SIZE = 1024
"""Showers per independently seeded random-number block (part of the stream definition)."""


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
