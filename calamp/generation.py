"""Generation from posterior draws: the one code path from a draw to decoded events.

:func:`draw_events` yields the events of draw i of a network in chunks (seeded per event block,
so the numbers never depend on the chunk size); :func:`fill_network` streams them into the
per-draw histograms, :func:`write_samples` into a ROOT file (``--write-samples``), and the dask
tasks of :mod:`calamp.distributed` use the same functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from calamp.config import NOISE_BATCHES, RunConfig
from calamp.histograms import Binning, HistogramSet
from calamp.io import CalampError, ShowerSet
from calamp.posterior import NetworkDraws
from calamp.seeds import derive_seed
from calamp.sources import decode_events, event_observables, split_key

__all__ = [
    "QUADRATURE_BLOCK",
    "QUADRATURE_REFINEMENTS",
    "QUADRATURE_START_ORDER",
    "QUADRATURE_TOLERANCE",
    "batch_edges",
    "concatenate_fills",
    "draw_events",
    "fill_network",
    "generation_context",
    "integrate_network",
    "select_rule",
    "write_samples",
]

QUADRATURE_BLOCK = 65_536
"""Quadrature nodes per density evaluation (fixed, so results never depend on a chunk size)."""


def generation_context(
    nd: NetworkDraws, n: int, seed: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Model context and incident energies (GeV) of n generated events, resampled together
    from the training set (both None for the ring)."""
    if nd.context is None and nd.incident is None:
        return None, None
    size = len(nd.context) if nd.context is not None else len(nd.incident)
    idx = np.random.default_rng(seed).integers(0, size, n)
    ctx = None if nd.context is None else nd.context[idx]
    return ctx, None if nd.incident is None else nd.incident[idx]


def draw_events(cfg: RunConfig, nd: NetworkDraws, kind: str, i: int, n: int) -> Iterator[Any]:
    """The generated events of draw i of a network, decoded, in chunks of ``cfg.chunk_size``.

    One code path for histogram filling, ``--write-samples`` and the dask tasks' whole-draw
    mode: the seeds are ``("generate", k, i)`` (per event block) and ``("context", k, i)``
    (``("generate", k)`` and ``("context", k)`` for every draw with common generation noise),
    so the first n events are the same for every n that is a multiple of the generation block
    and for n = ``cfg.generated``.
    """
    nd.model.set_eval_weights(nd.weights[i])
    # common random numbers: the same latent noise (and context) for every draw of a network
    draw = () if cfg.generation_noise == "common" else (i,)
    seed = derive_seed(cfg.seed, "generate", nd.network, *draw)
    ctx, e_inc = generation_context(nd, n, derive_seed(cfg.seed, "context", nd.network, *draw))
    start = 0
    for chunk in nd.model.sample_chunks(n, ctx, seed=seed, chunk_size=cfg.chunk_size):
        echunk = None if e_inc is None else e_inc[start : start + len(chunk)]
        start += len(chunk)
        yield decode_events(kind, nd.features, chunk, echunk)


def fill_network(
    cfg: RunConfig,
    nd: NetworkDraws,
    kind: str,
    binnings: Mapping[str, Binning],
    draws: range | None = None,
) -> dict[str, Any]:
    """Generate ``cfg.generated`` events for every draw of one network into its histograms.

    ``draws`` (default: all s) restricts it to a contiguous block of draws; a draw's events are
    seeded per draw, so the rows of any split concatenate to the whole network's arrays
    (:func:`concatenate_fills`).

    Returns:
        ``{"counts": {key: (s, B)}, "n_filled": (s,), "mean_image": (s, ny, nx) or None,
        "wall_seconds": float}``; with common generation noise also ``"batch_counts":
        {key: (s, m, B)}`` and ``"batch_filled": (s, m)`` (:func:`batch_edges`); s is
        ``len(draws)`` when given.
    """
    draws = range(len(nd.weights)) if draws is None else draws
    if len(draws) == 0 or draws.step != 1 or not 0 <= draws.start < draws.stop <= len(nd.weights):
        msg = f"`draws` must be a non-empty block of [0, {len(nd.weights)}), got {draws}"
        raise ValueError(msg)
    cuts = batch_edges(cfg)
    hset = HistogramSet(binnings, len(cuts) - 1, len(draws))
    names = tuple({split_key(k)[0] for k in binnings})
    mean_images = None
    t0 = time.perf_counter()
    bar = tqdm(total=len(draws), disable=not cfg.progress, desc=f"generate net {nd.network}")
    for row, i in enumerate(draws):
        start = 0
        for events in draw_events(cfg, nd, kind, i, cfg.generated):
            obs = event_observables(kind, events, names)
            stop = start + len(events)
            for b in range(len(cuts) - 1):  # the batches this chunk overlaps
                lo, hi = max(cuts[b], start) - start, min(cuts[b + 1], stop) - start
                if hi > lo:
                    hset.fill(b, row, {key: obs[split_key(key)[0]][lo:hi] for key in binnings})
            start = stop
            if kind == "showers":
                if mean_images is None:
                    mean_images = np.zeros((len(draws), *events.shape))
                mean_images[row] += events.energy.sum(axis=0, dtype=np.float64)
        if mean_images is not None:
            mean_images[row] /= cfg.generated
        bar.update(1)
    bar.close()
    out = {
        "counts": {key: h.counts.sum(axis=0) for key, h in hset.items()},
        "n_filled": next(iter(hset.values())).n_filled.sum(axis=0),
        "mean_image": mean_images,
        "wall_seconds": time.perf_counter() - t0,
    }
    if cfg.generation_noise == "common":
        out["batch_counts"] = {key: np.swapaxes(h.counts, 0, 1) for key, h in hset.items()}
        out["batch_filled"] = np.swapaxes(next(iter(hset.values())).n_filled, 0, 1)
    return out


def concatenate_fills(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`fill_network` results of consecutive draw blocks joined along the draw axis (as
    one call over all their draws); ``wall_seconds`` is their sum. A single part is returned as
    it is (any kind of result, e.g. :func:`integrate_network`'s)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    out: dict[str, Any] = {
        "counts": {
            key: np.concatenate([p["counts"][key] for p in parts]) for key in first["counts"]
        },
        "n_filled": np.concatenate([p["n_filled"] for p in parts]),
        "mean_image": None
        if first["mean_image"] is None
        else np.concatenate([p["mean_image"] for p in parts]),
        "wall_seconds": float(sum(p["wall_seconds"] for p in parts)),
    }
    if "batch_counts" in first:
        out["batch_counts"] = {
            key: np.concatenate([p["batch_counts"][key] for p in parts])
            for key in first["batch_counts"]
        }
        out["batch_filled"] = np.concatenate([p["batch_filled"] for p in parts])
    return out


def batch_edges(cfg: RunConfig) -> np.ndarray:
    """Event indices that cut a draw's ``cfg.generated`` events into batches: (m + 1,), m =
    :data:`~calamp.config.NOISE_BATCHES` with common generation noise, else 1 (one batch)."""
    m = NOISE_BATCHES if cfg.generation_noise == "common" else 1
    return (np.arange(m + 1) * cfg.generated) // m


QUADRATURE_TOLERANCE = 0.1
"""Largest accepted quadrature error of a cell probability, in units of the statistical error of
a training-size sample, ``|dp| / sqrt(p (1 - p) / n_train)`` (<= 1 % of that variance)."""

QUADRATURE_START_ORDER = 2
"""Gauss-Legendre order of the first rule tried, with one node on intervals shorter than half the
uniform spacing: many binnings (the ring study's 15 grids) put most of the nodes between
neighbouring edges, and a smooth density (the CNF of benchmarks/results/quadrature.json) meets
the tolerance with it; :func:`select_rule` refines where that is not enough."""

QUADRATURE_REFINEMENTS = 3
"""Refinements of the first rule tried before giving up
(:meth:`~calamp.quadrature.PolarRule.refined`: first two nodes on the short intervals, about 3x
the points on the study's grids; then each adds a node per interval and doubles the uniform
grid, about 2-4x)."""


def _cell_z(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], n: int) -> dict:
    """Largest |a - b| over the cells of every binning: absolute, relative, and in units of
    sqrt(p (1 - p) / n)."""
    diff = {k: np.abs(a[k] - b[k]) for k in a}
    p = {k: np.clip(b[k], 1e-300, 1.0) for k in a}
    return {
        "max_abs_diff": float(max(d.max() for d in diff.values())),
        "max_rel_diff": float(max((diff[k] / p[k]).max() for k in a)),
        "max_z": float(
            max((diff[k] / np.sqrt(p[k] * np.maximum(1.0 - p[k], 1e-300) / n)).max() for k in a)
        ),
    }


def _normalised(rule: Any, log_density: Callable[[np.ndarray], np.ndarray]) -> tuple[dict, float]:
    """Cell probabilities of ``rule`` normalised by its mass, and the mass."""
    from calamp.quadrature import integrate

    p, m = integrate(rule, log_density, chunk_size=QUADRATURE_BLOCK)
    return {k: v / m for k, v in p.items()}, m


def select_rule(
    binnings: Mapping[str, Binning],
    log_density: Callable[[np.ndarray], np.ndarray],
    n_train: int,
) -> tuple[Any, dict[str, Any]]:
    """The quadrature rule for ``log_density``: :func:`~calamp.quadrature.polar_rule` at order
    :data:`QUADRATURE_START_ORDER` (one node on short intervals), refined (at most
    :data:`QUADRATURE_REFINEMENTS` times) until the largest change of a cell probability against
    the next refinement is below :data:`QUADRATURE_TOLERANCE` statistical errors of an
    ``n_train`` sample.

    Returns:
        ``(rule, check)``; ``check`` has ``max_abs_diff``, ``max_rel_diff``, ``max_z`` (the
        chosen rule against its refinement, normalised probabilities) and ``refinements``.
    """
    from calamp.quadrature import polar_rule

    rule = polar_rule(binnings, order=QUADRATURE_START_ORDER, min_nodes=1)
    current, _ = _normalised(rule, log_density)
    for refinements in range(QUADRATURE_REFINEMENTS + 1):
        finer = rule.refined()
        fine, _ = _normalised(finer, log_density)
        check = _cell_z(current, fine, n_train)
        if check["max_z"] <= QUADRATURE_TOLERANCE or refinements == QUADRATURE_REFINEMENTS:
            break
        rule, current = finer, fine
    return rule, {**check, "refinements": refinements}


def integrate_network(
    cfg: RunConfig, nd: NetworkDraws, binnings: Mapping[str, Binning], n_train: int
) -> dict[str, Any]:
    """Noise-free bin probabilities of every draw of a ring network, by quadrature of the
    model's density (:mod:`calamp.quadrature`) instead of counting generated events.

    The rule is chosen on draw 0 by :func:`select_rule` (a coarse rule, refined until no cell
    changes by more than :data:`QUADRATURE_TOLERANCE` statistical errors of a training-size
    sample: learned densities can have narrow ridges in their tails). Each draw's
    probabilities are normalised by the rule's total mass (1 up to the quadrature error and, for
    a fixed-step CNF, the solver's).

    Returns:
        ``{"probabilities": {key: (s, B)}, "mean_image": None, "wall_seconds": float,
        "quadrature": {points_per_draw, order, n_uniform, refinements, mass_min, mass_max,
        refined_max_abs_diff, refined_max_rel_diff, refined_max_z, tolerance_z, converged}}``
        (the ``refined_*`` figures compare draw 0 under the chosen rule and its refinement).
    """
    t0 = time.perf_counter()
    log_jac = float(nd.features.log_abs_det_jacobian)

    def log_density(xy: np.ndarray) -> np.ndarray:
        return np.asarray(nd.model.log_prob(nd.features.forward(xy)), np.float64) + log_jac

    nd.model.set_eval_weights(nd.weights[0])
    rule, check = select_rule(binnings, log_density, n_train)
    refinements = check.pop("refinements")
    s = len(nd.weights)
    probs = {key: np.zeros((s, b.n_bins)) for key, b in binnings.items()}
    mass = np.zeros(s)
    bar = tqdm(total=s, disable=not cfg.progress, desc=f"integrate net {nd.network}")
    for i in range(s):
        nd.model.set_eval_weights(nd.weights[i])
        p, mass[i] = _normalised(rule, log_density)
        for key in binnings:
            probs[key][i] = p[key]
        bar.update(1)
    bar.close()
    return {
        "probabilities": probs,
        "mean_image": None,
        "wall_seconds": time.perf_counter() - t0,
        "quadrature": {
            "points_per_draw": rule.n_points,
            "order": rule.settings["order"],
            "n_uniform": rule.settings["n_uniform"],
            "refinements": refinements,
            "mass_min": float(mass.min()),
            "mass_max": float(mass.max()),
            **{f"refined_{k}": v for k, v in check.items()},
            "tolerance_z": QUADRATURE_TOLERANCE,
            "converged": check["max_z"] <= QUADRATURE_TOLERANCE,
        },
    }


def write_samples(
    path: str | Path,
    networks: list[NetworkDraws],
    kind: str,
    n: int,
    *,
    cfg: RunConfig,
    overwrite: bool = False,
) -> Path:
    """Write ``n`` generated showers for every draw of every network to a ROOT file.

    The TTree ``showers`` has the dense ``energy`` layout of the input contract plus
    ``incident_energy`` and int32 ``network`` and ``draw`` branches, so an analysis can run its
    own selection on every posterior draw and see the spread, and ``calamp evaluate`` can
    redo the statistics. The events are those of :func:`draw_events`: with
    ``n = cfg.generated`` exactly the events behind the job's histograms.
    """
    from calamp import io

    if kind != "showers":
        msg = "write_samples needs a shower job (not the ring toy)"
        raise CalampError(msg)
    sets, net_idx, draw_idx = [], [], []
    for nd in networks:
        for i in range(len(nd.weights)):
            for events in draw_events(cfg, nd, kind, i, n):
                sets.append(events)
                net_idx.append(np.full(len(events), nd.network, np.int32))
                draw_idx.append(np.full(len(events), i, np.int32))
    allsets = ShowerSet.concatenate(sets)
    return Path(
        io.write_showers(
            path,
            allsets,
            overwrite=overwrite,
            extra_branches={"network": np.concatenate(net_idx), "draw": np.concatenate(draw_idx)},
        )
    )
