"""The main job: train K Bayesian generators, draw, generate into histograms, judge, write.

``run_job(config, input_path, out)`` is what ``python -m calamp.run`` calls; the stages are
public so notebooks can run them one by one:

1. :func:`prepare_source` — K independent training sets and a truth sample (simulator or
   held-out data; the outputs say which);
2. :func:`make_binnings` — quantile binnings of every observable from the truth sample;
3. :func:`train_network` — one network: train, take s posterior draws (flat weight vectors);
4. :func:`fill_network` — generate g events per draw in chunks straight into the histograms;
5. :func:`analyse` — amplification, coverage, JSD closure per observable binning.

Seeds: one integer ``config.seed`` expands into independent integer streams per purpose,
network and draw (:func:`derive_seed`), so network k and draw i are reproducible anywhere
(also after ``--resume``, in another process, or on a dask worker).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from calamp import __version__
from calamp.analysis import format_summary, summary_rows
from calamp.config import RunConfig
from calamp.histograms import Binning, HistogramSet, quantile_binning, to_polar
from calamp.io import CalampError, ShowerSet

__all__ = [
    "Source",
    "NetworkDraws",
    "derive_seed",
    "prepare_source",
    "event_observables",
    "make_binnings",
    "train_network",
    "fill_network",
    "analyse",
    "run_job",
    "run_network",
    "load_network",
    "reanalyse",
    "write_samples",
]

_PURPOSES = {
    "truth": 1,
    "train_data": 2,
    "init": 3,
    "fit": 4,
    "draw": 5,
    "generate": 6,
    "sampler": 7,
    "context": 8,
    "samples": 9,
    "bootstrap": 10,
    "closure": 11,
    "split": 12,
    "coverage": 13,
}


def derive_seed(master: int, purpose: str, *indices: int) -> int:
    """Independent 31-bit integer seed for (master seed, purpose, network, draw, ...)."""
    ss = np.random.SeedSequence([int(master), _PURPOSES[purpose], *map(int, indices)])
    return int(ss.generate_state(1, np.uint32)[0] >> 1)


# ------------------------------------------------------------------------------------------------
# 1. data
# ------------------------------------------------------------------------------------------------
@dataclass
class Source:
    """Training sets and truth for one job.

    Attributes:
        kind: ``"ring"`` (events (N, 2) in the plane) or ``"showers"`` (:class:`ShowerSet`).
        train_sets: K training sets, one per network.
        truth: the truth sample (defines binnings and truth fractions).
        n_train: events per training set n.
        notes: how the training sets and the truth were made (goes into results.json).
    """

    kind: str
    train_sets: list[Any]
    truth: Any
    n_train: int
    notes: dict[str, Any] = field(default_factory=dict)


def prepare_source(
    cfg: RunConfig, input_path: str | Path | None = None, showers: ShowerSet | None = None
) -> Source:
    """Make K independent training sets and the truth sample.

    * ``--toy ring``: K fresh ring samples of ``n_train`` (default 10,000) points; truth: a
      fresh sample of ``truth_events``.
    * A shower file made by ``calamp.simulate`` (or ``truth="simulator"``): network 0 trains on
      the file, networks 1..K-1 on fresh simulator samples of the file's size; the truth is a
      fresh simulator sample of ``truth_events``.
    * Any other file (or ``truth="holdout"``): ``holdout_fraction`` of the file is kept aside as
      a finite truth, the rest is split into K disjoint training sets.
    """
    from calamp import simulate

    if cfg.toy == "ring":
        n = cfg.n_train or 10_000
        train = [
            simulate.ring(n, seed=derive_seed(cfg.seed, "train_data", k))
            for k in range(cfg.networks)
        ]
        truth = simulate.ring(cfg.truth_events, seed=derive_seed(cfg.seed, "truth"))
        return Source(
            "ring",
            train,
            truth,
            n,
            {
                "source": "ring toy (arXiv:2408.00838): r = 4 + Gamma(2, 0.5), phi uniform",
                "training_sets": f"{cfg.networks} independent ring samples of {n} points",
                "truth": f"independent ring sample of {cfg.truth_events} points",
                "truth_is_exact": True,
            },
        )

    from calamp import io

    if showers is None:
        if input_path is None:
            msg = "no input: give a ROOT file or a ShowerSet"
            raise CalampError(msg)
        showers = io.read_showers(
            input_path,
            tree=cfg.tree,
            energy=cfg.branch,
            incident_energy=_incident_option(cfg.incident_branch),
        )
        provenance = io.read_provenance(input_path)
    else:
        provenance = None
    label = str(input_path) if input_path is not None else showers.source or "ShowerSet"
    if min(showers.shape) < 3:
        msg = (
            f"{label}: branch {cfg.branch or 'energy'} holds images of shape "
            f"{tuple(showers.shape)}; the shower observables need a grid of at least 3x3 cells"
        )
        raise CalampError(msg)
    mode = cfg.truth
    if mode == "auto":
        mode = "simulator" if provenance is not None else "holdout"
    if mode == "simulator":
        sim_cfg = (
            simulate.CaloConfig(**provenance["config"])
            if provenance and "config" in provenance
            else None
        )
        energy = (
            provenance.get("energy", float(np.median(showers.incident_energy)))
            if provenance
            else float(np.median(showers.incident_energy))
        )
        if cfg.n_train > len(showers):
            msg = f"--n-train {cfg.n_train} exceeds the {len(showers)} showers of {label}"
            raise CalampError(msg)
        n = cfg.n_train or len(showers)
        warnings = _small_sample_warnings(n)
        if provenance is None:
            warnings.append(
                f"--truth simulator on {label}, which calamp.simulate did not make: networks "
                "1.. train on, and the truth comes from, calamp's default simulator at "
                f"{energy:g} GeV, which need not be the distribution of {label}"
            )
        train = [showers[:n]] + [
            simulate.photon_showers(
                n, energy, seed=derive_seed(cfg.seed, "train_data", k), config=sim_cfg
            )
            for k in range(1, cfg.networks)
        ]
        truth = simulate.photon_showers(
            cfg.truth_events, energy, seed=derive_seed(cfg.seed, "truth"), config=sim_cfg
        )
        return Source(
            "showers",
            train,
            truth,
            n,
            {
                "source": label,
                "training_sets": (
                    f"network 0: the first {n} showers of {label}; networks 1.."
                    f"{cfg.networks - 1}: fresh simulator samples of {n} showers"
                ),
                "truth": f"fresh simulator sample of {cfg.truth_events} showers",
                "truth_is_exact": provenance is not None,
                "simulator": provenance,
                "warnings": warnings,
            },
        )
    n_hold = int(round(cfg.holdout_fraction * len(showers)))
    order = np.random.default_rng(derive_seed(cfg.seed, "split")).permutation(len(showers))
    truth = showers[order[:n_hold]]
    rest = showers[order[n_hold:]]
    if len(rest) < cfg.networks * 2:
        msg = (
            f"{label}: {len(showers)} showers are too few for a hold-out truth and "
            f"{cfg.networks} training sets (use --networks or --holdout-fraction)"
        )
        raise CalampError(msg)
    parts = rest.split(cfg.networks)
    n = min(len(p) for p in parts)
    if cfg.n_train > n:
        msg = (
            f"--n-train {cfg.n_train} exceeds the {n} showers per network that {label} "
            f"leaves after the hold-out ({len(showers)} showers, {cfg.networks} networks)"
        )
        raise CalampError(msg)
    if cfg.n_train:
        n = cfg.n_train
    train = [p[:n] for p in parts]
    return Source(
        "showers",
        train,
        truth,
        n,
        {
            "source": label,
            "training_sets": f"{cfg.networks} disjoint splits of {label}, {n} showers each",
            "truth": (
                f"held-out part of {label} ({n_hold} showers): coverage and closure are "
                "measured against a finite reference sample"
            ),
            "truth_is_exact": False,
            "warnings": _small_sample_warnings(n),
        },
    )


_MIN_TRAIN = 100


def _small_sample_warnings(n: int) -> list[str]:
    """A warning when the training sets are too small for the statistics to mean much."""
    if n >= _MIN_TRAIN:
        return []
    return [
        f"only {n} training events per network: the quantile bins hold a few events each, the "
        "bootstrap and Gaussian approximations behind n', coverage and closure do not hold, "
        "and amplification factors are not meaningful"
    ]


def _incident_option(value: str | None) -> str | float | None:
    """``--incident-branch``: a branch name, or a number = constant incident energy (GeV)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


# ------------------------------------------------------------------------------------------------
# 2. observables and binnings
# ------------------------------------------------------------------------------------------------
def event_observables(
    kind: str, events: Any, names: tuple[str, ...] | None = None
) -> dict[str, np.ndarray]:
    """Observables to histogram from a batch of events.

    Args:
        kind: ``"ring"`` (events (N, 2)) or ``"showers"`` (a :class:`ShowerSet`).
        names: shower observables to compute (default: all of :mod:`calamp.observables`).

    Returns:
        name -> (N,) values, and for the ring ``"ring"`` -> (N, 2) (r, phi).
    """
    if kind == "ring":
        polar = to_polar(np.asarray(events))
        return {"ring": polar, "r": polar[:, 0], "phi": polar[:, 1]}
    from calamp.observables import shower_observables

    cells = names is not None and any(n.startswith("cell_") for n in names)
    obs = shower_observables(events.energy, events.incident_energy, cells=cells)
    if names is not None:
        obs = {k: obs[k] for k in names}
    return obs


def observable_names(cfg: RunConfig, kind: str) -> tuple[str, ...]:
    """Observables of a job: the ring's (r, phi) grid and marginals, or the configured ones."""
    return ("ring", "r", "phi") if kind == "ring" else tuple(cfg.observables)


def make_binnings(
    cfg: RunConfig, kind: str, truth_obs: Mapping[str, np.ndarray]
) -> dict[str, Binning]:
    """Quantile binnings ``"OBS/qN"`` for every observable and number of quantiles N."""
    out: dict[str, Binning] = {}
    for name in observable_names(cfg, kind):
        for n in cfg.n_quantiles:
            axes = ("r", "phi") if name == "ring" else name
            out[f"{name}/q{n}"] = quantile_binning(truth_obs[name], n, names=axes)
    return out


def split_key(key: str) -> tuple[str, int]:
    name, q = key.rsplit("/q", 1)
    return name, int(q)


# ------------------------------------------------------------------------------------------------
# 3. features and models
# ------------------------------------------------------------------------------------------------
class RingFeatures:
    """Affine standardisation of ring points (flows work best on O(1) inputs; the CNF keeps
    the reference's raw coordinates)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = float(scale)

    @classmethod
    def fit(cls, x: np.ndarray, model: str) -> RingFeatures:
        return cls(1.0 if model == "cnf" else float(np.std(x)))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x) / self.scale).astype(np.float32)

    def inverse(self, f: np.ndarray, context: Any = None) -> np.ndarray:
        del context
        return np.asarray(f, np.float64) * self.scale

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "ring", "scale": self.scale}


def make_features(cfg: RunConfig, kind: str, train: Any) -> Any:
    """Fit the invertible map events ↔ network features on one training set."""
    if kind == "ring":
        return RingFeatures.fit(train, cfg.model)
    if cfg.model == "gan":  # the GAN makes non-negative cell energies itself
        from calamp.models.oracle import IdentityFeatures

        return IdentityFeatures(train.shape)
    from calamp.preprocess import ShowerPreprocessor

    return ShowerPreprocessor.fit(train.energy, train.incident_energy)


def _context(kind: str, train: Any) -> np.ndarray | None:
    """Conditioning input: log incident energy when it varies across the training set."""
    if kind != "showers":
        return None
    e = np.asarray(train.incident_energy, np.float64)
    if np.ptp(e) <= 1e-6 * max(1.0, float(np.abs(e).max())):
        return None
    return np.log(e / np.median(e)).astype(np.float32)[:, None]


def build_model(
    cfg: RunConfig, dim: int, context_dim: int, *, bayesian: str | None, n_train: int, seed: int
) -> Any:
    """The generator of ``cfg.model`` (VI layers when ``bayesian == "vi"``)."""
    from calamp.bayes.vi import VIConfig

    vi = (
        VIConfig.from_k(
            cfg.kl_factor, n_train, prior_scale=cfg.prior_scale, kl_convention=cfg.kl_convention
        )
        if bayesian == "vi"
        else None
    )
    common = dict(bayesian=bayesian, vi=vi, seed=seed)
    if cfg.model == "flow":
        from calamp.models.flows import CouplingFlow

        return CouplingFlow(
            dim, context_dim, n_couplings=cfg.layers, hidden=(cfg.hidden, cfg.hidden), **common
        )
    if cfg.model == "maf":
        from calamp.models.flows import MAFlow

        return MAFlow(
            dim, context_dim, n_layers=cfg.layers, hidden=(cfg.hidden, cfg.hidden), **common
        )
    if cfg.model == "cnf":
        from calamp.models.cnf import FlowMatchingCNF

        return FlowMatchingCNF(
            dim,
            context_dim,
            hidden=cfg.hidden,
            layers=cfg.layers,
            solver=cfg.ode_solver,
            n_steps=cfg.ode_steps,
            **common,
        )
    from calamp.models.gan import ShowerGAN

    return ShowerGAN(dim, context_dim, hidden=cfg.hidden, layers=cfg.layers, **common)


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
        return _oracle_network(cfg, k, source)
    train = source.train_sets[k]
    feats = make_features(cfg, source.kind, train)
    x = (
        feats.forward(train)
        if source.kind == "ring"
        else feats.forward(train.energy, train.incident_energy)
    )
    x = np.asarray(x, np.float32)
    c = _context(source.kind, train)
    cdim = 0 if c is None else c.shape[1]
    n = len(x)
    batch = min(cfg.batch_size, n)
    bayes = "vi" if cfg.method == "vi" else None
    ckpt = None if workdir is None else Path(workdir) / f"net{k}"
    info: dict[str, Any] = {"n_train": n, "batch_size": batch}
    t0 = time.perf_counter()

    def fit(model, tag: str, seed: int) -> dict[str, Any]:
        try:
            hist = model.fit(
                x,
                c,
                steps=cfg.train_steps,
                batch_size=batch,
                learning_rate=cfg.learning_rate,
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
        k, model, feats, np.asarray(weights, np.float32), c, info, _incident(source.kind, train)
    )


def _oracle_network(cfg: RunConfig, k: int, source: Source) -> NetworkDraws:
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
        k, model, feats, model.draw_weights(cfg.draws), None, info, _incident(source.kind, train)
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


# ------------------------------------------------------------------------------------------------
# 4. generation into histograms
# ------------------------------------------------------------------------------------------------
def _incident(kind: str, train: Any) -> np.ndarray | None:
    """Training incident energies (GeV) that generation resamples (None for the ring)."""
    return None if kind == "ring" else np.asarray(train.incident_energy, np.float32)


def decode_events(kind: str, feats: Any, chunk: np.ndarray, e_inc: np.ndarray | None) -> Any:
    """Network features -> events: ring points, or showers at the given incident energies."""
    if kind == "ring":
        return feats.inverse(chunk)
    if e_inc is None:
        msg = "shower generation needs the incident energies of the training set"
        raise CalampError(msg)
    images = feats.inverse(chunk, e_inc)
    return ShowerSet(images, e_inc, source="generated")


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


# ------------------------------------------------------------------------------------------------
# 5. statistics
# ------------------------------------------------------------------------------------------------
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
) -> dict[str, Any]:
    """All statistics of one observable binning (:func:`calamp.analysis.analyse_binning`).

    Args:
        fractions: (K, s, B) per-draw bin fractions.
        truth: (B,) truth bin probabilities.
        train_fractions: (K, B) bin fractions of the training sets.
        n_train: training-set size n.
        n_filled: (K, s) events per draw (default: ``cfg.generated`` each).
        n_truth: size of the truth sample behind ``truth`` (None: exact).
    """
    from calamp.analysis import analyse_binning

    name, nq = split_key(key)
    k, s, _ = np.shape(fractions)
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
        n_boot=cfg.bootstrap,
        seed=derive_seed(cfg.seed, "coverage"),
    )
    if cfg.method in _CHAIN_METHODS and s >= 4:
        res["chain"] = chain_diagnostics(np.asarray(fractions))
    return res


_CHAIN_METHODS = ("adammcmc", "sgld", "sghmc")


def chain_diagnostics(fractions: np.ndarray) -> dict[str, Any]:
    """ESS and split-R̂ of the per-bin histogram values along each network's chain.

    Args:
        fractions: (K, s, B) bin fractions, draws in chain order.

    Returns:
        ``{"ess_min": [K], "ess_median": [K], "rhat_max": [K], "warning": str | None}``
        (minimum/median over bins; the warning names the worst network).
    """
    from calamp.bayes.diagnostics import chain_summary, warning_for

    k, s, _ = fractions.shape
    rows = [chain_summary(fractions[i]) for i in range(k)]
    warnings = [warning_for(r, s) for r in rows]
    worst = next((f"network {i}: {w}" for i, w in enumerate(warnings) if w), None)
    return {
        "ess_min": [r["ess_min"] for r in rows],
        "ess_median": [r["ess_median"] for r in rows],
        "rhat_max": [r["rhat_max"] for r in rows],
        "warning": worst,
    }


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


def estimate_seconds(cfg: RunConfig, n_train: int, dim: int) -> float:
    """Rough wall time on 2 CPU cores (order of magnitude; printed at start).

    Per-step and per-event costs measured on this project's 2-core reference machine
    (benchmarks/RESULTS.md): a training step scales with batch size and event dimension, a
    generated event with the event dimension; AdamMCMC steps cost about three training steps.
    """
    scale = max(1.0, dim / 10)
    step = {"flow": 2.5e-5, "maf": 2.5e-5, "cnf": 2e-6, "gan": 1e-5}[cfg.model]
    step *= cfg.batch_size * scale * (cfg.hidden / 64) ** 0.5 + 2e-3
    gen = {"flow": 1e-5, "maf": 1e-4, "cnf": 1e-5, "gan": 2e-6}[cfg.model] * scale
    if cfg.method == "oracle":
        step, gen = 0.0, 1e-6
    steps = cfg.train_steps * (cfg.draws if cfg.method == "ensemble" else 1)
    if cfg.method in ("adammcmc", "sgld", "sghmc"):
        steps += cfg.effective_mcmc_steps * (3 if cfg.method == "adammcmc" else 1)
    per_net = steps * step + cfg.draws * cfg.generated * (gen + 2e-6 * scale)
    return cfg.networks * per_net + 20.0


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
        dim = 2 if source.kind == "ring" else int(np.prod(source.train_sets[0].shape)) + 1
        est = estimate_seconds(cfg, source.n_train, dim)
        print(
            f"calamp: {cfg.networks} networks x {cfg.draws} draws x {cfg.generated} events, "
            f"model {cfg.model}, method {cfg.method}; estimated time ~{est / 60:.0f} min "
            f"({est:.0f} s) on 2 CPU cores",
            file=sys.stderr,
        )
        timings: dict[str, float] = {}

        t0 = time.perf_counter()
        names = None if source.kind == "ring" else tuple(cfg.observables)
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

        if client is None:
            per_net = [
                run_network(cfg, k, source, binnings, out, resume=resume)
                for k in range(cfg.networks)
            ]
        else:
            from calamp.distributed import map_networks

            per_net = map_networks(client, cfg, source, binnings, out, resume=resume)

        t0 = time.perf_counter()
        results: dict[str, Any] = {
            "calamp_version": __version__,
            "versions": _versions(),
            "config": cfg.to_dict(),
            "seeds": {
                "master": cfg.seed,
                "coverage": derive_seed(cfg.seed, "coverage"),
                "derivation": "numpy SeedSequence([seed, purpose, "
                "network, draw]); purposes: " + ", ".join(_PURPOSES),
            },
            "data": {
                **source.notes,
                "kind": source.kind,
                "n_train": source.n_train,
                "n_networks": cfg.networks,
                "n_draws": cfg.draws,
                "n_generated_per_draw": cfg.generated,
                "n_truth": _truth_size(source),
            },
            "networks": [pn["info"] for pn in per_net],
            "binnings": {},
        }
        arrays: dict[str, np.ndarray] = {}
        for key, b in binnings.items():
            counts = np.stack([pn["counts"][key] for pn in per_net]).astype(np.float64)
            n_filled = np.stack([pn["n_filled"] for pn in per_net]).astype(np.float64)
            fractions = counts / n_filled[:, :, None]
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
            )
            results["binnings"][key] = res
            arrays["n_filled"] = n_filled
            arrays[f"fractions/{key}"] = fractions
            arrays[f"truth/{key}"] = truth[key]
            arrays[f"train/{key}"] = train_fr[key]
        if source.kind == "showers" and per_net[0]["mean_image"] is not None:
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
                _oracle_network(cfg, k, source)
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


def _truth_size(source: Source) -> float:
    """Events in the truth sample (its quantiles define the bins; it enters as finite)."""
    return float(len(source.truth))


def root_records(
    results: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> list[dict[str, Any]]:
    """What :func:`calamp.outputs.write_root` writes, from the results and their arrays."""
    records = []
    for key, b in results["binnings"].items():
        records.append(
            {
                "path": key,
                "edges": b["edges"][0] if len(b["shape"]) == 1 else None,
                "label": key,
                "truth": np.asarray(b["truth"], float),
                "draws": arrays[f"fractions/{key}"],
                "amp_per_bin": np.asarray(
                    [np.nan if v is None else v for v in b["amplification"]["per_bin_mean"]], float
                ),
            }
        )
    return records


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
