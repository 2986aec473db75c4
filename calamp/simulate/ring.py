"""The 2D ring toy: ``r = r0 + Gamma(shape, scale)``, uniform azimuth, and its exact density."""

from __future__ import annotations

import math

import numpy as np

from calamp.simulate.config import SeedLike

__all__ = ["ring", "ring_log_prob", "ring_radius_cdf", "ring_radius_pdf"]


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
