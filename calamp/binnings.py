"""Binnings: events to a flat vector of bin counts (boost-histogram's C++ fill), ``hist`` views.

A *binning* turns events into a flat vector of ``B`` bin counts. Every binning here is
open-ended: the outer bins of each axis also hold everything below the first / above the last
edge, so no finite (or infinite) value is lost. Events with a NaN coordinate go into no bin but
are still counted as filled, so a sample with NaNs has fractions that sum to less than one.
Multi-dimensional bins are flattened in C order (axis 0 slowest) everywhere.

Quantile binnings are built from a truth sample so that each cell has truth probability
``1/B`` (arXiv:2408.00838, ring study). For discrete observables colliding quantile edges are
merged (fewer bins); use :meth:`QuantileBinning.truth_fractions` rather than assuming ``1/B``.

The per-draw accumulators that fill a binning for (network, draw) are in
:mod:`calamp.histograms`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import boost_histogram as bh
import hist
import numpy as np

__all__ = [
    "Binning",
    "QuantileBinning",
    "RegularBinning",
    "fill_counts",
    "fill_fractions",
    "make_hist",
    "quantile_binning",
    "regular_binning",
    "to_hist",
    "to_polar",
]

_TWO_PI = 2.0 * np.pi


def to_polar(xy: np.ndarray) -> np.ndarray:
    """Cartesian points to polar coordinates.

    Args:
        xy: (N, 2) points (x, y).

    Returns:
        (N, 2) array of [r, phi] with r >= 0 and phi in [0, 2 pi).
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        msg = f"`xy` must have shape (N, 2), got {xy.shape}"
        raise ValueError(msg)
    r = np.hypot(xy[:, 0], xy[:, 1])
    phi = np.arctan2(xy[:, 1], xy[:, 0])
    phi = np.where(phi < 0.0, phi + _TWO_PI, phi)
    # a tiny negative angle plus 2 pi rounds to exactly 2 pi: map it to 0
    phi = np.where(phi >= _TWO_PI, 0.0, phi)
    return np.stack([r, phi], axis=1)


def _fold_flow(view: np.ndarray) -> np.ndarray:
    """Add under/overflow slots into the outer bins and drop them (every axis)."""
    out = np.asarray(view)
    for axis in range(out.ndim):
        out = np.moveaxis(out, axis, 0).copy()
        out[1] += out[0]
        out[-2] += out[-1]
        out = np.moveaxis(out[1:-1], 0, axis)
    return out


class Binning:
    """Common interface of the binnings (use :class:`QuantileBinning` or :class:`RegularBinning`).

    Attributes provided by subclasses: ``edges`` (tuple of finite, increasing edge arrays, one per
    axis) and ``names`` (tuple of axis names).
    """

    edges: tuple[np.ndarray, ...]
    names: tuple[str, ...]

    # -- shape -------------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of observable axes d."""
        return len(self.edges)

    @property
    def shape(self) -> tuple[int, ...]:
        """Bins per axis."""
        return tuple(len(e) - 1 for e in self.edges)

    @property
    def n_bins(self) -> int:
        """Total number of bins B (product of :attr:`shape`)."""
        return int(np.prod(self.shape))

    # -- to be provided ------------------------------------------------------------------------
    def _bh_axes(self) -> list[bh.axis.Axis]:
        raise NotImplementedError

    def hist_axes(self, labels: Sequence[str] | None = None) -> list[hist.axis.AxesMixin]:
        """``hist`` axes: finite edges, no flow bins, ``labels`` (default: the axis names)."""
        raise NotImplementedError

    # -- filling ------------------------------------------------------------------------------
    def columns(self, x: np.ndarray) -> list[np.ndarray]:
        """Validate events and split them into one contiguous float64 column per axis.

        Args:
            x: (N,) for a 1D binning, (N, d) for d axes ((N, 1) also accepted in 1D).
        """
        x = np.asarray(x, dtype=np.float64)
        if self.ndim == 1 and x.ndim == 1:
            return [x]
        if x.ndim != 2 or x.shape[1] != self.ndim:
            want = "(N,)" if self.ndim == 1 else f"(N, {self.ndim})"
            msg = f"`x` must have shape {want} for this {self.ndim}-axis binning, got {x.shape}"
            raise ValueError(msg)
        return [np.ascontiguousarray(x[:, a]) for a in range(self.ndim)]

    def counts(self, x: np.ndarray) -> np.ndarray:
        """Counts per bin of a sample.

        Args:
            x: (N,) or (N, d) events.

        Returns:
            (B,) int64 counts, flattened C order. Events with a NaN coordinate are not counted.
        """
        cols = self.columns(x)
        if cols and not np.isfinite(np.add.reduce([c.sum() for c in cols])):
            # rare path: inf or NaN present; boost-histogram puts NaN in the overflow slot
            ok = ~np.logical_or.reduce([np.isnan(c) for c in cols])
            if not ok.all():
                cols = [c[ok] for c in cols]
        h = bh.Histogram(*self._bh_axes(), storage=bh.storage.Int64())
        h.fill(*cols)
        return _fold_flow(h.view(flow=True)).reshape(-1)

    def fractions(self, x: np.ndarray) -> np.ndarray:
        """Normalised bin fractions of a sample: counts / N, shape (B,) float64."""
        n = len(x)
        if n == 0:
            msg = "`x` is empty: cannot normalise"
            raise ValueError(msg)
        return self.counts(x) / n

    def truth_fractions(self, truth: np.ndarray) -> np.ndarray:
        """Bin probabilities p_j estimated from a (large) truth sample, shape (B,).

        For quantile bins of a continuous observable built from the same distribution this is
        close to 1/B; for discrete observables (merged edges) it is not.
        """
        truth_arr = np.asarray(truth, dtype=np.float64)
        if np.isnan(truth_arr).any():
            msg = "`truth` contains NaN"
            raise ValueError(msg)
        return self.fractions(truth_arr)

    def index(self, x: np.ndarray) -> np.ndarray:
        """Flat bin index per event with ``np.searchsorted`` (reference path, slower).

        Returns:
            (N,) int64 in [0, B); NaN events get -1.
        """
        cols = self.columns(x)
        flat = np.zeros(len(cols[0]), dtype=np.int64)
        bad = np.zeros(len(cols[0]), dtype=bool)
        for c, e, n in zip(cols, self.edges, self.shape, strict=True):
            idx = np.searchsorted(e[1:-1], c, side="right")
            flat = flat * n + idx
            bad |= np.isnan(c)
        flat[bad] = -1
        return flat

    # -- misc -----------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Binning)
        return (
            self.names == other.names
            and self.ndim == other.ndim
            and all(np.array_equal(a, b) for a, b in zip(self.edges, other.edges, strict=True))
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.names, tuple(e.tobytes() for e in self.edges)))


def _as_names(names: Sequence[str] | str | None, ndim: int) -> tuple[str, ...]:
    if names is None:
        return ("x",) if ndim == 1 else tuple(f"x{a}" for a in range(ndim))
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if len(names) != ndim:
        msg = f"`names` needs {ndim} entries, got {len(names)}"
        raise ValueError(msg)
    return names


@dataclass(frozen=True, eq=False)
class QuantileBinning(Binning):
    """Product grid of per-axis variable edges (usually marginal quantiles of a truth sample).

    Attributes:
        edges: per axis, finite strictly increasing edges (first/last = truth min/max); the outer
            bins are open-ended.
        names: axis names.
    """

    edges: tuple[np.ndarray, ...]
    names: tuple[str, ...] = ("x",)

    def __post_init__(self) -> None:
        edges = tuple(np.asarray(e, dtype=np.float64) for e in self.edges)
        for a, e in enumerate(edges):
            if e.ndim != 1 or len(e) < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
                msg = f"`edges[{a}]` must be >= 2 finite strictly increasing values"
                raise ValueError(msg)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "names", _as_names(self.names, len(edges)))

    def _bh_axes(self) -> list[bh.axis.Axis]:
        return [bh.axis.Variable(e) for e in self.edges]

    def hist_axes(self, labels: Sequence[str] | None = None) -> list[hist.axis.AxesMixin]:
        labels = labels or self.names
        return [
            hist.axis.Variable(e, name=n, label=lab, underflow=False, overflow=False)
            for e, n, lab in zip(self.edges, self.names, labels, strict=True)
        ]


@dataclass(frozen=True, eq=False)
class RegularBinning(Binning):
    """Product grid of equal-width bins per axis, outer bins open-ended.

    Attributes:
        bins: bins per axis.
        lo: lower edge per axis.
        hi: upper edge per axis.
        names: axis names.
    """

    bins: tuple[int, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    names: tuple[str, ...] = ("x",)

    def __post_init__(self) -> None:
        bins = tuple(int(b) for b in np.atleast_1d(self.bins))
        lo = tuple(float(v) for v in np.atleast_1d(self.lo))
        hi = tuple(float(v) for v in np.atleast_1d(self.hi))
        if not len(bins) == len(lo) == len(hi):
            msg = "`bins`, `lo` and `hi` need one entry per axis"
            raise ValueError(msg)
        for a, (b, l_, h_) in enumerate(zip(bins, lo, hi, strict=True)):
            if b < 1 or not (np.isfinite(l_) and np.isfinite(h_) and h_ > l_):
                msg = f"axis {a}: need `bins` >= 1 and finite `lo` < `hi`, got {b}, {l_}, {h_}"
                raise ValueError(msg)
        object.__setattr__(self, "bins", bins)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "names", _as_names(self.names, len(bins)))

    @property
    def edges(self) -> tuple[np.ndarray, ...]:  # type: ignore[override]
        """Per-axis edges, ``np.linspace(lo, hi, bins + 1)``."""
        return tuple(
            np.linspace(lo, hi, b + 1)
            for b, lo, hi in zip(self.bins, self.lo, self.hi, strict=True)
        )

    def _bh_axes(self) -> list[bh.axis.Axis]:
        return [
            bh.axis.Regular(b, lo, hi)
            for b, lo, hi in zip(self.bins, self.lo, self.hi, strict=True)
        ]

    def hist_axes(self, labels: Sequence[str] | None = None) -> list[hist.axis.AxesMixin]:
        labels = labels or self.names
        return [
            hist.axis.Regular(b, lo, hi, name=n, label=lab, underflow=False, overflow=False)
            for b, lo, hi, n, lab in zip(
                self.bins, self.lo, self.hi, self.names, labels, strict=True
            )
        ]


def quantile_binning(
    truth: np.ndarray,
    n_per_axis: int | Sequence[int],
    *,
    names: Sequence[str] | str | None = None,
) -> QuantileBinning:
    """Marginal-quantile product grid from a truth sample (ring study of arXiv:2408.00838).

    Edges of axis a are ``np.quantile(truth[:, a], linspace(0, 1, n + 1))``; colliding edges
    (discrete observables) are merged, so an axis may get fewer than n bins. With independent
    axes (as r and phi of the ring) every cell has truth probability 1/B.

    Args:
        truth: (N,) or (N, d) truth sample without NaN.
        n_per_axis: bins per axis (int for all axes, or one per axis).
        names: axis names.

    Returns:
        A :class:`QuantileBinning` with up to ``prod(n_per_axis)`` bins.
    """
    t = np.asarray(truth, dtype=np.float64)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or len(t) == 0:
        msg = f"`truth` must have shape (N,) or (N, d) with N > 0, got {np.shape(truth)}"
        raise ValueError(msg)
    if not np.all(np.isfinite(t)):
        msg = "`truth` must be finite"
        raise ValueError(msg)
    d = t.shape[1]
    n_axes = np.broadcast_to(np.asarray(n_per_axis, dtype=np.int64), (d,))
    if np.any(n_axes < 1):
        msg = f"`n_per_axis` must be >= 1, got {n_per_axis}"
        raise ValueError(msg)
    edges = []
    for a in range(d):
        e = np.unique(np.quantile(t[:, a], np.linspace(0.0, 1.0, int(n_axes[a]) + 1)))
        if len(e) == 1:  # constant observable: one bin
            e = np.array([e[0], np.nextafter(e[0], np.inf)])
        edges.append(e)
    return QuantileBinning(tuple(edges), _as_names(names, d))


def regular_binning(
    bins: int | Sequence[int],
    lo: float | Sequence[float],
    hi: float | Sequence[float],
    *,
    names: Sequence[str] | str | None = None,
) -> RegularBinning:
    """Equal-width binning (open-ended outer bins); scalars or one value per axis."""
    b, lo_, hi_ = np.broadcast_arrays(np.atleast_1d(bins), np.atleast_1d(lo), np.atleast_1d(hi))
    return RegularBinning(
        tuple(int(v) for v in b), tuple(lo_.tolist()), tuple(hi_.tolist()), _as_names(names, len(b))
    )


def fill_counts(binning: Binning, x: np.ndarray) -> np.ndarray:
    """(B,) int64 counts of events x ((N,) or (N, d)) in ``binning``."""
    return binning.counts(x)


def fill_fractions(binning: Binning, x: np.ndarray) -> np.ndarray:
    """(B,) normalised fractions (counts / N) of events x in ``binning``."""
    return binning.fractions(x)


_STORAGES = {
    "double": bh.storage.Double,
    "weight": bh.storage.Weight,
    "int64": bh.storage.Int64,
}


def make_hist(
    binning: Binning,
    *,
    storage: str = "weight",
    labels: Sequence[str] | None = None,
) -> hist.Hist:
    """An empty ``hist.Hist`` with the binning's axes (finite edges, no flow bins).

    The outer bins stand for open-ended bins; fill through :meth:`Binning.counts` /
    :class:`~calamp.histograms.DrawHistograms` (which fold the flow) and assign the values, or
    use :func:`to_hist`.

    Args:
        binning: the binning.
        storage: "weight" (keeps variances, for ROOT output), "double" or "int64".
        labels: axis labels (default: the axis names).
    """
    if storage not in _STORAGES:
        msg = f"`storage` must be one of {sorted(_STORAGES)}, got {storage!r}"
        raise ValueError(msg)
    return hist.Hist(*binning.hist_axes(labels), storage=_STORAGES[storage]())


def to_hist(
    binning: Binning,
    values: np.ndarray,
    variances: np.ndarray | None = None,
    *,
    labels: Sequence[str] | None = None,
) -> hist.Hist:
    """A ``hist.Hist`` (Weight storage) holding flat values (B,) and optional variances (B,)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (binning.n_bins,):
        msg = f"`values` must have shape ({binning.n_bins},), got {values.shape}"
        raise ValueError(msg)
    h = make_hist(binning, storage="weight", labels=labels)
    view = h.view()
    view.value = values.reshape(binning.shape)
    if variances is not None:
        variances = np.asarray(variances, dtype=np.float64)
        if variances.shape != values.shape:
            msg = f"`variances` must have shape {values.shape}, got {variances.shape}"
            raise ValueError(msg)
        view.variance = variances.reshape(binning.shape)
    return h
