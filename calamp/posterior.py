"""The Bayesian generator of one network: build, train, take posterior draws, generate.

:func:`train_network` builds the model through the registry, trains it and takes s posterior
draws (VI weight draws, SG-MCMC states, ensemble members, or the oracle's bootstrap);
:func:`draw_events` is the one generation code path (histograms, ``--write-samples`` and dask
tasks); :func:`run_network` is the independent unit of work a dask worker runs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from calamp.config import RunConfig, model_size
from calamp.histograms import Binning, HistogramSet
from calamp.io import CalampError, ShowerSet
from calamp.seeds import derive_seed
from calamp.sources import (
    RingFeatures,
    Source,
    decode_events,
    event_observables,
    incident_energies,
    make_features,
    model_context,
    split_key,
)

__all__ = [
    "NetworkDraws",
    "build_model",
    "draw_events",
    "fill_network",
    "generation_context",
    "load_network",
    "oracle_network",
    "run_network",
    "train_network",
    "write_samples",
]


def build_model(
    cfg: RunConfig, dim: int, context_dim: int, *, bayesian: str | None, n_train: int, seed: int
) -> Any:
    """The generator of ``cfg.model`` (VI layers when ``bayesian == "vi"``)."""
    from calamp.bayes.vi import VIConfig

    vi = (
        VIConfig.from_k(
            cfg.kl_factor,
            n_train,
            prior_scale=cfg.prior_scale,
            kl_convention=cfg.kl_convention,
            init_scale=cfg.vi_init_scale,
        )
        if bayesian == "vi"
        else None
    )
    common = dict(bayesian=bayesian, vi=vi, seed=seed)
    layers, hidden = model_size(cfg, dim)
    if cfg.model == "flow":
        from calamp.models.flows import CouplingFlow

        return CouplingFlow(
            dim, context_dim, n_couplings=layers, hidden=(hidden, hidden), **common
        )
    if cfg.model == "maf":
        from calamp.models.flows import MAFlow

        return MAFlow(
            dim, context_dim, n_layers=layers, hidden=(hidden, hidden), **common
        )
    if cfg.model == "cnf":
        from calamp.models.cnf import FlowMatchingCNF

        return FlowMatchingCNF(
            dim,
            context_dim,
            hidden=hidden,
            layers=layers,
            solver=cfg.ode_solver,
            n_steps=cfg.ode_steps,
            **common,
        )
    from calamp.models.gan import ShowerGAN

    return ShowerGAN(dim, context_dim, hidden=hidden, layers=layers, **common)


@dataclass
class NetworkDraws:
    """One trained network's posterior draws.

    Attributes:
        network: index k.
        model: the generator (its eval weights get replaced per draw).
        features: the fitted feature map (``forward``/``inverse``).
        weights: (s, P) float32 flat eval-weight vectors, one per draw.
        context: (n, context_dim) training context (resampled for generation) or None.
        info: training facts for results.json (steps, wall seconds, acceptance rate, ...).
        incident: (n,) training incident energies in GeV (showers; resampled for generation
            with the same indices as ``context``), None for the ring.
    """

    network: int
    model: Any
    features: Any
    weights: np.ndarray
    context: np.ndarray | None
    info: dict[str, Any]
    incident: np.ndarray | None = None


def _batch_fn(
    x: np.ndarray, c: np.ndarray | None, batch_size: int, seed: int
) -> Callable[[int], tuple]:
    """Minibatch of sampler step t as a pure function of (seed, t) (exact resume).

    The batch tuple is ``(x_b, step_seed)`` or ``(x_b, c_b, step_seed)``; the stateless step
    seed feeds energies that need randomness (the GAN's latent vectors), the same for the
    current and the proposed state of one step.
    """
    from calamp._tf import tf
    from calamp.models.base import EpochBatches

    batches = EpochBatches(seed, len(x), batch_size)

    def fn(step: int) -> tuple:
        idx = batches(step)
        sd = tf.constant(
            np.random.SeedSequence([seed, int(step)]).generate_state(2, np.uint32).view(np.int32)
        )
        xb = tf.constant(x[idx])
        return (xb, sd) if c is None else (xb, tf.constant(c[idx]), sd)

    return fn


def train_network(
    cfg: RunConfig, k: int, source: Source, *, workdir: Path | None = None
) -> NetworkDraws:
    """Train network k on its training set and take ``cfg.draws`` posterior draws.

    VI: one fit, then s frozen weight samples. AdamMCMC/SGLD/SGHMC: a deterministic pre-training
    fit, then a chain whose thinned states are the draws. Ensemble: s independently initialised
    fits on the same training set. Checkpoints go to ``workdir`` so an interrupted run resumes.
    """
    from calamp.models.base import TrainingError

    if cfg.method == "oracle":
        return oracle_network(cfg, k, source)
    train = source.train_sets[k]
    feats = make_features(cfg, source.kind, train)
    x = (
        feats.forward(train)
        if source.kind == "ring"
        else feats.forward(train.energy, train.incident_energy)
    )
    x = np.asarray(x, np.float32)
    c = model_context(source.kind, train)
    cdim = 0 if c is None else c.shape[1]
    n = len(x)
    batch = min(cfg.batch_size, n)
    bayes = "vi" if cfg.method == "vi" else None
    ckpt = None if workdir is None else Path(workdir) / f"net{k}"
    layers, hidden = model_size(cfg, x.shape[1])
    info: dict[str, Any] = {
        "n_train": n,
        "batch_size": batch,
        "architecture": {"model": cfg.model, "layers": layers, "hidden": hidden},
    }
    t0 = time.perf_counter()

    def fit(model, tag: str, seed: int) -> dict[str, Any]:
        try:
            hist = model.fit(
                x,
                c,
                steps=cfg.train_steps,
                batch_size=batch,
                learning_rate=cfg.learning_rate,
                lr_schedule=cfg.lr_schedule,
                seed=seed,
                checkpoint_dir=None if ckpt is None else ckpt / tag,
                checkpoint_every=max(100, cfg.train_steps // 10),
                progress=cfg.progress,
            )
        except TrainingError as err:
            msg = f"network {k}: training failed: {err}"
            raise CalampError(msg) from None
        loss = hist["loss"]
        tail = loss[-max(1, len(loss) // 20) :]
        return {
            "final_loss": float(np.mean(tail)),
            "wall_seconds": hist["wall_seconds"],
            "steps": cfg.train_steps,
            "resumed_from": hist["resumed_from"],
        }

    if cfg.method == "ensemble":
        model = None
        weights = []
        fits = []
        for i in range(cfg.draws):
            m = build_model(
                cfg,
                x.shape[1],
                cdim,
                bayesian=None,
                n_train=n,
                seed=derive_seed(cfg.seed, "init", k, i),
            )
            fits.append(fit(m, f"member{i}", derive_seed(cfg.seed, "fit", k, i)))
            weights.append(m.get_eval_weights())
            model = m
        info["fit"] = fits
        weights = np.stack(weights)
    else:
        model = build_model(
            cfg, x.shape[1], cdim, bayesian=bayes, n_train=n, seed=derive_seed(cfg.seed, "init", k)
        )
        info["fit"] = fit(model, "fit", derive_seed(cfg.seed, "fit", k))
        info["n_params"] = int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))
        if cfg.method == "vi":
            weights = []
            for i in range(cfg.draws):
                model.freeze_draw(derive_seed(cfg.seed, "draw", k, i))
                weights.append(model.get_eval_weights())
            weights = np.stack(weights)
        else:
            weights, chain_info = _run_sampler(cfg, k, model, x, c, batch, ckpt)
            info["chain"] = chain_info
    info["wall_seconds"] = time.perf_counter() - t0
    return NetworkDraws(
        k,
        model,
        feats,
        np.asarray(weights, np.float32),
        c,
        info,
        incident_energies(source.kind, train),
    )


def oracle_network(cfg: RunConfig, k: int, source: Source) -> NetworkDraws:
    """Network k of the oracle ensemble (bootstrap posterior of its own training set)."""
    from calamp.models.oracle import IdentityFeatures, OracleGenerator

    train = source.train_sets[k]
    if source.kind == "ring":
        feats: Any = IdentityFeatures()
        events = feats.forward(train)
    else:
        feats = IdentityFeatures(train.shape)
        events = feats.forward(train.energy)
    model = OracleGenerator(events, seed=derive_seed(cfg.seed, "init", k))
    info = {
        "n_train": len(events),
        "oracle": "draws are bootstrap resamples of the network's "
        "training set (the posterior of its empirical distribution)",
    }
    return NetworkDraws(
        k,
        model,
        feats,
        model.draw_weights(cfg.draws),
        None,
        info,
        incident_energies(source.kind, train),
    )


def _run_sampler(
    cfg: RunConfig,
    k: int,
    model: Any,
    x: np.ndarray,
    c: np.ndarray | None,
    batch: int,
    ckpt: Path | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Burn-in, thinning (measured unless given) and s kept states of one SG-MCMC chain.

    The target is the tempered posterior π(θ) ∝ exp(−λ U(θ)) with λ = ``inverse_temperature``
    and U(θ) = N · (mean per-event loss of the batch) + |θ|²/(2 prior_scale²): the data term is
    −log p for likelihood models (the generator's adversarial loss for the GAN), the second the
    Gaussian prior N(0, prior_scale²) on every weight. λ = 1 is the Bayesian posterior; λ > 1
    narrows it as 1/√λ.
    """
    from calamp._tf import tf
    from calamp.bayes.chain import draw_posterior
    from calamp.bayes.samplers import SGHMC, SGLD, AdamMCMC

    n = len(x)
    adversarial = getattr(model, "adversarial_energy", None)
    variables = list(model.trainable_variables)
    inv_prior_var = 1.0 / cfg.prior_scale**2

    def energy(*b):
        xb, cb, sd = (b[0], None, b[1]) if len(b) == 2 else b
        if adversarial is not None:
            data = adversarial(xb, cb, seed=sd) * n
        else:
            data = model.nll(xb, cb) * n
        prior = 0.5 * inv_prior_var * tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])
        return data + tf.cast(prior, data.dtype)

    seed = derive_seed(cfg.seed, "sampler", k)
    common = dict(inverse_temperature=cfg.inverse_temperature, seed=seed)
    if cfg.method == "adammcmc":
        # Adam's moments adapt during burn-in and are frozen afterwards, which keeps the
        # Metropolis-Hastings chain exact (the reference code never freezes them).
        sampler = AdamMCMC(
            variables,
            energy,
            lr=cfg.sampler_lr,
            sigma=cfg.sigma,
            adapt_steps=cfg.burn_in,
            **common,
        )
    elif cfg.method == "sgld":
        sampler = SGLD(variables, energy, lr=cfg.sampler_lr, **common)
    else:
        sampler = SGHMC(variables, energy, lr=cfg.sampler_lr, friction=cfg.friction, **common)
    t0 = time.perf_counter()
    post = draw_posterior(
        sampler,
        _batch_fn(x, c, batch, seed),
        draws=cfg.draws,
        burn_in=cfg.burn_in,
        thin=cfg.thin,
        max_thin=cfg.max_thin,
        total_steps=cfg.mcmc_steps,
        seed=seed,
        progress=cfg.progress,
        checkpoint_dir=None if ckpt is None else ckpt / "chain",
    )
    info = {**post.info, "wall_seconds": time.perf_counter() - t0}
    samples = post.samples
    if info["n_nonfinite"]:
        print(
            f"calamp: network {k}: {info['n_nonfinite']} sampler steps met NaN/inf and were "
            "rejected",
            file=sys.stderr,
        )
    if info["warning"]:
        print(f"calamp: network {k}: {info['warning']}", file=sys.stderr)
    return samples, info


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
    mode: the seeds are ``("generate", k, i)`` (per event block) and ``("context", k, i)``,
    so the first n events are the same for every n that is a multiple of the generation block
    and for n = ``cfg.generated``.
    """
    nd.model.set_eval_weights(nd.weights[i])
    seed = derive_seed(cfg.seed, "generate", nd.network, i)
    ctx, e_inc = generation_context(nd, n, derive_seed(cfg.seed, "context", nd.network, i))
    start = 0
    for chunk in nd.model.sample_chunks(n, ctx, seed=seed, chunk_size=cfg.chunk_size):
        echunk = None if e_inc is None else e_inc[start : start + len(chunk)]
        start += len(chunk)
        yield decode_events(kind, nd.features, chunk, echunk)


def fill_network(
    cfg: RunConfig, nd: NetworkDraws, kind: str, binnings: Mapping[str, Binning]
) -> dict[str, Any]:
    """Generate ``cfg.generated`` events for every draw of one network into its histograms.

    Returns:
        ``{"counts": {key: (s, B)}, "n_filled": (s,), "mean_image": (s, ny, nx) or None,
        "wall_seconds": float}``.
    """
    hset = HistogramSet(binnings, 1, len(nd.weights))
    names = tuple({split_key(k)[0] for k in binnings})
    mean_images = None
    t0 = time.perf_counter()
    bar = tqdm(total=len(nd.weights), disable=not cfg.progress, desc=f"generate net {nd.network}")
    for i in range(len(nd.weights)):
        for events in draw_events(cfg, nd, kind, i, cfg.generated):
            obs = event_observables(kind, events, None if kind == "ring" else names)
            hset.fill(0, i, {key: obs[split_key(key)[0]] for key in binnings})
            if kind == "showers":
                if mean_images is None:
                    mean_images = np.zeros((len(nd.weights), *events.shape))
                mean_images[i] += events.energy.sum(axis=0, dtype=np.float64)
        if mean_images is not None:
            mean_images[i] /= cfg.generated
        bar.update(1)
    bar.close()
    return {
        "counts": {key: h.counts[0] for key, h in hset.items()},
        "n_filled": next(iter(hset.values())).n_filled[0],
        "mean_image": mean_images,
        "wall_seconds": time.perf_counter() - t0,
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


def run_network(
    cfg: RunConfig,
    k: int,
    source: Source,
    binnings: Mapping[str, Binning],
    out: str | Path,
    *,
    resume: bool = False,
) -> dict[str, Any]:
    """Everything for network k: train, store its draws, generate into its histograms.

    An independent unit of work (what a dask worker runs): it reads only its inputs, writes its
    draws to ``out/draws`` (the hand-over to later generation) and its histogram counts to
    ``out/partial/net{k}.npz``; with ``resume`` a network whose counts exist is not redone.

    Returns:
        ``{"counts": {key: (s, B)}, "n_filled": (s,), "mean_image": (s, ny, nx) | None,
        "info": training and generation facts}``.
    """
    from calamp.bayes.store import DrawStore
    from calamp.outputs import write_json

    out = Path(out)
    t0 = time.perf_counter()
    store = DrawStore(out / "draws")
    part = out / "partial" / f"net{k}.npz"
    info_path = out / "partial" / f"net{k}.json"
    if resume and part.exists() and info_path.exists() and k in store.networks():
        with np.load(part) as data:
            return {
                "counts": {key: data[f"counts/{key}"] for key in binnings},
                "n_filled": data["n_filled"],
                "mean_image": data["mean_image"] if "mean_image" in data.files else None,
                "info": json.loads(info_path.read_text()),
            }
    nd = train_network(cfg, k, source, workdir=out / "checkpoints")
    if k not in store.networks():
        meta = {
            "method": cfg.method,
            "model": nd.model.config(),
            "features": nd.features.to_dict(),
            "seed": cfg.seed,
            "config": cfg.to_dict(),
            "info": nd.info,
            "context": None if nd.context is None else nd.context.tolist(),
            "incident": None if nd.incident is None else nd.incident.tolist(),
        }
        store.save(k, nd.weights, meta)
    filled = fill_network(cfg, nd, source.kind, binnings)
    info = {**nd.info, "generate_seconds": filled["wall_seconds"]}
    part.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"counts/{key}": v for key, v in filled["counts"].items()}
    arrays["n_filled"] = filled["n_filled"]
    if filled["mean_image"] is not None:
        arrays["mean_image"] = filled["mean_image"]
    tmp = part.with_name(part.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(part)
    write_json(info_path, info)
    print(
        f"calamp: network {k + 1}/{cfg.networks} done in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    return {
        "counts": filled["counts"],
        "n_filled": filled["n_filled"],
        "mean_image": filled["mean_image"],
        "info": info,
    }


def load_network(store_root: str | Path, k: int) -> NetworkDraws:
    """Rebuild network k (model, feature map, draws) from a draw store, without training."""
    from calamp.bayes.store import DrawStore
    from calamp.models import build_generator
    from calamp.preprocess import ShowerPreprocessor

    weights, meta = DrawStore(store_root).load(k)
    if meta["model"].get("kind") == "oracle":
        msg = "oracle networks have no stored model; re-run the job to regenerate them"
        raise CalampError(msg)
    model = build_generator(meta["model"])
    f = meta["features"]
    if f.get("kind") == "ring":
        feats: Any = RingFeatures(f["scale"])
    elif f.get("kind") == "identity":
        from calamp.models.oracle import IdentityFeatures

        feats = IdentityFeatures(f["shape"])
    else:
        feats = ShowerPreprocessor.from_dict(f)
    ctx = None if meta.get("context") is None else np.asarray(meta["context"], np.float32)
    inc = meta.get("incident")
    inc = None if inc is None else np.asarray(inc, np.float32)
    return NetworkDraws(k, model, feats, np.asarray(weights, np.float32), ctx, meta["info"], inc)
