"""The Bayesian generator of one network: build, train, take posterior draws.

:func:`build_model` builds the model of the configuration through the generator registry;
:func:`train_network` trains it and takes s posterior draws (VI weight draws, SG-MCMC states,
ensemble members) as a :class:`NetworkDraws`; :func:`oracle_network` gives the oracle's
(truth samples as draws). Generation from the draws is :mod:`calamp.generation`, the
per-network unit of work (train, store, generate) :mod:`calamp.network`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calamp.config import RunConfig, model_size
from calamp.io import CalampError
from calamp.seeds import derive_seed
from calamp.sources import (
    Source,
    encode_events,
    incident_energies,
    make_features,
    model_context,
)

__all__ = [
    "TRAINING_GROUPS",
    "NetworkDraws",
    "batched_training",
    "build_model",
    "network_groups",
    "oracle_network",
    "pretrain_group",
    "train_network",
]

TRAINING_GROUPS = 2
"""Groups the K networks of a batched-training job are split into (one per core of the 2-core
reference CPU: each worker process trains its group in one compiled graph). The split is a fixed
function of K, so the numbers never depend on ``--workers`` or a dask cluster."""


def batched_training(cfg: RunConfig) -> bool:
    """Whether the networks' (pre-)training runs batched, K networks in one graph
    (:class:`~calamp.models.batched.BatchedCNF`: the CNF with one fit per network, i.e. VI or
    the SG-MCMC pre-training; 2.9-3.4x the network-steps/s of a loop of K = 5 fits,
    benchmarks/RESULTS.md section 1)."""
    return cfg.model == "cnf" and cfg.method in ("vi", "adammcmc", "sgld", "sghmc")


def network_groups(cfg: RunConfig) -> list[tuple[int, ...]]:
    """The units of work of a job: groups of networks trained together (contiguous,
    :data:`TRAINING_GROUPS` of them) for :func:`batched_training`, else one network each."""
    ks = np.arange(cfg.networks)
    if not batched_training(cfg) or cfg.networks == 1:
        return [(int(k),) for k in ks]
    return [tuple(int(k) for k in g) for g in np.array_split(ks, min(TRAINING_GROUPS, len(ks)))]


def _training_data(cfg: RunConfig, k: int, source: Source) -> tuple[Any, Any, Any]:
    """(feature map, features (n, D), context (n, C) or None) of network k's training set."""
    train = source.train_sets[k]
    feats = make_features(cfg, source.kind, train)
    return feats, encode_events(source.kind, feats, train), model_context(source.kind, train)


def _fit_record(loss: np.ndarray, wall_seconds: float, steps: int, resumed_from: Any) -> dict:
    """A network's training record: mean loss of its last 5 % of steps, wall time, steps."""
    tail = loss[-max(1, len(loss) // 20) :]
    return {"final_loss": float(np.mean(tail)), "wall_seconds": wall_seconds, "steps": steps,
            "resumed_from": resumed_from}


def pretrain_group(
    cfg: RunConfig, ks: tuple[int, ...], source: Source
) -> dict[int, tuple[Any, dict[str, Any]]]:
    """Train the networks ``ks`` together in one compiled graph (:func:`batched_training`).

    Network k starts from the weights of ``build_model(..., seed=derive_seed(seed, "init", k))``
    and sees the minibatches and step seeds of its own ``fit(seed=derive_seed(seed, "fit", k))``,
    so it equals a separate training to float rounding. Training sets of unequal size cannot be
    stacked: then ``{}`` (the caller trains them one by one).

    Returns:
        ``{k: (trained model, fit record)}`` for :func:`train_network`'s ``pretrained``.
    """
    from calamp.models.batched import BatchedCNF
    from calamp.models.training import TrainingError

    data = [_training_data(cfg, k, source) for k in ks]
    if len({len(x) for _, x, _ in data}) != 1:
        return {}
    n = len(data[0][1])
    batch = min(cfg.batch_size, n)
    bayes = "vi" if cfg.method == "vi" else None
    models = [
        build_model(cfg, x.shape[1], 0 if c is None else c.shape[1], bayesian=bayes, n_train=n,
                    seed=derive_seed(cfg.seed, "init", k))
        for k, (_, x, c) in zip(ks, data, strict=True)
    ]
    from calamp.models.base import XLA_MIN_STEPS

    # XLA pays for its compilation only on longer fits (as for single networks)
    group = BatchedCNF.from_generators(models, jit_compile=cfg.train_steps >= XLA_MIN_STEPS)
    has_c = data[0][2] is not None
    try:
        hist = group.fit(
            np.stack([x for _, x, _ in data]),
            np.stack([c for _, _, c in data]) if has_c else None,
            steps=cfg.train_steps,
            batch_size=batch,
            learning_rate=cfg.learning_rate,
            lr_schedule=cfg.lr_schedule,
            seeds=[derive_seed(cfg.seed, "fit", k) for k in ks],
        )
    except TrainingError as err:
        msg = f"networks {list(ks)}: training failed: {err}"
        raise CalampError(msg) from None
    out = {}
    for j, (k, model) in enumerate(zip(ks, group.to_generators(), strict=True)):
        record = _fit_record(hist["loss"][:, j], hist["wall_seconds"], cfg.train_steps, None)
        out[k] = (model, {**record, "batched_with": [int(v) for v in ks]})
    return out


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
            scale_lr_factor=cfg.vi_scale_lr,
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
    from calamp.models.training import EpochBatches

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
    cfg: RunConfig,
    k: int,
    source: Source,
    *,
    workdir: Path | None = None,
    pretrained: tuple[Any, dict[str, Any]] | None = None,
) -> NetworkDraws:
    """Train network k on its training set and take ``cfg.draws`` posterior draws.

    VI: one fit, then s frozen weight samples. AdamMCMC/SGLD/SGHMC: a deterministic pre-training
    fit, then a chain whose thinned states are the draws. Ensemble: s independently initialised
    fits on the same training set. Checkpoints go to ``workdir`` so an interrupted run resumes.
    ``pretrained``: ``(model, fit record)`` of :func:`pretrain_group`, which replaces the fit.
    """
    from calamp.models.training import TrainingError

    if cfg.method == "oracle":
        return oracle_network(cfg, k, source)
    train = source.train_sets[k]
    feats, x, c = _training_data(cfg, k, source)
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
        return _fit_record(
            np.asarray(hist["loss"]), hist["wall_seconds"], cfg.train_steps, hist["resumed_from"]
        )

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
    elif pretrained is not None:
        model, info["fit"] = pretrained
    else:
        model = build_model(
            cfg, x.shape[1], cdim, bayesian=bayes, n_train=n, seed=derive_seed(cfg.seed, "init", k)
        )
        info["fit"] = fit(model, "fit", derive_seed(cfg.seed, "fit", k))
    if cfg.method != "ensemble":
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


def batched_chains(cfg: RunConfig, model: Any) -> bool:
    """Whether the network's chains run as one :class:`~calamp.bayes.batched.BatchedAdamMCMC`
    (AdamMCMC on a model with a functional batched log-density: the coupling flow)."""
    return cfg.method == "adammcmc" and callable(getattr(model, "batched_log_prob", None))


def _batched_sampler(
    cfg: RunConfig, model: Any, start: np.ndarray, seeds: list[int], n: int
) -> Any:
    """The C AdamMCMC chains of one network in one compiled step (energy of ``_run_sampler``)."""
    from calamp._tf import tf
    from calamp.bayes.batched import BatchedAdamMCMC

    inv_prior_var = 1.0 / cfg.prior_scale**2

    def energy(theta, xb, cb=None):
        lp = model.batched_log_prob(theta, xb, cb)  # (C, B)
        data = -tf.reduce_mean(lp, axis=1) * n
        u = data + 0.5 * inv_prior_var * tf.reduce_sum(tf.square(theta), axis=1)
        # per-event terms (U = Σ_i terms_i + prior): the MH test's minibatch noise χ²
        return u, -lp * (n / tf.cast(tf.shape(lp)[1], lp.dtype))

    return BatchedAdamMCMC(
        np.tile(start, (len(seeds), 1)),
        energy,
        seeds=seeds,
        lr=cfg.sampler_step,
        sigma=cfg.sigma,
        adapt_steps=cfg.burn_in,
        inverse_temperature=cfg.inverse_temperature,
        noise_penalty=cfg.mh_noise_penalty,
        population=n,
    )


STAT_EVENTS = (4, 64)
"""Function-space trace of batched chains: mean log-density of 4 groups of 64 fixed training
events (costs ~1/6 of a batch-256 sampler step)."""


def _log_density_stats(model: Any, sampler: Any, x: np.ndarray, c: np.ndarray | None) -> Any:
    """``fn() -> (C, 4)``: the mean log-density under each chain's current θ of the groups of
    :data:`STAT_EVENTS` first training events."""
    from calamp._tf import tf

    groups, size = STAT_EVENTS
    groups = min(groups, len(x))
    m = min(len(x), groups * size) // groups * groups
    chains = sampler.n_chains
    xs = tf.constant(np.broadcast_to(x[:m], (chains, *x[:m].shape)))
    cs = None if c is None else tf.constant(np.broadcast_to(c[:m], (chains, *c[:m].shape)))

    @tf.function
    def stats() -> Any:
        lp = model.batched_log_prob(sampler.theta, xs, cs)
        return tf.reduce_mean(tf.reshape(lp, [chains, groups, -1]), axis=2)

    return lambda: stats().numpy()


def _stacked_batch_fn(
    x: np.ndarray, c: np.ndarray | None, batch_size: int, seeds: list[int]
) -> Callable[[int], tuple]:
    """Minibatches of step t of C chains, ``(x (C, B, D)[, c (C, B, C')])``: chain i gets the
    events of ``_batch_fn(..., seeds[i])`` (a pure function of (seed, t), exact resume)."""
    from calamp._tf import tf
    from calamp.models.training import EpochBatches

    streams = [EpochBatches(s, len(x), batch_size) for s in seeds]

    def fn(step: int) -> tuple:
        idx = np.stack([b(step) for b in streams])
        return (tf.constant(x[idx]),) if c is None else (tf.constant(x[idx]), tf.constant(c[idx]))

    return fn


def _run_sampler(
    cfg: RunConfig,
    k: int,
    model: Any,
    x: np.ndarray,
    c: np.ndarray | None,
    batch: int,
    ckpt: Path | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Burn-in, thinning (measured unless given) and s kept states of ``cfg.chains`` SG-MCMC
    chains (s/C each, concatenated in chain order; C > 1 adds the between-chain split-R̂).

    The target is the tempered posterior π(θ) ∝ exp(−λ U(θ)) with λ = ``inverse_temperature``
    and U(θ) = N · (mean per-event loss of the batch) + |θ|²/(2 prior_scale²): the data term is
    −log p for likelihood models (the generator's adversarial loss for the GAN), the second the
    Gaussian prior N(0, prior_scale²) on every weight. λ = 1 is the Bayesian posterior; λ > 1
    narrows it as 1/√λ.
    """
    from calamp._tf import tf
    from calamp.bayes.chain import draw_posterior, join_warnings, noise_warning
    from calamp.bayes.samplers import SGHMC, SGLD, AdamMCMC

    n = len(x)
    adversarial = getattr(model, "adversarial_energy", None)
    variables = list(model.trainable_variables)
    inv_prior_var = 1.0 / cfg.prior_scale**2

    # AdamMCMC on a likelihood: per-event terms (U = Σ_i terms_i + prior) for the MH test's
    # minibatch noise χ² (reported; corrected with --mh-noise penalty)
    with_terms = cfg.method == "adammcmc" and adversarial is None

    def energy(*b):
        xb, cb, sd = (b[0], None, b[1]) if len(b) == 2 else b
        terms = None
        if adversarial is not None:
            data = adversarial(xb, cb, seed=sd) * n
        elif with_terms:
            lp = model.log_prob(xb, cb)
            terms = -lp * (n / tf.cast(tf.shape(lp)[0], lp.dtype))
            data = -tf.reduce_mean(lp) * n  # = model.nll(xb, cb) * n
        else:
            data = model.nll(xb, cb) * n
        prior = 0.5 * inv_prior_var * tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])
        u = data + tf.cast(prior, data.dtype)
        return u if terms is None else (u, terms)

    from calamp.bayes.diagnostics import chain_summary, warning_for
    from calamp.bayes.flat import get_flat, set_flat

    def make_sampler(seed: int) -> Any:
        common = dict(inverse_temperature=cfg.inverse_temperature, seed=seed)
        if cfg.method == "adammcmc":
            # Adam's moments adapt during burn-in and are frozen afterwards, which keeps the
            # Metropolis-Hastings chain exact (the reference code never freezes them).
            return AdamMCMC(
                variables,
                energy,
                lr=cfg.sampler_step,
                sigma=cfg.sigma,
                adapt_steps=cfg.burn_in,
                noise_penalty=cfg.mh_noise_penalty,
                population=n,
                **common,
            )
        if cfg.method == "sgld":
            return SGLD(variables, energy, lr=cfg.sampler_step, **common)
        return SGHMC(variables, energy, lr=cfg.sampler_step, friction=cfg.friction, **common)

    seed = derive_seed(cfg.seed, "sampler", k)
    # chain 0 keeps the seed (and, unbatched, the folder) of a single chain
    chain_seeds = [seed] + [derive_seed(cfg.seed, "sampler", k, i) for i in range(1, cfg.chains)]
    start = get_flat(variables)  # every chain starts from the pre-trained weights
    schedule = dict(
        draws=cfg.chain_draws,
        burn_in=cfg.burn_in,
        thin=cfg.thin,
        max_thin=cfg.max_thin,
        total_steps=cfg.mcmc_steps,
        seed=seed,  # the same θ projections for every chain
        progress=cfg.progress,
    )
    t0 = time.perf_counter()
    batched = batched_chains(cfg, model)
    if batched:
        sampler = _batched_sampler(cfg, model, start, chain_seeds, n)
        posts = draw_posterior(
            sampler,
            _stacked_batch_fn(x, c, batch, chain_seeds),
            checkpoint_dir=None if ckpt is None else ckpt / "chains",
            stat_fn=_log_density_stats(model, sampler, x, c),
            **schedule,
        )
        set_flat(variables, sampler.state()[0])
    else:
        posts = []
        for chain, chain_seed in enumerate(chain_seeds):
            set_flat(variables, start)
            posts.append(
                draw_posterior(
                    make_sampler(chain_seed),
                    _batch_fn(x, c, batch, chain_seed),
                    checkpoint_dir=None if ckpt is None else ckpt / f"chain{chain or ''}",
                    **schedule,
                )
            )
    samples = np.concatenate([p.samples for p in posts])
    info = {**posts[0].info, "wall_seconds": time.perf_counter() - t0}
    info["batched"] = batched
    info["sampler_lr"] = cfg.sampler_step
    if cfg.chains > 1:
        theta = chain_summary(np.stack([p.trace for p in posts], axis=1), chains=cfg.chains)
        stat = None
        if posts[0].stat_trace is not None:
            stat = chain_summary(
                np.stack([p.stat_trace for p in posts], axis=1), chains=cfg.chains
            )
            info.update(ess_stat_min=stat["ess_min"], rhat_stat_max=stat["rhat_max"])
        info.update(
            chains=cfg.chains,
            steps=sum(p.info["steps"] for p in posts),
            thin_per_chain=[p.info["thin"] for p in posts],
            acceptance_rate=float(np.mean([p.info["acceptance_rate"] for p in posts])),
            acceptance_rate_per_chain=[p.info["acceptance_rate"] for p in posts],
            n_nonfinite=sum(p.info["n_nonfinite"] for p in posts),
            ess_theta_min=theta["ess_min"],
            rhat_theta_max=theta["rhat_max"],
            ess_energy=None,  # per chain only: see the per-chain records
            per_chain=[p.info for p in posts],
        )
        chi2 = [p.info["mh_noise_chi2_median"] for p in posts
                if p.info.get("mh_noise_chi2_median") is not None]
        info["mh_noise_chi2_median"] = float(np.median(chi2)) if chi2 else None
        info["warning"] = join_warnings(
            warning_for(stat or theta, cfg.draws), noise_warning(info["mh_noise_chi2_median"])
        )
    if info["n_nonfinite"]:
        print(
            f"calamp: network {k}: {info['n_nonfinite']} sampler steps met NaN/inf and were "
            "rejected",
            file=sys.stderr,
        )
    if info["warning"]:
        print(f"calamp: network {k}: {info['warning']}", file=sys.stderr)
    return samples, info
