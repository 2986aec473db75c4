"""The whole job: sources -> networks (locally or on dask) -> statistics -> outputs -> report.

``run_job(config, input_path, out)`` is what ``python -m calamp.run`` calls; ``reanalyse``
recomputes the statistics of a finished job from its stored histograms. Nothing imports this
module but the command line and the :mod:`calamp.pipeline` facade.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from calamp import __version__
from calamp.analysis import format_summary, summary_rows
from calamp.config import RunConfig, model_size
from calamp.generation import batch_edges, write_samples
from calamp.histograms import Binning
from calamp.io import CalampError, ShowerSet
from calamp.network import is_finished, load_network, network_task
from calamp.outputs import root_records
from calamp.posterior import batched_training, oracle_network
from calamp.seeds import PURPOSES, derive_seed
from calamp.sources import Source, event_observables, make_binnings, prepare_source, split_key

__all__ = [
    "analyse",
    "chain_diagnostics",
    "estimate_seconds",
    "reanalyse",
    "run_job",
]


def analyse(
    cfg: RunConfig,
    key: str,
    binning: Binning,
    fractions: np.ndarray,
    truth: np.ndarray,
    train_fractions: np.ndarray,
    n_train: int,
    *,
    n_filled: np.ndarray | None = None,
    n_truth: float | None = None,
    batches: np.ndarray | None = None,
    batch_sizes: np.ndarray | None = None,
) -> dict[str, Any]:
    """All statistics of one observable binning (:func:`calamp.analysis.analyse_binning`).

    Args:
        fractions: (K, s, B) per-draw bin fractions.
        truth: (B,) truth bin probabilities.
        train_fractions: (K, B) bin fractions of the training sets.
        n_train: training-set size n.
        n_filled: (K, s) events per draw (default: ``cfg.generated`` each; ignored, no
            generation noise, when ``cfg.bin_probabilities == "quadrature"``).
        n_truth: size of the truth sample behind ``truth`` (None: exact).
        batches, batch_sizes: (K, s, m, B) fractions of the m event batches of every draw and
            (m,) their nominal sizes, with common generation noise (else None).
    """
    from calamp.analysis import analyse_binning

    name, nq = split_key(key)
    k, s, _ = np.shape(fractions)
    if cfg.bin_probabilities == "quadrature":  # exact bin probabilities: g -> infinity
        g = None
    else:
        g = np.full((k, s), float(cfg.generated)) if n_filled is None else np.asarray(n_filled)
    res = analyse_binning(
        name=name,
        n_quantiles=nq,
        shape=tuple(binning.shape),
        edges=list(binning.edges),
        fractions=fractions,
        truth=truth,
        train_fractions=train_fractions,
        n_train=n_train,
        n_generated=g,
        n_truth=n_truth,
        batches=batches,
        batch_sizes=batch_sizes,
        n_boot=cfg.bootstrap,
        seed=derive_seed(cfg.seed, "coverage"),
    )
    if cfg.method in _CHAIN_METHODS and s // cfg.chains >= 4:
        res["chain"] = chain_diagnostics(np.asarray(fractions), chains=cfg.chains)
    return res


_CHAIN_METHODS = ("adammcmc", "sgld", "sghmc")


def chain_diagnostics(fractions: np.ndarray, *, chains: int = 1) -> dict[str, Any]:
    """ESS and split-R̂ of the per-bin histogram values along each network's chain(s).

    Args:
        fractions: (K, s, B) bin fractions, draws in chain order (``chains`` chains of s/C
            draws one after the other).
        chains: C chains per network (R̂ then compares them).

    Returns:
        ``{"ess_min": [K], "ess_median": [K], "rhat_max": [K], "warning": str | None}``
        (minimum/median over bins; the warning names the worst network).
    """
    from calamp.bayes.diagnostics import chain_summary, warning_for

    k, s, b = fractions.shape
    if chains > 1:  # (K, C, s/C, B) -> per network (s/C, C, B)
        per_chain = fractions.reshape(k, chains, s // chains, b).transpose(0, 2, 1, 3)
        rows = [chain_summary(per_chain[i], chains=chains) for i in range(k)]
    else:
        rows = [chain_summary(fractions[i]) for i in range(k)]
    warnings = [warning_for(r, s) for r in rows]
    worst = next((f"network {i}: {w}" for i, w in enumerate(warnings) if w), None)
    return {
        "ess_min": [r["ess_min"] for r in rows],
        "ess_median": [r["ess_median"] for r in rows],
        "rhat_max": [r["rhat_max"] for r in rows],
        "warning": worst,
    }


# ------------------------------------------------------------------------------------------------
# the whole job
# ------------------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    import awkward
    import boost_histogram
    import hist
    import mplhep
    import scipy
    import uproot

    from calamp._tf import tf, tf_keras, tfp

    return {
        "calamp": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "tensorflow": tf.__version__,
        "tensorflow_probability": tfp.__version__,
        "tf_keras": tf_keras.__version__,
        "uproot": uproot.__version__,
        "awkward": awkward.__version__,
        "boost_histogram": boost_histogram.__version__,
        "hist": hist.__version__,
        "mplhep": mplhep.__version__,
    }


def estimate_seconds(cfg: RunConfig, n_train: int, dim: int, workers: int = 1) -> float:
    """Rough wall time on this project's 2-core reference CPU (order of magnitude; printed at
    start), with the K networks spread over ``workers`` processes (the task graph of
    :func:`_run_networks`: trainings first, generation blocks filling the idle workers).

    Per-step and per-event costs measured there (benchmarks/RESULTS.md, docs/main_job.json): a
    training step scales with batch size, event dimension and network size (VI about twice a
    deterministic step), a generated event with the event dimension and network size;
    AdamMCMC steps cost about three training steps (coupling flow: its C chains batched,
    about 0.85 of a training step per chain-step; CNF: an ODE solve of the likelihood, 0.12 s
    per step at batch 1,000 with RK4 8 steps).
    """
    scale = max(1.0, dim / 10)
    layers, hidden = model_size(cfg, dim)
    size = (layers / 4) * (hidden / 64) ** 0.5
    step = {"flow": 2.5e-5, "maf": 2.5e-5, "cnf": 2e-6, "gan": 1e-5}[cfg.model]
    if cfg.model == "flow" and dim > 3:  # XLA-compiled step (about 30 s to compile)
        step = 1e-5
    step = step * cfg.batch_size * scale * size * (2.2 if cfg.method == "vi" else 1.0) + 2e-3
    gen = {"flow": 1e-5, "maf": 1e-4, "cnf": 1e-5, "gan": 2e-6}[cfg.model] * scale * size
    if cfg.method == "oracle":
        step, gen = 0.0, 1e-6
    steps = cfg.train_steps * (cfg.draws if cfg.method == "ensemble" else 1)
    if cfg.networks > 1 and batched_training(cfg):  # BatchedCNF, K = 5: 236 -> 687 network-
        steps *= 0.34  # steps/s (deterministic, benchmarks/RESULTS.md section 1); training only
    sampling = 0.0
    chain_steps = cfg.chains * cfg.effective_mcmc_steps if cfg.method in _CHAIN_METHODS else 0
    if cfg.method == "adammcmc" and cfg.model == "flow":  # C chains batched in one step
        # measured 5.3 ms per chain-step at batch 256 on the ring flow
        # (benchmarks/bench_batched_chains.py): ~0.85 of the estimated training step
        sampling = cfg.effective_mcmc_steps * (cfg.chains * 0.85 * (step - 2e-3) + 2e-3)
    elif cfg.method == "adammcmc" and cfg.model == "cnf":
        # the CNF's log-likelihood is an ODE solve with its trace, not a flow-matching step:
        # 0.118 s per AdamMCMC + MH step at batch 1,000 with RK4 8 steps (benchmarks/RESULTS.md
        # section 2), 78 s with dopri (issue #16's table)
        per_step = 0.118 * cfg.ode_steps / 8 if cfg.ode_solver == "rk4" else 78.0
        sampling = chain_steps * (per_step * cfg.batch_size / 1_000 + 2e-3)
    else:
        steps += chain_steps * (3 if cfg.method == "adammcmc" else 1)
    per_draw = cfg.generated * (gen + 2e-6 * scale)
    if cfg.bin_probabilities == "quadrature":  # density at every node (benchmarks/RESULTS.md)
        # first rule: order 2 on the 64-interval grid, one node between near edges
        per_axis = 2 * 64 + sum(n + 1 for n in cfg.n_quantiles) / 2
        # benchmarks/results/quadrature.json: the trained ring flow needed 3 refinements,
        # 26x the first rule's 121,635 points, at 3.6 us per point; the CNF (RK4, 8 steps)
        # none, at 12 us per point (maf and dopri: unmeasured guesses)
        per_point = {"flow": 3.6e-6 * 26, "maf": 1e-5 * 26}.get(
            cfg.model, 1.2e-5 * cfg.ode_steps / 8 if cfg.ode_solver == "rk4" else 1e-4
        )
        per_draw = per_axis**2 * per_point
    train, gen = steps * step + sampling, cfg.draws * per_draw
    workers = max(1, int(workers))
    if workers == 1:
        return cfg.networks * (train + gen) + 20.0
    # on workers (_run_networks): the training tasks go first, a network's generation is split
    # into one block per worker and runs as soon as it is trained, so the cores idle only
    # while the last training rounds do not fill them
    rounds = -(-cfg.networks // workers)  # training tasks per worker, rounded up
    blocks = 1 if cfg.bin_probabilities == "quadrature" else min(workers, cfg.draws)
    busy = max(cfg.networks * (train + gen) / workers, rounds * train + gen / blocks)
    return busy + 30.0


def local_workers(cfg: RunConfig, estimate: float) -> int:
    """Local worker processes for the K networks: ``cfg.workers``, or for 0 one per usable CPU
    core (at most K) when the job is estimated at over two minutes in one process."""
    if cfg.scheduler is not None:
        return 1
    if cfg.workers > 0:
        return min(cfg.workers, cfg.networks)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(cores, cfg.networks) if estimate > 120 else 1


def run_job(
    cfg: RunConfig,
    input_path: str | Path | None = None,
    out: str | Path = "calamp-results",
    *,
    overwrite: bool = False,
    resume: bool = False,
    showers: ShowerSet | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """Run the whole job and write ``results.json``, ``results.root``, ``results.npz`` and
    figures to ``out``. Returns the results dictionary (as written to JSON).

    Args:
        cfg: the configuration.
        input_path: shower ROOT file (not needed for ``cfg.toy``).
        out: results folder (created; never replaced without ``overwrite``).
        resume: continue an interrupted run in ``out`` (same options).
        showers: a ShowerSet to use instead of reading ``input_path`` (Python API).
        client: a ``dask.distributed.Client`` (or use ``cfg.scheduler``) to run networks on
            workers; ``None`` runs everything in this process.
    """
    from calamp.outputs import write_json

    t_start = time.perf_counter()
    out = Path(out)
    own_client = None
    if cfg.scheduler is not None and client is None:  # fail fast (one line) on a bad address
        from calamp.distributed import connect

        client = own_client = connect(cfg.scheduler)
    source = prepare_source(cfg, input_path, showers)
    dim = source.event_dim
    est = estimate_seconds(cfg, source.n_train, dim)
    n_workers = local_workers(cfg, est) if client is None else 1
    est = estimate_seconds(cfg, source.n_train, dim, n_workers)
    from calamp.folder import ResultsFolder, input_fingerprint

    options = {k: getattr(cfg, k) for k in ("tree", "branch", "incident_branch", "toy")}
    folder = ResultsFolder(
        out,
        config=cfg.to_dict(),
        fingerprint=input_fingerprint(input_path, options),
        overwrite=overwrite,
        resume=resume,
        protect=() if input_path is None else (input_path,),
    )
    folder.open()
    try:
        per_draw = (
            "exact bin probabilities (quadrature)"
            if cfg.bin_probabilities == "quadrature"
            else f"{cfg.generated} events"
        )
        print(
            f"calamp: {cfg.networks} networks x {cfg.draws} draws x {per_draw}, "
            f"model {cfg.model}, method {cfg.method}; estimated time ~{est / 60:.0f} min "
            f"({est:.0f} s) on a 2-core CPU, "
            + (f"{n_workers} worker processes" if n_workers > 1 else "in this process"),
            file=sys.stderr,
        )
        timings: dict[str, float] = {}

        t0 = time.perf_counter()
        names = tuple(cfg.observables)
        truth_obs = event_observables(source.kind, source.truth, names)
        from calamp.analysis import drop_constant

        binnings, constant = drop_constant(make_binnings(cfg, source.kind, truth_obs))
        if not binnings:
            msg = "every observable is constant on the truth: nothing to analyse"
            raise CalampError(msg)
        source.notes.setdefault("warnings", []).extend(constant)
        truth = {
            key: b.truth_fractions(truth_obs[split_key(key)[0]]) for key, b in binnings.items()
        }
        train_obs = [event_observables(source.kind, t, names) for t in source.train_sets]
        train_fr = {
            key: np.stack([b.fractions(o[split_key(key)[0]]) for o in train_obs])
            for key, b in binnings.items()
        }
        timings["binning_seconds"] = time.perf_counter() - t0

        executor, started = _executor(client, n_workers)
        own_client = own_client or started
        per_net = _run_networks(executor, cfg, source, binnings, out, resume)

        t0 = time.perf_counter()
        quadrature = cfg.bin_probabilities == "quadrature"
        results: dict[str, Any] = {
            "calamp_version": __version__,
            "versions": _versions(),
            "config": cfg.to_dict(),
            "execution": {"worker_processes": n_workers, "scheduler": cfg.scheduler},
            "seeds": {
                "master": cfg.seed,
                "coverage": derive_seed(cfg.seed, "coverage"),
                "derivation": "numpy SeedSequence([seed, purpose, "
                "network, draw]); purposes: " + ", ".join(PURPOSES),
            },
            "data": {
                **source.notes,
                "kind": source.kind,
                "n_train": source.n_train,
                "n_networks": cfg.networks,
                "n_draws": cfg.draws,
                "n_generated_per_draw": None if quadrature else cfg.generated,
                "bin_probabilities": cfg.bin_probabilities,
                "generation_noise": cfg.generation_noise,
                "n_truth": _truth_size(source),
            },
            "networks": [pn["info"] for pn in per_net],
            "binnings": {},
        }
        arrays: dict[str, np.ndarray] = {}
        for key, b in binnings.items():
            if quadrature:
                n_filled = None
                fractions = np.stack([pn["probabilities"][key] for pn in per_net])
            else:
                counts = np.stack([pn["counts"][key] for pn in per_net]).astype(np.float64)
                n_filled = np.stack([pn["n_filled"] for pn in per_net]).astype(np.float64)
                fractions = counts / n_filled[:, :, None]
                arrays["n_filled"] = n_filled
            batches = sizes = None
            if cfg.generation_noise == "common":
                bc = np.stack([pn["batch_counts"][key] for pn in per_net]).astype(np.float64)
                bf = np.stack([pn["batch_filled"] for pn in per_net]).astype(np.float64)
                batches = bc / bf[..., None]
                sizes = np.diff(batch_edges(cfg)).astype(np.float64)
                arrays[f"batches/{key}"] = batches
            res = analyse(
                cfg,
                key,
                b,
                fractions,
                truth[key],
                train_fr[key],
                source.n_train,
                n_filled=n_filled,
                n_truth=_truth_size(source),
                batches=batches,
                batch_sizes=sizes,
            )
            results["binnings"][key] = res
            arrays[f"fractions/{key}"] = fractions
            arrays[f"truth/{key}"] = truth[key]
            arrays[f"train/{key}"] = train_fr[key]
        if per_net[0]["mean_image"] is not None:  # showers: the mean image per draw
            arrays["mean_image"] = np.stack([pn["mean_image"] for pn in per_net])
            arrays["truth_mean_image"] = source.truth.energy.mean(axis=0)
        timings["statistics_seconds"] = time.perf_counter() - t0
        results["summary"] = summary_rows(results)

        from calamp.outputs import write_root

        np.savez_compressed(out / "results.npz", **arrays)
        write_root(out / "results.root", root_records(results, arrays))
        results["timings"] = timings
        write_json(out / "results.json", results)  # the numbers are safe before samples/plots
        if cfg.write_samples > 0 and source.kind == "showers":
            t0 = time.perf_counter()
            nets = [  # the oracle is rebuilt (it is its training data, nothing is stored)
                oracle_network(cfg, k, source)
                if cfg.method == "oracle"
                else load_network(out / "draws", k)
                for k in range(cfg.networks)
            ]
            write_samples(
                out / "samples.root", nets, source.kind, cfg.write_samples, cfg=cfg, overwrite=True
            )
            timings["write_samples_seconds"] = time.perf_counter() - t0
        if cfg.plots:
            t0 = time.perf_counter()
            from calamp.report import make_figures

            results["figures"] = [
                str(p.relative_to(out)) for p in make_figures(results, arrays, out / "figures")
            ]
            timings["plot_seconds"] = time.perf_counter() - t0
        timings["total_seconds"] = time.perf_counter() - t_start
        results["timings"] = timings
        write_json(out / "results.json", results)
        print(format_summary(results), file=sys.stderr)
        return results
    finally:
        folder.close()
        if own_client is not None:
            own_client.close()


def _run_networks(executor: Any, cfg: RunConfig, source: Source,
                  binnings: Mapping[str, Any], out: Path, resume: bool) -> list[dict[str, Any]]:
    """Every network's result (:func:`~calamp.network.run_network`'s form), in network order.

    In this process: :func:`~calamp.network.run_group` per group. On workers: a task graph
    (:meth:`~calamp.executors.DaskExecutor.map_then`) of one training task per group and,
    depending on it, its generation tasks: one per network, or for the groups of a last
    training round that leaves workers idle one per block of draws (:func:`~calamp.network.
    draw_blocks`, as many blocks as worker threads); so generation of a trained network runs
    while the others train and the last network's generation is spread over the idle workers;
    the client joins a network's blocks and stores them as soon as they are in. The numbers
    are the same either way (per-draw seeds).
    """
    from calamp.generation import concatenate_fills
    from calamp.network import draw_blocks, fill_task, load_finished, store_filled, train_task
    from calamp.posterior import network_groups

    shared = {
        # bars of many workers would interleave in their logs; the client shows one
        "cfg": cfg if executor.in_process else dataclasses.replace(cfg, progress=False),
        "source": source,
        "binnings": dict(binnings),
        "out": str(out.resolve()),
        "resume": resume,
    }
    groups = network_groups(cfg)
    if executor.in_process:
        per_group = executor.map(network_task, groups, shared=shared, desc="networks",
                                 progress=cfg.progress)
        return [pn for group in per_group for pn in group]
    done = {k: load_finished(out, k, binnings) for g in groups for k in g
            if resume and is_finished(out, k)}
    todo = [tuple(k for k in g if k not in done) for g in groups]
    todo = [g for g in todo if g]
    # a network's generation is split only where a worker would otherwise idle: in a last
    # round of trainings that does not fill the workers (each block compiles the sampler
    # again in its process, ~11 s for the default shower flow)
    slots = executor.slots()
    tail = len(todo) % slots
    split_from = len(todo) - tail if tail and cfg.bin_probabilities != "quadrature" else len(todo)
    blocks = {g: draw_blocks(cfg.draws, slots if j >= split_from else 1)
              for j, g in enumerate(todo)}
    t_start = time.perf_counter()

    def split(group: tuple[int, ...]) -> list[tuple[int, int, int]]:
        return [(k, b.start, b.stop) for k in group for b in blocks[group]]

    def finish(j: int, infos: dict[int, dict[str, Any]], parts: list[dict[str, Any]]) -> None:
        n = len(blocks[todo[j]])
        for m, k in enumerate(todo[j]):
            filled = concatenate_fills(parts[m * n:(m + 1) * n])
            done[k] = store_filled(cfg, k, out, infos[k], filled)
            print(f"calamp: network {k + 1}/{cfg.networks} done "
                  f"({time.perf_counter() - t_start:.0f} s into the job's networks)",
                  file=sys.stderr)

    executor.map_then(train_task, todo, fill_task, split, shared=shared,
                      desc="generation tasks", progress=cfg.progress, on_item=finish)
    return [done[k] for k in range(cfg.networks)]


def _executor(client: Any, n_workers: int) -> tuple[Any, Any]:
    """Where the networks run: the given client's cluster, a local cluster of ``n_workers``
    one-thread processes, or this process. Returns (executor, client this call started)."""
    from calamp.executors import DaskExecutor, LocalExecutor

    if client is not None:
        return DaskExecutor(client), None
    if n_workers > 1:
        from calamp.distributed import local_client

        started = local_client(n_workers)
        return DaskExecutor(started), started
    return LocalExecutor(), None


def _truth_size(source: Source) -> float:
    """Events in the truth sample (its quantiles define the bins; it enters as finite)."""
    return float(len(source.truth))


def reanalyse(out: str | Path, *, plots: bool | None = None) -> dict[str, Any]:
    """Recompute every statistic of a finished job from its stored histograms.

    Reads ``results.json`` (configuration, binnings) and ``results.npz`` (per-draw fractions,
    truth and training fractions), reruns :func:`analyse` with the current code, and rewrites
    ``results.json``, ``results.root`` and (unless ``plots=False``) the figures. No network is
    retrained and no event regenerated.
    """
    from calamp.config import make_config
    from calamp.histograms import QuantileBinning
    from calamp.outputs import write_json, write_root

    out = Path(out)
    results = json.loads((out / "results.json").read_text())
    known = {f.name for f in dataclasses.fields(RunConfig)}
    cfg = make_config({k: v for k, v in results["config"].items() if k in known})
    with np.load(out / "results.npz") as data:
        arrays = {k: data[k] for k in data.files}
    n_train = results["data"]["n_train"]
    for key, b in list(results["binnings"].items()):
        binning = QuantileBinning(
            tuple(np.asarray(e, float) for e in b["edges"]),
            tuple(f"x{a}" for a in range(len(b["edges"]))),
        )
        results["binnings"][key] = analyse(
            cfg,
            key,
            binning,
            arrays[f"fractions/{key}"],
            arrays[f"truth/{key}"],
            arrays[f"train/{key}"],
            n_train,
            n_filled=arrays.get("n_filled"),
            n_truth=results["data"].get("n_truth"),
            batches=arrays.get(f"batches/{key}"),
            batch_sizes=(
                np.diff(batch_edges(cfg)).astype(np.float64)
                if cfg.generation_noise == "common"
                else None
            ),
        )
    results["summary"] = summary_rows(results)
    write_root(out / "results.root", root_records(results, arrays))
    if cfg.plots if plots is None else plots:
        from calamp.report import make_figures

        results["figures"] = [
            str(p.relative_to(out)) for p in make_figures(results, arrays, out / "figures")
        ]
    write_json(out / "results.json", results)
    return results
