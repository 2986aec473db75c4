"""HEP-style figures (mplhep) drawn from results only.

Every function takes plain arrays (what :mod:`calamp.pipeline` stores in ``results.json`` and
``results.npz``), draws on ``ax=`` (a new figure when omitted) and returns the artists it made.
Library code never calls ``plt.show()``; :func:`save_figure` writes PDF and PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    "use_style",
    "finite_edges",
    "plot_observable",
    "plot_calibration",
    "plot_amplification_vs_bins",
    "plot_amplification_per_bin",
    "plot_closure",
    "log_limits",
    "plot_shower_image",
    "label_axes",
    "save_figure",
]

_STYLE_SET = False


def use_style() -> None:
    """Switch matplotlib to the experiment-neutral mplhep ROOT style (once per process)."""
    global _STYLE_SET
    if not _STYLE_SET:
        hep.style.use("ROOT")
        plt.rcParams.update({"figure.figsize": (7.0, 6.0), "legend.fontsize": 13})
        # ten distinguishable colours, so "C0".."C9" never repeat within a figure
        plt.rcParams["axes.prop_cycle"] = matplotlib.cycler(color=plt.cm.tab10.colors)
        _STYLE_SET = True


def _axes(ax):
    if ax is None:
        use_style()
        _, ax = plt.subplots()
    return ax


def label_axes(ax, text: str = "Simulation", right: str | None = None) -> None:
    """Experiment-neutral label: bold 'calamp' plus ``text`` at the left, ``right`` at the right."""
    ax.text(
        0.0,
        1.01,
        r"$\mathbf{calamp}$ " + rf"$\it{{{text}}}$",
        transform=ax.transAxes,
        ha="left",
        va="bottom",
        fontsize=14,
    )
    if right:
        ax.text(1.0, 1.01, right, transform=ax.transAxes, ha="right", va="bottom", fontsize=12)


def finite_edges(edges: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Replace open (±inf) outer edges by ``lo``/``hi`` or by one inner bin width beyond.

    Args:
        edges: (B+1,) bin edges, possibly with -inf/+inf at the ends.
        lo, hi: replacements for the outer edges (e.g. the truth sample's extreme quantiles).
    """
    e = np.asarray(edges, dtype=float).copy()
    finite = e[np.isfinite(e)]
    if finite.size < 2:
        return np.arange(e.size, dtype=float)
    width = np.median(np.diff(finite)) if finite.size > 1 else 1.0
    if not np.isfinite(e[0]):
        e[0] = lo if lo is not None else finite[0] - width
    if not np.isfinite(e[-1]):
        e[-1] = hi if hi is not None else finite[-1] + width
    return e


def plot_observable(
    edges: np.ndarray,
    truth: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    *,
    xlabel: str,
    train: np.ndarray | None = None,
    ax=None,
    ratio_ax=None,
    model_label: str = "Posterior mean ± std",
) -> dict:
    """Bin fractions per unit x: truth, training sample, and the posterior band with a ratio panel.

    Args:
        edges: (B+1,) finite edges in the observable's unit.
        truth, mean, std: (B,) bin fractions (sum to 1) of the truth, the posterior mean and
            the posterior std over draws.
        train: optional (B,) fractions of the training sample D_n.
        ratio_ax: optional axes for the ratio to the truth.
    """
    ax = _axes(ax)
    widths = np.diff(edges)
    dens = lambda v: np.asarray(v) / widths  # noqa: E731
    art = {}
    art["band"] = ax.stairs(
        dens(mean + std),
        edges,
        baseline=dens(mean - std),
        fill=True,
        alpha=0.35,
        color="C0",
        label=model_label,
    )
    art["mean"] = ax.stairs(dens(mean), edges, color="C0", lw=1.5)
    art["truth"] = ax.stairs(dens(truth), edges, color="k", lw=1.5, label="Truth")
    if train is not None:
        art["train"] = ax.stairs(
            dens(train), edges, color="C1", lw=1.2, ls="--", label="Training data"
        )
    ax.set_ylabel("Fraction / unit")
    ax.set_ylim(0, 1.35 * ax.get_ylim()[1])  # head-room for the legend
    ax.legend(loc="upper right", fontsize=11, frameon=False)
    if ratio_ax is not None:
        t = np.where(truth > 0, truth, np.nan)
        ratio_ax.stairs(
            (mean + std) / t, edges, baseline=(mean - std) / t, fill=True, alpha=0.35, color="C0"
        )
        ratio_ax.stairs(mean / t, edges, color="C0")
        if train is not None:
            ratio_ax.stairs(train / t, edges, color="C1", ls="--")
        ratio_ax.axhline(1.0, color="k", lw=1)
        ratio_ax.set_ylabel("Ratio", fontsize=16)
        ratio_ax.set_xlabel(xlabel)
        ax.set_xlabel("")
    else:
        ax.set_xlabel(xlabel)
    return art


def plot_calibration(
    levels: np.ndarray,
    empirical: np.ndarray,
    *,
    band: tuple | None = None,
    label: str | None = None,
    ax=None,
    color=None,
) -> dict:
    """Calibration curve: empirical coverage c̄(c) against the credibility level c, and diagonal.

    Args:
        levels: (L,) credibility levels c in [0, 1].
        empirical: (L,) empirical coverage.
        band: optional (lo (L,), hi (L,)) bootstrap band.
    """
    ax = _axes(ax)
    art = {"diagonal": ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)[0]}
    (line,) = ax.plot(levels, empirical, label=label, color=color, lw=1.8)
    art["curve"] = line
    if band is not None:
        art["band"] = ax.fill_between(levels, band[0], band[1], color=line.get_color(), alpha=0.25)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Credibility level $c$")
    ax.set_ylabel(r"Empirical coverage $\bar{c}$")
    if label:
        ax.legend(loc="upper left")
    return art


def plot_amplification_vs_bins(
    n_bins: Sequence[int],
    amp: np.ndarray,
    *,
    lo=None,
    hi=None,
    label: str | None = None,
    ax=None,
    marker="o",
) -> dict:
    """Amplification n'/n against the number of bins (log-log) with a band (lo, hi), e.g. the
    68 % interval of the combined estimate."""
    ax = _axes(ax)
    n_bins = np.asarray(n_bins)

    def positive(v) -> np.ndarray:  # a log axis: non-positive or missing values are not drawn
        v = np.asarray(v, dtype=float)
        return np.where(np.isfinite(v) & (v > 0), v, np.nan)

    amp = positive(amp)
    (line,) = ax.plot(n_bins, amp, marker=marker, label=label)
    art = {"curve": line}
    if lo is not None and hi is not None:
        lo, hi = positive(lo), positive(hi)
        art["band"] = ax.fill_between(n_bins, lo, hi, alpha=0.25, color=line.get_color())
    art["unity"] = ax.axhline(1.0, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    drawn = [np.asarray(ln.get_ydata(), float) for ln in ax.get_lines() if ln is not art["unity"]]
    if not any(np.isfinite(y).any() for y in drawn):  # nothing resolved: valid log axes
        ax.set_ylim(0.1, 10.0)
        ax.set_xlim(0.5 * float(n_bins.min()), 2.0 * float(n_bins.max()))
    ax.set_xlabel("Number of quantile bins $n_Q$")
    ax.set_ylabel("Amplification $n'/n$")
    if label:
        ax.legend(loc="best")
    return art


def plot_amplification_per_bin(
    edges: np.ndarray, per_bin: np.ndarray, *, n_train: int, xlabel: str, ax=None
) -> dict:
    """Per-bin amplification n'_j/n (mean over networks) as a step histogram."""
    ax = _axes(ax)
    art = {"amp": ax.stairs(np.asarray(per_bin, dtype=float) / n_train, edges, color="C2", lw=1.5)}
    art["unity"] = ax.axhline(1.0, color="grey", ls="--", lw=1)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.tick_params(axis="y", labelsize=14)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("$n'_j/n$", fontsize=16)
    return art


def plot_closure(
    n_bins: Sequence[int], n_prime: np.ndarray, n_eq: np.ndarray, *, n_train: int, ax=None
) -> dict:
    """JSD closure: Bayesian estimate n'/n and 'true' amplification n_eq/n against n_Q."""
    ax = _axes(ax)
    art = {
        "bayes": ax.plot(n_bins, np.asarray(n_prime) / n_train, "o-", label="Bayesian $n'/n$")[0],
        "true": ax.plot(n_bins, np.asarray(n_eq) / n_train, "s--", label=r"JSD closure $n_{eq}/n$")[
            0
        ],
    }
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Number of quantile bins $n_Q$")
    ax.set_ylabel("Amplification")
    ax.legend(loc="best")
    return art


def log_limits(*images: np.ndarray) -> tuple[float, float] | None:
    """(vmin, vmax) of a log colour scale over the positive values of ``images`` (at most six
    decades below the largest), so images drawn side by side can share it; None: none positive."""
    vals = np.concatenate([np.asarray(im, dtype=float).ravel() for im in images])
    pos = vals[np.isfinite(vals) & (vals > 0)]
    if not pos.size:
        return None
    return max(pos.min(), pos.max() * 1e-6), max(pos.max(), pos.min() * 10)


def plot_shower_image(
    image: np.ndarray,
    *,
    ax=None,
    label: str = "Energy [GeV]",
    log: bool = True,
    cell_size: float = 5.0,
    centre: float | None = None,
    annotate: np.ndarray | None = None,
    limits: tuple[float, float] | None = None,
) -> dict:
    """A (ny, nx) cell image with a colour bar; coordinates in mm, centred on 0.

    ``centre``: a linear diverging colour scale symmetric about this value (e.g. 1 for a ratio)
    instead of the log scale. ``annotate``: (ny, nx) strings written into the cells.
    ``limits``: (vmin, vmax) of the log colour scale, so images drawn side by side share one
    scale (default: this image's positive range, at most six decades).
    """
    ax = _axes(ax)
    ny, nx = image.shape
    ext = [-nx * cell_size / 2, nx * cell_size / 2, -ny * cell_size / 2, ny * cell_size / 2]
    norm = None
    img = np.asarray(image, dtype=float)
    cmap = "viridis"
    if centre is not None:
        dev = np.nanmax(np.abs(img - centre)) if np.isfinite(img).any() else 1.0
        dev = dev if dev > 0 else 1.0
        norm = matplotlib.colors.TwoSlopeNorm(vcenter=centre, vmin=centre - dev, vmax=centre + dev)
        cmap = "RdBu_r"
    elif log:
        vmin, vmax = limits or log_limits(img) or (1e-6, 1e-5)
        norm = matplotlib.colors.LogNorm(vmin=vmin, vmax=vmax)
        img = np.where(img > 0, img, np.nan)
    im = ax.imshow(img, origin="lower", extent=ext, norm=norm, cmap=cmap)
    cb = ax.figure.colorbar(im, ax=ax, label=label)
    if annotate is not None:
        for iy in range(ny):
            for ix in range(nx):
                ax.text(
                    ext[0] + (ix + 0.5) * cell_size,
                    ext[2] + (iy + 0.5) * cell_size,
                    annotate[iy, ix],
                    ha="center",
                    va="center",
                    fontsize=6,
                )
    ax.set_xlabel("x [mm]")
    ax.set_ylabel("y [mm]")
    return {"image": im, "colorbar": cb}


def save_figure(fig, stem: str | Path) -> list[Path]:
    """Save ``fig`` as ``stem.pdf`` and ``stem.png`` (150 dpi) and close it."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    fig.savefig(paths[0], bbox_inches="tight")
    fig.savefig(paths[1], dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths
