"""Evaluate any Bayesian generator from its per-draw samples: ``calamp evaluate``.

A generator built elsewhere (PyTorch, JAX, Keras; VI, ensembles, SG-MCMC) enters at the
boundary of DESIGN.md: for every network k and posterior draw i a sample of generated showers.
From them calamp fills per-draw histograms of the shower observables, binned in quantiles of
the truth, and computes the same amplification, coverage and closure as the main job, writing
the same outputs (``results.json`` with the schema of :mod:`calamp.schema`, ``results.root``,
``results.npz``, figures).

Inputs for the draws (streamed chunk by chunk into the histograms, never held whole):

* a ROOT file with ``energy`` (N, ny, nx), ``incident_energy``, ``network`` and ``draw``
  branches — the layout ``calamp.run --write-samples`` writes;
* CaloChallenge-style HDF5 (``showers`` (N, voxels or ny, nx), ``incident_energies`` (N, 1)),
  either one file with ``network``/``draw`` datasets or a folder ``network_K/draw_I.h5``;
* in Python: an array (K, s, g, ny, nx), an iterable of ``(k, i, images)`` or
  ``(k, i, images, incident)``, or a callable ``sample(k, i, n) -> images`` (a torch or JAX
  model wrapped in a lambda), see :func:`evaluate`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from calamp import __version__
from calamp.cli import guarded
from calamp.io import CalampError, ShowerSet

__all__ = ["EvaluateError", "evaluate", "iterate_samples", "main"]

ObservableFn = Callable[[np.ndarray], np.ndarray]
_CHUNK = 50_000


class EvaluateError(CalampError):
    """Bad per-draw samples or options; the message names the file, dataset or option."""


# ------------------------------------------------------------------------------------------------
# readers: every one yields (k, i, images (n, ny, nx) GeV, incident (n,) GeV or None)
# ------------------------------------------------------------------------------------------------
def _check_images(images: Any, where: str, shape: tuple[int, int] | None) -> np.ndarray:
    arr = np.asarray(images, np.float64)
    if shape is not None and arr.ndim == 2:
        if arr.shape[1] != shape[0] * shape[1]:
            msg = f"{where}: {arr.shape[1]} voxels do not fit --shape {shape[0]},{shape[1]}"
            raise EvaluateError(msg)
        arr = arr.reshape(len(arr), *shape)
    elif arr.ndim == 2:
        side = int(round(np.sqrt(arr.shape[1])))
        if side * side != arr.shape[1]:
            msg = f"{where}: flat showers of {arr.shape[1]} voxels: give --shape NY,NX"
            raise EvaluateError(msg)
        arr = arr.reshape(len(arr), side, side)
    if arr.ndim != 3:
        msg = f"{where}: showers must have shape (N, ny, nx), got {arr.shape}"
        raise EvaluateError(msg)
    if not np.all(np.isfinite(arr)):
        msg = f"{where}: showers contain NaN or inf"
        raise EvaluateError(msg)
    if np.any(arr < 0):
        msg = f"{where}: showers contain negative cell energies"
        raise EvaluateError(msg)
    return arr


def _root_samples(path: Path, tree: str | None, chunk: int) -> Iterator[tuple]:
    import uproot

    from calamp import io

    try:
        f = uproot.open(path)
    except Exception as err:  # noqa: BLE001 - any failure to open is the user's file
        msg = f"{path}: not a readable ROOT file ({type(err).__name__})"
        raise EvaluateError(msg) from None
    names = [tree] if tree else sorted({k.split(";")[0] for k in f.keys()})
    trees = [n for n in names if n in f and hasattr(f[n], "keys")]
    found = [n for n in trees if {"network", "draw"} <= set(f[n].keys())]
    if not found:
        msg = (
            f"{path}: no tree with `network` and `draw` branches (trees: {', '.join(trees)}); "
            "per-draw samples need both, as `calamp.run --write-samples` writes them"
        )
        raise EvaluateError(msg)
    name = found[0]
    ids = uproot.iterate(f"{path}:{name}", ["network", "draw"], step_size=chunk, library="np")
    showers = io.iterate_showers(path, tree=name, step_size=chunk)
    for sh, idx in zip(showers, ids, strict=True):
        yield from _split_pairs(idx["network"], idx["draw"], sh.energy, sh.incident_energy)


def _split_pairs(net: np.ndarray, draw: np.ndarray, images: np.ndarray, inc: Any) -> Iterator:
    """One chunk of mixed (network, draw) rows -> one item per pair, in file order."""
    net, draw = np.asarray(net, np.int64).ravel(), np.asarray(draw, np.int64).ravel()
    inc = None if inc is None else np.asarray(inc, np.float64).ravel()
    pairs = np.stack([net, draw], axis=1)
    uniq = np.unique(pairs, axis=0)
    for k, i in uniq:
        sel = (net == k) & (draw == i)
        yield int(k), int(i), images[sel], None if inc is None else inc[sel]


def _h5_datasets(f: Any, where: str) -> tuple[Any, Any]:
    if "showers" not in f:
        msg = f"{where}: no `showers` dataset (CaloChallenge layout: showers, incident_energies)"
        raise EvaluateError(msg)
    return f["showers"], f["incident_energies"] if "incident_energies" in f else None


def _h5_file(path: Path, chunk: int, k: int | None, i: int | None) -> Iterator[tuple]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        msg = f"{path}: not a readable HDF5 file ({err})"
        raise EvaluateError(msg) from None
    with f:
        showers, inc = _h5_datasets(f, str(path))
        if k is None and not {"network", "draw"} <= set(f.keys()):
            msg = (
                f"{path}: no `network` and `draw` datasets; give a folder of "
                "network_K/draw_I.h5 files instead"
            )
            raise EvaluateError(msg)
        for a in range(0, len(showers), chunk):
            b = min(len(showers), a + chunk)
            images = showers[a:b]
            e = None if inc is None else inc[a:b]
            if k is None:
                yield from _split_pairs(f["network"][a:b], f["draw"][a:b], images, e)
            else:
                yield k, i, images, None if e is None else np.asarray(e).ravel()


def _h5_folder(root: Path, chunk: int) -> Iterator[tuple]:
    files = sorted(root.glob("network_*/draw_*.h5"))
    if not files:
        msg = f"{root}: no network_K/draw_I.h5 files"
        raise EvaluateError(msg)
    for path in files:
        try:
            k = int(path.parent.name.split("_", 1)[1])
            i = int(path.stem.split("_", 1)[1])
        except ValueError:
            msg = f"{path}: expected network_K/draw_I.h5 with integers K and I"
            raise EvaluateError(msg) from None
        yield from _h5_file(path, chunk, k, i)


def iterate_samples(
    source: str | Path, *, tree: str | None = None, chunk: int = _CHUNK
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray | None]]:
    """Stream per-draw samples from a ROOT file, an HDF5 file or a folder of HDF5 files.

    Yields:
        ``(k, i, images, incident)``: network, draw, (n, ny, nx) or flat (n, voxels) cell
        energies in GeV, (n,) incident energies in GeV (or None).
    """
    path = Path(source)
    if path.is_dir():
        return _h5_folder(path, chunk)
    if not path.exists():
        msg = f"{path}: no such file or folder"
        raise EvaluateError(msg)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return _h5_file(path, chunk, None, None)
    return _root_samples(path, tree, chunk)


def _from_python(
    draws: Any, networks: int | None, n_draws: int | None, events: int | None, chunk: int
) -> Iterator[tuple]:
    if callable(draws):
        if not (networks and n_draws and events):
            msg = "a callable `draws` needs `networks`, `n_draws` and `events`"
            raise EvaluateError(msg)
        for k in range(networks):
            for i in range(n_draws):
                left = events
                while left > 0:  # the callable is asked for chunks of at most `chunk`
                    n = min(chunk, left)
                    yield k, i, draws(k, i, n), None
                    left -= n
        return
    if isinstance(draws, np.ndarray):
        if draws.ndim != 5:
            msg = f"`draws` array must have shape (K, s, g, ny, nx), got {draws.shape}"
            raise EvaluateError(msg)
        for k in range(draws.shape[0]):
            for i in range(draws.shape[1]):
                for a in range(0, draws.shape[2], chunk):
                    yield k, i, draws[k, i, a : a + chunk], None
        return
    for item in draws:
        if len(item) == 3:
            yield (*item, None)
        else:
            yield tuple(item)


# ------------------------------------------------------------------------------------------------
# truth
# ------------------------------------------------------------------------------------------------
def _truth_showers(
    truth: Any, energy: float, n_sim: int, seed: int, shape: tuple[int, int] | None
) -> tuple[ShowerSet, str]:
    from calamp import io, simulate

    if isinstance(truth, ShowerSet):
        return truth, truth.source or "ShowerSet"
    if isinstance(truth, np.ndarray):
        return ShowerSet(
            _check_images(truth, "truth", shape).astype(np.float32),
            np.full(len(truth), energy, np.float32),
            source="array",
        ), "array"
    if str(truth) == "simulator":
        sim = simulate.photon_showers(n_sim, energy, seed=seed)
        return sim, f"calamp simulator ({n_sim} showers at {energy:g} GeV)"
    path = Path(truth)
    if path.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                showers, inc = _h5_datasets(f, str(path))
                images = _check_images(showers[:], str(path), shape)
                e = (
                    np.full(len(images), energy)
                    if inc is None
                    else np.asarray(inc[:], np.float64).ravel()
                )
        except OSError as err:
            msg = f"{path}: not a readable HDF5 file ({err})"
            raise EvaluateError(msg) from None
        return ShowerSet(images.astype(np.float32), e.astype(np.float32), source=str(path)), str(
            path
        )
    return io.read_showers(path), str(path)


def _reference(folder: Path) -> dict[str, Any]:
    """Binnings, truth fractions, truth size, image grid and coverage seed of a calamp run."""
    import json

    from calamp.histograms import QuantileBinning

    try:
        res = json.loads((folder / "results.json").read_text())
        data = np.load(folder / "results.npz")
    except (OSError, ValueError) as err:
        msg = f"--truth {folder}: not a finished calamp results folder ({err})"
        raise EvaluateError(msg) from None
    with data:
        truth = {key: data[f"truth/{key}"] for key in res["binnings"]}
        mean = data["truth_mean_image"] if "truth_mean_image" in data.files else None
    if res["data"].get("kind") != "showers" or mean is None:
        msg = f"--truth {folder}: a reference run must be a shower job"
        raise EvaluateError(msg)
    binnings = {
        key: QuantileBinning(tuple(np.asarray(e, float) for e in b["edges"]), (b["observable"],))
        for key, b in res["binnings"].items()
    }
    return {
        "binnings": binnings,
        "truth": truth,
        "n_truth": res["data"].get("n_truth"),
        "grid": tuple(mean.shape),
        "mean_image": mean,
        "seed": int(res["seeds"].get("coverage", res["seeds"]["master"])),
    }


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
        "calamp_version": __version__,
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


def _write(
    results: dict[str, Any],
    arrays: dict[str, np.ndarray],
    out: Path,
    *,
    overwrite: bool,
    plots: bool,
    protect: tuple,
) -> None:
    from calamp.folder import ResultsFolder, input_fingerprint
    from calamp.outputs import root_records, write_json, write_root

    first = protect[0] if protect and Path(protect[0]).is_file() else None
    with ResultsFolder(
        out,
        config=results["config"],
        fingerprint=input_fingerprint(first, {"evaluate": True}),
        overwrite=overwrite,
        protect=protect,
    ):
        np.savez_compressed(out / "results.npz", **arrays)
        write_root(out / "results.root", root_records(results, arrays))
        write_json(out / "results.json", results)
        if plots:
            from calamp.report import make_figures

            results["figures"] = [
                str(p.relative_to(out)) for p in make_figures(results, arrays, out / "figures")
            ]
            write_json(out / "results.json", results)


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """``calamp evaluate SAMPLES --truth TRUTH --n-train N [...]``."""
    p = argparse.ArgumentParser(
        prog="calamp evaluate",
        description="Amplification, calibration and closure of any Bayesian generator from its "
        "per-draw samples (ROOT with network/draw branches, or CaloChallenge HDF5).",
    )
    p.add_argument("samples", help="samples.root, samples.h5, or a folder network_K/draw_I.h5")
    p.add_argument(
        "--truth",
        required=True,
        help="truth showers (ROOT or HDF5 file), 'simulator', or a calamp results folder whose "
        "binnings and truth to reuse",
    )
    p.add_argument("--n-train", type=int, required=True, help="training showers per network")
    p.add_argument("--observables", default=None, help="comma-separated built-in observables")
    p.add_argument("--n-quantiles", default="5,10,20", help="comma-separated numbers of bins")
    p.add_argument("--out", default="calamp-evaluate", help="results folder")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation")
    p.add_argument("--shape", default=None, help="NY,NX of flat voxel vectors (HDF5)")
    p.add_argument(
        "--incident-energy",
        type=float,
        default=None,
        help="GeV, for samples without incident energies",
    )
    p.add_argument("--truth-events", type=int, default=200_000, help="simulator truth size")
    p.add_argument("--tree", default=None, help="tree of a ROOT samples file")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    return p


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        msg = f"option {option}: expected comma-separated integers, got {text!r}"
        raise EvaluateError(msg) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``calamp evaluate`` (exit 0 ok, 2 bad input or option)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    def run() -> None:
        from calamp.config import SHOWER_OBSERVABLES

        obs = None
        if args.observables:
            obs = tuple(o.strip() for o in args.observables.split(",") if o.strip())
            unknown = [o for o in obs if o not in SHOWER_OBSERVABLES and not o.startswith("cell_")]
            if unknown:
                msg = (
                    f"option --observables: unknown {', '.join(unknown)} (known: "
                    f"{', '.join(SHOWER_OBSERVABLES)}, cell_<iy>_<ix>)"
                )
                raise EvaluateError(msg)
        shape = None
        if args.shape:
            shape = _ints(args.shape, "--shape")
            if len(shape) != 2 or min(shape) < 3:
                msg = f"option --shape: expected NY,NX >= 3, got {args.shape!r}"
                raise EvaluateError(msg)
        evaluate(
            args.samples,
            args.truth,
            n_train=args.n_train,
            observables=obs,
            n_quantiles=_ints(args.n_quantiles, "--n-quantiles"),
            out=args.out,
            overwrite=args.overwrite,
            incident_energy=args.incident_energy,
            shape=shape,
            truth_events=args.truth_events,
            tree=args.tree,
            seed=args.seed,
            plots=not args.no_plots,
        )

    return guarded(run)


if __name__ == "__main__":
    raise SystemExit(main())
