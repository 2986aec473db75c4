"""The evaluation: per-draw histograms of the shower observables, binned in quantiles of the
truth, and the same amplification, coverage and closure as the main job (:func:`evaluate`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import calamp
from calamp.evaluate.errors import EvaluateError
from calamp.evaluate.readers import _CHUNK, _check_images, _from_python, iterate_samples
from calamp.evaluate.truth import _reference, _truth_showers
from calamp.evaluate.writing import _write

__all__ = ["ObservableFn", "evaluate"]

ObservableFn = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------------------
# the evaluation
# ------------------------------------------------------------------------------------------------
def _observables(
    images: np.ndarray, inc: np.ndarray, names: tuple[str, ...], custom: Mapping[str, ObservableFn]
) -> dict[str, np.ndarray]:
    from calamp.observables import shower_observables

    builtin = [n for n in names if n not in custom]
    obs = {}
    if builtin:
        cells = any(n.startswith("cell_") for n in builtin)
        allobs = shower_observables(images, inc, cells=cells)
        obs = {n: allobs[n] for n in builtin}
    for name, fn in custom.items():
        values = np.asarray(fn(images), np.float64).ravel()
        if values.shape != (len(images),):
            msg = f"observable {name!r}: expected {len(images)} values, got {values.shape}"
            raise EvaluateError(msg)
        obs[name] = values
    return obs


def evaluate(
    draws: Any,
    truth: Any,
    *,
    n_train: int,
    observables: Iterable[str] | None = None,
    custom_observables: Mapping[str, ObservableFn] | None = None,
    n_quantiles: Iterable[int] = (5, 10, 20),
    out: str | Path | None = None,
    overwrite: bool = False,
    networks: int | None = None,
    n_draws: int | None = None,
    events: int | None = None,
    incident_energy: float | None = None,
    shape: tuple[int, int] | None = None,
    truth_events: int = 200_000,
    tree: str | None = None,
    seed: int = 1,
    plots: bool = True,
    n_boot: int = 0,
) -> dict[str, Any]:
    """Amplification, coverage and closure of a Bayesian generator from its per-draw samples.

    Args:
        draws: a samples file or folder (see :func:`iterate_samples`), an array
            (K, s, g, ny, nx), an iterable of ``(k, i, images[, incident])`` or a callable
            ``sample(k, i, n) -> images`` (then ``networks``, ``n_draws`` and ``events`` say how
            many). Images are cell energies in GeV.
        truth: a ROOT or HDF5 shower file, a :class:`~calamp.io.ShowerSet`, an array
            (N, ny, nx), ``"simulator"`` (``truth_events`` fresh calamp showers at the
            samples' incident energy), or a calamp results folder: its binnings, truth
            fractions and coverage seed are reused (the round trip of ``--write-samples``).
        n_train: training-set size n of each network (the amplification is n'/n).
        observables: built-in observables (default: those of the main job).
        custom_observables: name -> ``fn(images (n, ny, nx)) -> (n,)`` values.
        n_quantiles: numbers of quantile bins of the truth.
        out: results folder (None: nothing is written).
        overwrite: replace calamp's files in an existing ``out``.
        networks, n_draws, events: sizes for a callable ``draws``.
        incident_energy: GeV, for samples without incident energies (default: the truth's
            median incident energy).
        shape: (ny, nx) of flat voxel vectors (CaloChallenge HDF5).
        truth_events: size of a simulator truth.
        tree: tree of a ROOT samples file (default: the one with ``network``/``draw``).
        seed: seed of a simulator truth and of the coverage randomisation.
        plots: draw the figures into ``out/figures``.
        n_boot: bootstrap replicas of the coverage band (0: none).

    Returns:
        The results dictionary (as written to ``results.json``).
    """
    from calamp.analysis import analyse_binning, drop_constant, format_summary, summary_rows
    from calamp.config import SHOWER_OBSERVABLES
    from calamp.histograms import HistogramSet, quantile_binning

    t_start = time.perf_counter()
    custom = dict(custom_observables or {})
    names = tuple(observables) if observables is not None else SHOWER_OBSERVABLES
    names = tuple(dict.fromkeys((*names, *custom)))
    nq = tuple(int(q) for q in n_quantiles)
    if not int(n_train) > 0:
        msg = f"option --n-train: must be > 0, got {n_train}"
        raise EvaluateError(msg)
    if any(q < 2 for q in nq):
        msg = f"option --n-quantiles: needs integers >= 2, got {list(nq)}"
        raise EvaluateError(msg)
    stream = (
        iterate_samples(draws, tree=tree)
        if isinstance(draws, str | Path)
        else _from_python(draws, networks, n_draws, events, _CHUNK)
    )
    stream = iter(stream)
    try:
        head = next(stream)
    except StopIteration:
        msg = f"{draws}: no generated showers"
        raise EvaluateError(msg) from None
    label = str(draws) if isinstance(draws, str | Path) else type(draws).__name__
    head_inc = head[3]
    e_guess = (
        incident_energy
        if incident_energy is not None
        else float(np.median(head_inc))
        if head_inc is not None
        else None
    )
    constant: list[str] = []
    reference = Path(truth) if isinstance(truth, str | Path) else None
    if reference is not None and reference.is_dir():
        # the binnings, truth fractions and coverage seed of an earlier calamp run
        ref = _reference(reference)
        binnings, truth_fr, n_truth = ref["binnings"], ref["truth"], ref["n_truth"]
        grid, truth_mean = ref["grid"], ref["mean_image"]
        names = tuple(dict.fromkeys(key.rsplit("/q", 1)[0] for key in binnings))
        nq = tuple(sorted({int(key.rsplit("/q", 1)[1]) for key in binnings}))
        seed, truth_label = ref["seed"], f"the run in {reference}"
        if custom:
            msg = "custom observables cannot be evaluated against a reference run's binnings"
            raise EvaluateError(msg)
        if e_guess is None:
            msg = f"{label}: samples without incident energies need --incident-energy"
            raise EvaluateError(msg)
    else:
        truth_set, truth_label = _truth_showers(
            truth, e_guess if e_guess is not None else 0.0, truth_events, seed, shape
        )
        if e_guess is None:
            e_guess = float(np.median(truth_set.incident_energy))
        grid = tuple(truth_set.shape)
        truth_obs = _observables(
            np.asarray(truth_set.energy, np.float64),
            np.asarray(truth_set.incident_energy, np.float64),
            names,
            custom,
        )
        binnings, constant = drop_constant(
            {f"{n}/q{q}": quantile_binning(truth_obs[n], q, names=n) for n in names for q in nq}
        )
        if not binnings:
            msg = "every observable is constant on the truth: nothing to evaluate"
            raise EvaluateError(msg)
        truth_fr = {
            key: b.truth_fractions(truth_obs[key.rsplit("/q", 1)[0]]) for key, b in binnings.items()
        }
        n_truth = float(len(truth_set))
        truth_mean = np.asarray(truth_set.energy, np.float64).mean(axis=0)
    # fill: histograms per (k, i), grown as new networks/draws appear
    counts: dict[tuple[int, int], HistogramSet] = {}
    image_sum: dict[tuple[int, int], np.ndarray] = {}

    def fill(item: tuple) -> None:
        k, i, images, inc = item
        if k < 0 or i < 0:
            msg = f"{label}: network and draw indices must be >= 0, got ({k}, {i})"
            raise EvaluateError(msg)
        arr = _check_images(images, f"{label} (network {k}, draw {i})", shape)
        if arr.shape[1:] != grid:
            msg = f"{label}: generated showers of shape {arr.shape[1:]} but the truth has {grid}"
            raise EvaluateError(msg)
        e = np.full(len(arr), e_guess) if inc is None else np.asarray(inc, np.float64)
        obs = _observables(arr, e, names, custom)
        h = counts.setdefault((k, i), HistogramSet(binnings, 1, 1))
        h.fill(0, 0, {key: obs[key.rsplit("/q", 1)[0]] for key in binnings})
        image_sum[(k, i)] = image_sum.get((k, i), 0.0) + arr.sum(axis=0)

    fill(head)
    for item in stream:
        fill(item)
    nets = sorted({k for k, _ in counts})
    draws_of = {k: sorted(i for kk, i in counts if kk == k) for k in nets}
    n_s = {len(v) for v in draws_of.values()}
    if min(n_s) < 2:
        bad = next(k for k in nets if len(draws_of[k]) < 2)
        msg = f"{label}: network {bad} has {len(draws_of[bad])} draw; at least 2 are needed"
        raise EvaluateError(msg)
    if len(n_s) != 1:
        msg = f"{label}: networks have different numbers of draws ({sorted(n_s)})"
        raise EvaluateError(msg)
    s = n_s.pop()
    k_n = len(nets)
    filled = np.array(
        [[counts[(k, i)][next(iter(binnings))].n_filled[0, 0] for i in draws_of[k]] for k in nets],
        np.float64,
    )
    if filled.min() < 2:
        msg = f"{label}: a draw has fewer than 2 showers"
        raise EvaluateError(msg)
    warnings = list(constant)
    if filled.min() != filled.max():
        warnings.append(
            f"draws have different numbers of events ({int(filled.min())} to "
            f"{int(filled.max())}); each draw's noise term uses its own count"
        )
    results: dict[str, Any] = {
        "calamp_version": calamp.__version__,
        "versions": _versions(),
        "config": {
            "model": "external",
            "method": "external",
            "observables": list(names),
            "n_quantiles": list(nq),
            "seed": int(seed),
            "samples": label,
            "truth": truth_label,
        },
        "seeds": {"master": int(seed), "derivation": "coverage randomisation seed = seed"},
        "data": {
            "kind": "showers",
            "origin": "external: per-draw samples of a generator built outside calamp",
            "source": label,
            "training_sets": f"trained elsewhere; n = {int(n_train)} per network as stated",
            "truth": f"{truth_label} ({int(n_truth)} showers; finite, enters coverage/closure)",
            "truth_is_exact": False,
            "n_train": int(n_train),
            "n_networks": k_n,
            "n_draws": s,
            "n_generated_per_draw": float(filled.mean()),
            "n_generated_min": int(filled.min()),
            "n_generated_max": int(filled.max()),
            "n_truth": n_truth,
            "network_ids": nets,
            "warnings": warnings,
        },
        "networks": [{"source": "external", "n_generated": filled[j].tolist()} for j in range(k_n)],
        "binnings": {},
    }
    arrays: dict[str, np.ndarray] = {"n_filled": filled}
    for key, b in binnings.items():
        c = np.stack([[counts[(k, i)][key].counts[0, 0] for i in draws_of[k]] for k in nets])
        fractions = c / filled[:, :, None]
        name, q = key.rsplit("/q", 1)
        results["binnings"][key] = analyse_binning(
            name=name,
            n_quantiles=int(q),
            shape=tuple(b.shape),
            edges=list(b.edges),
            fractions=fractions,
            truth=truth_fr[key],
            train_fractions=None,
            n_train=int(n_train),
            n_generated=filled,
            n_truth=n_truth,
            n_boot=n_boot,
            seed=int(seed),
        )
        arrays[f"fractions/{key}"] = fractions
        arrays[f"truth/{key}"] = truth_fr[key]
    arrays["mean_image"] = np.stack(
        [
            [image_sum[(k, i)] / filled[j, m] for m, i in enumerate(draws_of[k])]
            for j, k in enumerate(nets)
        ]
    )
    arrays["truth_mean_image"] = truth_mean
    noise = [r["amplification"]["noise_fraction"] for r in results["binnings"].values()]
    finite = np.asarray(noise, float)
    finite = finite[np.isfinite(finite)]
    worst = float(finite.max()) if finite.size else 0.0
    if worst > 0.5:
        warnings.append(
            f"g = {int(filled.mean())} events per draw: generation noise is up to "
            f"{min(100 * worst, 100):.0f}% of the spread over draws; the estimates stay "
            "unbiased but their errors grow as 1/(1 - noise): generate more events per draw"
        )
    results["summary"] = summary_rows(results)
    results["timings"] = {"total_seconds": time.perf_counter() - t_start}
    if out is not None:
        _write(
            results,
            arrays,
            Path(out),
            overwrite=overwrite,
            plots=plots,
            protect=tuple(
                p for p in (draws, truth) if isinstance(p, str | Path) and str(p) != "simulator"
            ),
        )
    print(format_summary(results), file=sys.stderr)
    return results


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("numpy", "scipy", "uproot", "awkward", "hist", "boost-histogram", "h5py"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out
