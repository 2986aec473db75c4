"""Noise-free bin probabilities of a density on the plane, by quadrature over polar binnings.

For a generator with an exact density p(x, y) (a flow, the CNF) the probability of a cell
``[r_a, r_b) x [phi_a, phi_b)`` of a polar product binning is

    P = int_{r_a}^{r_b} int_{phi_a}^{phi_b} p(r cos phi, r sin phi) r dphi dr,

so a posterior draw's bin probabilities need no generated events at all (g -> infinity in the
statistics: no multinomial noise to subtract). :func:`polar_rule` builds one tensor-product
Gauss-Legendre rule for several binnings at once: the radial and azimuthal breakpoints are the
union of every binning's edges and a uniform grid (so no node interval straddles a cell
edge and coarse cells are still resolved), ``order`` nodes per interval (fewer on
intervals shorter than the uniform spacing), and beyond the largest
truth radius R the uniform grid goes on to 2R, from where the tail is integrated to infinity
with ``r = 2R + R t / (1 - t)``.
The outer bins of a binning are open-ended (:mod:`calamp.binnings`): the first radial cell
starts at r = 0, the last ends at infinity, the azimuthal cells cover [0, 2 pi).

The density is evaluated once per draw on the node grid (:meth:`PolarRule.points`), and every
binning's cells are sums of contiguous node blocks (``np.add.reduceat``), so the cost is the
density evaluation at ``n_r * n_phi`` points. The quadrature error is measured, not assumed:
:meth:`PolarRule.refined` gives the next rule of a refinement ladder (two nodes on short
intervals, then one more node per interval and twice the uniform grid), and ``1 - sum(P)`` is
the mass the rule misses (both recorded by the pipeline).

numpy only; the density evaluation lives with the models (:mod:`calamp.generation`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from calamp.binnings import Binning

__all__ = ["PolarRule", "integrate", "polar_rule"]

_TWO_PI = 2.0 * np.pi


def _gauss_legendre(
    breaks: np.ndarray, order: int, h: float | None = None, min_nodes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on every interval of ``breaks``: ``order`` nodes on an
    interval of length >= ``h``, fewer on shorter ones (``ceil(order * length / h)``, at least
    ``min_nodes``), so the node spacing is about ``h / order`` everywhere (None: ``order``
    everywhere)."""
    lo, hi = breaks[:-1], breaks[1:]
    if h is None:
        n = np.full(lo.size, order)
    else:
        n = np.clip(np.ceil(order * (hi - lo) / h - 1e-9).astype(int), min(min_nodes, order),
                    order)
    nodes, weights = [], []
    for m in np.unique(n):
        x, w = np.polynomial.legendre.leggauss(int(m))
        sel = n == m
        half = 0.5 * (hi[sel, None] - lo[sel, None])
        nodes.append((lo[sel, None] + half * (x[None, :] + 1.0)).ravel())
        weights.append((half * w[None, :]).ravel())
    x_all, w_all = np.concatenate(nodes), np.concatenate(weights)
    idx = np.argsort(x_all, kind="stable")
    return x_all[idx], w_all[idx]


def _polar_edges(key: str, b: Binning) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(r edges, phi edges) of a polar binning; None for an axis it does not split."""
    names = tuple(b.names)
    edges = [np.asarray(e, dtype=np.float64) for e in b.edges]
    if b.ndim == 2 and names[1] != "r":
        er, ep = edges
    elif b.ndim == 1:
        er, ep = (None, edges[0]) if names[0] == "phi" else (edges[0], None)
    else:
        msg = f"binning {key!r} with axes {names} is not polar: need (r, phi), r or phi"
        raise ValueError(msg)
    if (er is not None and er[0] < 0) or (ep is not None and (ep[0] < 0 or ep[-1] > _TWO_PI)):
        msg = f"binning {key!r} is not polar: need r >= 0 and phi in [0, 2 pi]"
        raise ValueError(msg)
    return er, ep


def _given(edge_sets: list[np.ndarray | None]) -> list[np.ndarray]:
    return [e for e in edge_sets if e is not None]


def _starts(nodes: np.ndarray, edges: np.ndarray | None) -> np.ndarray:
    """Index of the first node of every cell (every edge is a breakpoint: no cell is empty)."""
    if edges is None:
        return np.zeros(1, dtype=np.intp)
    return np.concatenate([[0], np.searchsorted(nodes, edges[1:-1], side="left")])


def _breaks(edge_sets: list[np.ndarray], lo: float, hi: float, n_uniform: int) -> np.ndarray:
    pts = [np.array([lo, hi]), np.linspace(lo, hi, n_uniform + 1)]
    pts += [e[(e > lo) & (e < hi)] for e in edge_sets]
    return np.unique(np.concatenate(pts))


@dataclass(frozen=True, eq=False)
class PolarRule:
    """Tensor-product quadrature rule on the plane in polar coordinates.

    Attributes:
        r, w_r: (n_r,) radial nodes (ascending) and weights, the Jacobian r included.
        phi, w_phi: (n_phi,) azimuthal nodes in [0, 2 pi) (ascending) and weights.
        starts: ``{key: (r_starts, phi_starts)}``: index of the first node of every cell along
            each axis (cells are contiguous node blocks; ``np.add.reduceat`` sums them).
        settings: the arguments the rule was built with (for :meth:`refined` and records).
    """

    r: np.ndarray
    w_r: np.ndarray
    phi: np.ndarray
    w_phi: np.ndarray
    starts: dict[str, tuple[np.ndarray, np.ndarray]]
    settings: dict = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        """Density evaluations per draw, n_r * n_phi."""
        return self.r.size * self.phi.size

    def points(self, rows_per_chunk: int) -> Iterator[np.ndarray]:
        """Cartesian nodes ``(rows * n_phi, 2)`` float64, ``rows_per_chunk`` radii at a time
        (radius slowest), the order :meth:`cell_probabilities` expects."""
        c, s = np.cos(self.phi), np.sin(self.phi)
        for a in range(0, self.r.size, rows_per_chunk):
            rr = self.r[a : a + rows_per_chunk, None]
            yield np.stack([(rr * c).ravel(), (rr * s).ravel()], axis=1)

    def cell_probabilities(self, density: np.ndarray) -> dict[str, np.ndarray]:
        """Cell probabilities ``{key: (B,)}`` (C order, r slowest) from the density values
        (n_r * n_phi,) at :meth:`points` (per unit area, in the binning's coordinates)."""
        d = np.asarray(density, dtype=np.float64).reshape(self.r.size, self.phi.size)
        mass = (self.w_r[:, None] * d) * self.w_phi[None, :]
        out = {}
        for key, (sr, sp) in self.starts.items():
            out[key] = np.add.reduceat(np.add.reduceat(mass, sr, axis=0), sp, axis=1).ravel()
        return out

    def refined(self) -> PolarRule:
        """The next rule of the refinement ladder for the same binnings: a rule with one node
        on short intervals first gets two there; otherwise one more node per interval and twice
        the uniform grid."""
        s = self.settings
        if s["min_nodes"] < 2 <= s["order"]:
            return polar_rule(s["binnings"], order=s["order"], n_uniform=s["n_uniform"],
                              tail_order=s["tail_order"], min_nodes=2)
        return polar_rule(
            s["binnings"],
            order=s["order"] + 1,
            n_uniform=2 * s["n_uniform"],
            tail_order=s["tail_order"] + 4,
            min_nodes=2,
        )


def polar_rule(
    binnings: Mapping[str, Binning],
    *,
    order: int = 3,
    n_uniform: int = 64,
    tail_order: int = 16,
    min_nodes: int = 2,
) -> PolarRule:
    """One quadrature rule for every (r, phi) binning in ``binnings``.

    Args:
        binnings: ``{key: binning}``, each with axes (r, phi) (r in the plane's length unit,
            phi in radians in [0, 2 pi)), or one axis named ``r`` or ``phi`` (a marginal), as
            :func:`calamp.sources.make_binnings` builds them for the ring.
        order: Gauss-Legendre nodes per interval of the uniform grid's length or longer
            (exact for polynomials of degree 2 order - 1); shorter intervals between
            neighbouring edges of different binnings get proportionally fewer (at least
            ``min_nodes``; many binnings put many short intervals between their edges).
        n_uniform: intervals of the uniform grid per axis (r in [0, R], phi in [0, 2 pi)),
            added to the cell edges so coarse cells are resolved; R is the largest outer
            radial edge (the largest truth radius).
        tail_order: nodes of the mapped tail beyond 2R, ``r = 2R + R t / (1 - t)``, t in
            [0, 1) (between R and 2R the uniform grid goes on).

    Returns:
        A :class:`PolarRule`.
    """
    if not binnings:
        msg = "`binnings` is empty"
        raise ValueError(msg)
    for name, v in (("order", order), ("n_uniform", n_uniform), ("tail_order", tail_order),
                    ("min_nodes", min_nodes)):
        if int(v) != v or v < 1:
            msg = f"`{name}` must be a positive integer, got {v!r}"
            raise ValueError(msg)
    edges_r, edges_phi = [], []
    for key, b in binnings.items():
        er, ep = _polar_edges(key, b)
        edges_r.append(er)
        edges_phi.append(ep)
    r_hi = max(float(e[-1]) for e in edges_r if e is not None) if any(
        e is not None for e in edges_r) else 0.0
    if not r_hi > 0:
        msg = "the radial edges end at r = 0: nothing to integrate"
        raise ValueError(msg)
    # every edge is a breakpoint (the outer ones bound the truth's support, where a density may
    # have a kink); the outer cells are still open: r from 0 to infinity, phi all round
    h_r = r_hi / n_uniform
    breaks_r = _breaks(_given(edges_r), 0.0, r_hi, n_uniform)
    r, w_r = _gauss_legendre(breaks_r, order, h_r, min_nodes)
    # beyond the truth: [R, 2R] on a uniform grid of the same spacing, then R t / (1 - t)
    outer = np.linspace(r_hi, 2.0 * r_hi, n_uniform + 1)
    r_out, w_out = _gauss_legendre(outer, order, h_r, min_nodes)
    t, w_t = _gauss_legendre(np.array([0.0, 1.0]), tail_order)
    r_tail = 2.0 * r_hi + r_hi * t / (1.0 - t)
    r = np.concatenate([r, r_out, r_tail])
    w_r = np.concatenate([w_r, w_out, w_t * r_hi / (1.0 - t) ** 2]) * r
    phi, w_phi = _gauss_legendre(
        _breaks(_given(edges_phi), 0.0, _TWO_PI, n_uniform), order, _TWO_PI / n_uniform,
        min_nodes,
    )
    starts = {}
    for key, er, ep in zip(binnings, edges_r, edges_phi, strict=True):
        # first node of each cell; empty cells cannot occur (every edge is a breakpoint)
        starts[key] = (_starts(r, er), _starts(phi, ep))
    settings = {
        "binnings": dict(binnings),
        "order": int(order),
        "n_uniform": int(n_uniform),
        "tail_order": int(tail_order),
        "min_nodes": int(min_nodes),
    }
    return PolarRule(r, w_r, phi, w_phi, starts, settings)


def integrate(
    rule: PolarRule,
    log_density: Callable[[np.ndarray], np.ndarray],
    *,
    chunk_size: int = 100_000,
) -> tuple[dict[str, np.ndarray], float]:
    """Cell probabilities of a density by ``rule``.

    Args:
        rule: a :class:`PolarRule`.
        log_density: maps Cartesian points (N, 2) to the natural-log density per unit area
            (N,) in the same coordinates.
        chunk_size: points per call of ``log_density`` (at least one radius row); results do
            not depend on it.

    Returns:
        ``({key: (B,)}, mass)``: the unnormalised cell probabilities and their total (1 up to
        the quadrature error).
    """
    rows = max(1, int(chunk_size) // rule.phi.size)
    parts = [np.exp(np.asarray(log_density(p), dtype=np.float64)) for p in rule.points(rows)]
    density = np.concatenate(parts)
    probs = rule.cell_probabilities(density)
    first = next(iter(probs.values()))
    return probs, float(first.sum())
