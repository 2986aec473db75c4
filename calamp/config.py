"""Configuration of a calamp job: one frozen dataclass, presets, TOML loading and validation.

Pure Python: no TensorFlow, no I/O beyond reading a TOML file. Every option of
``python -m calamp.run`` is a field here, so a TOML file (``--config``) can set any of them;
the command line wins over the file, the file over the preset, the preset over the defaults.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CAPABILITIES",
    "MODELS",
    "METHODS",
    "MODEL_SIZES",
    "NOISE_BATCHES",
    "model_size",
    "SHOWER_OBSERVABLES",
    "RunConfig",
    "ConfigError",
    "PRESETS",
    "load_toml",
    "make_config",
]

MODELS = ("flow", "maf", "cnf", "gan")
NOISE_BATCHES = 10
"""Event batches per draw with ``generation_noise = "common"``: batch b of every draw of a
network maps the same latent noise; the batches give the noise estimate and its error
(:func:`calamp.stats.amplification`, ``batches``)."""
METHODS = ("vi", "adammcmc", "sgld", "sghmc", "ensemble", "oracle")
SHOWER_OBSERVABLES = (
    "e_total",
    "e_ratio",
    "n_hit",
    "e_max",
    "e_max_frac",
    "x_centroid",
    "y_centroid",
    "x_width",
    "y_width",
    "f_core3x3",
)


MODEL_SIZES: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    # model: ((layers, hidden) for events of <= 3 dimensions, (layers, hidden) for showers)
    # the shower flow: 8 couplings of 2x128 learn the lateral shape that 4 of 2x64 miss
    # (e_max A_true 0.154 vs 0.00725 after 2,000 steps, analysis/results/generator_curves.json)
    "flow": ((4, 64), (8, 128)),
    "maf": ((4, 64), (4, 64)),
    "cnf": ((4, 64), (4, 64)),
    "gan": ((4, 64), (4, 64)),
}


def model_size(cfg: RunConfig, dim: int) -> tuple[int, int]:
    """(layers, hidden) of the generator for events of ``dim`` dimensions (0 options resolved)."""
    small, large = MODEL_SIZES[cfg.model]
    layers, hidden = small if dim <= 3 else large
    return cfg.layers or layers, cfg.hidden or hidden


class ConfigError(ValueError):
    """A bad option value; the message names the option."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a calamp job (see ``python -m calamp.run --help``).

    Attributes (units and meaning):
        model: generator family: ``flow`` (coupling RQ-spline flow), ``maf``, ``cnf``
            (flow-matching CNF of arXiv:2408.00838), ``gan``.
        method: Bayesian method: ``vi`` (KL factor ``kl_factor``), ``adammcmc`` (noise
            ``sigma``), ``sgld``/``sghmc`` (step ``sampler_lr``), ``ensemble``, or ``oracle``
            (draws are independent truth samples of size n: a check of the statistics chain,
            which must give amplification 1 and calibrated coverage).
        networks: K independent networks, each on its own training set.
        draws: s posterior draws per network.
        generated: g generated events per draw (not used with ``bin_probabilities =
            "quadrature"``).
        bin_probabilities: ``sampled`` (default: count ``generated`` events per draw; the
            statistics subtract their multinomial noise) or ``quadrature`` (ring toy with a
            model that has a density, ``flow``/``maf``/``cnf``: each draw's exact bin
            probabilities by quadrature of its density, :mod:`calamp.quadrature`; no
            generation noise at all).
        generation_noise: ``independent`` (default: every draw gets its own latent noise; the
            coverage randomisation is exact) or ``common`` (common random numbers: every draw
            of a network maps the same latent noise, in :data:`NOISE_BATCHES` batches, so the
            spread over draws is the weight uncertainty and n' needs far fewer events; the
            noise left is estimated from the batches. The draws then share one noise offset
            that their spread does not show: coverage is only judged where that offset is
            below 10 % of the weight spread, g >= 10 n'.)
        centroid_features: showers: > 0 adds the shower centroid (x, y) as two features of
            the flow/MAF/CNF representation, smeared by this many cells (0.017: 5 % of the
            centroid spread of the default calorimeter), dropped at decoding
            (:class:`~calamp.preprocess.ShowerPreprocessor`); 0 (default): off.
        train_steps, batch_size, learning_rate: (pre-)training schedule (Adam).
        lr_schedule: ``cosine`` (learning rate decays to 0 over ``train_steps``; removes most of
            the minibatch jitter of the final weights) or ``constant``.
        vi_init_scale: initial posterior standard deviation of every VI weight. 1e-3 (default)
            starts VI near a deterministic network, and the KL term widens it where the data
            allow; the reference code's softplus(-3) = 0.049 leaves an 8x128 shower flow
            (1.4 M weights) worse than independent cells after 1,500 steps
            (analysis/results/generator_curves.json).
        vi_scale_lr: learning rate of the VI width parameters as a multiple of
            ``learning_rate`` (:attr:`~calamp.bayes.vi.VIConfig.scale_lr_factor`): at 1 the
            widths of a 1,500-step fit can only grow 2.1x from ``vi_init_scale``, whatever the
            ELBO asks for.
        hidden, layers: generator size (flow: ``layers`` couplings with two hidden layers of
            ``hidden`` units each; cnf/gan: ``layers`` hidden layers); 0 (default): the size of
            :data:`MODEL_SIZES` for the model and the event dimension (:func:`model_size`).
        mcmc_steps: sampler steps after pre-training including burn-in; the s draws are taken
            evenly from the last ``mcmc_steps - burn_in`` steps. ``0`` (default): burn-in, then
            ``draws · thin`` steps with ``thin = mcmc_thin``, or, if that is 0, twice the
            integrated autocorrelation time measured on the second half of the burn-in
            (random projections of θ; at most ``max_thin``).
        burn_in: sampler steps discarded before the first draw (Adam moments of AdamMCMC adapt
            during burn-in and are frozen after it, so the chain is exact). Pre-training does
            not replace it: its loss lacks the prior term of the sampler's energy.
        mcmc_thin: sampler steps between kept draws (0: measured, see ``mcmc_steps``).
        max_thin: upper bound of the measured thinning (bounds the chain's cost).
        chains: C independent SG-MCMC chains per network (all from the pre-trained weights,
            each with its own sampler seed and burn-in), each keeping s/C of the s draws;
            C > 1 adds the between-chain split-R̂ to the diagnostics. ``mcmc_steps``,
            ``burn_in`` and the thinning are per chain. AdamMCMC on the coupling flow runs the
            C chains in one compiled step (:class:`~calamp.bayes.batched.BatchedAdamMCMC`).
        sigma, sampler_lr: AdamMCMC proposal noise σ and Adam step (SGLD/SGHMC: step size);
            ``sampler_lr = 0`` (default) is the method's default (:attr:`sampler_step`):
            1e-4 for AdamMCMC, 1e-3 for SGLD/SGHMC. The AdamMCMC step 1e-4 was chosen by
            measurement on the ring flow (``analysis/sampler_step_scan.py``, 5 chains from
            pre-trained weights, 3,000 steps, analysis/results/sampler_step_scan.json):
            acceptance 0.29–0.40 and a drift of the mean log-density on fixed events of −0.10
            to −0.11 nats (the chain leaving the pre-trained mode), against 0.04–0.08 and
            −0.02 to −0.06 at 1e-3, whose 92–96 % rejections stall it. That acceptance is
            mostly minibatch noise: the MH test's noise χ² is ~650 at 1e-4 on the ring flow
            (``analysis/mh_noise_scan.py``, ``mh_noise``).
        mh_noise: AdamMCMC's Metropolis–Hastings on minibatches. ``none`` (default) accepts on
            the plain minibatch ratio, as the reference code does; it samples a wider
            distribution than the posterior (standard deviations 1.6x too large on a Gaussian
            posterior at N/B = 5, ``tests/test_samplers.py``). ``penalty`` corrects the
            acceptance for the noise of the minibatch energy difference (Ceperley–Dewing,
            :func:`~calamp.bayes.samplers.minibatch_noise_penalty`): exact, but only usable
            where that noise is small (χ² ≲ 1); at the default ring step it rejects almost every
            proposal (``analysis/mh_noise_scan.py``). Not for the GAN (no per-event terms).
        n_quantiles: numbers of quantile bins per axis (1D observables; the ring's (r, φ) grid
            uses n×n cells).
        truth_events: size of the truth sample that defines the binning and the truth fractions.
        truth: ``auto`` (simulator when the input was made by ``calamp.simulate``, else held-out
            data), ``simulator`` or ``holdout``.
        holdout_fraction: share of a file kept aside as the finite truth when ``truth`` is holdout.
        ode_solver, ode_steps: CNF integrator, ``dopri`` (adaptive Dormand-Prince, atol 1e-6,
            rtol 1e-5) or ``rk4`` with ``ode_steps`` fixed steps (faster; for SG-MCMC energies).
        n_train: training showers (events) per network for the ring toy / simulator sources;
            ``0`` means the file's size (simulator) or an equal K-way split (holdout).
        scheduler: address of a dask scheduler; the K networks then run on its workers.
        workers: local worker processes for the K networks (one TensorFlow thread each; two
            threads make these small networks slower, one process per core does not).
            ``0`` (default): one per CPU core, at most K, when the job's estimated time is over
            two minutes (a worker's start-up costs ~10 s), else 1 (in this process). A
            performance setting only: the numbers do not depend on it.
    """

    model: str = "flow"
    method: str = "vi"
    kl_factor: float = 1.0
    kl_convention: str = "sum"
    prior_scale: float = 1.0
    sigma: float = 0.1
    sampler_lr: float = 0.0
    friction: float = 0.1
    inverse_temperature: float = 1.0
    mh_noise: str = "none"
    networks: int = 5
    draws: int = 50
    generated: int = 10_000
    bin_probabilities: str = "sampled"
    generation_noise: str = "independent"
    centroid_features: float = 0.0
    train_steps: int = 1_500
    batch_size: int = 256
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    vi_init_scale: float = 1e-3
    vi_scale_lr: float = 1.0
    mcmc_steps: int = 0
    burn_in: int = 1_000
    mcmc_thin: int = 0
    max_thin: int = 100
    chains: int = 1
    hidden: int = 0
    layers: int = 0
    ode_solver: str = "dopri"
    ode_steps: int = 16
    observables: tuple[str, ...] = SHOWER_OBSERVABLES
    n_quantiles: tuple[int, ...] = (5, 10, 20)
    truth_events: int = 200_000
    truth: str = "auto"
    holdout_fraction: float = 0.5
    n_train: int = 0
    toy: str | None = None
    tree: str | None = None
    branch: str | None = None
    incident_branch: str | None = None
    seed: int = 1
    chunk_size: int = 20_000
    write_samples: int = 0
    bootstrap: int = 200
    plots: bool = True
    progress: bool = True
    scheduler: str | None = None
    workers: int = 0
    preset: str = "default"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (tuples become lists)."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @property
    def sampler_step(self) -> float:
        """The SG-MCMC step: ``sampler_lr``, or for 0 the method's default (AdamMCMC 1e-4,
        measured on the ring flow, see ``sampler_lr``; SGLD/SGHMC 1e-3)."""
        if self.sampler_lr > 0:
            return self.sampler_lr
        return 1e-4 if self.method == "adammcmc" else 1e-3

    @property
    def mh_noise_penalty(self) -> bool:
        """Whether AdamMCMC corrects its acceptance for the minibatch noise (``mh_noise``)."""
        return self.mh_noise == "penalty"

    @property
    def chain_draws(self) -> int:
        """Draws kept by each of the ``chains`` SG-MCMC chains of a network (s / C)."""
        return self.draws // max(1, self.chains)

    @property
    def thin(self) -> int:
        """Sampler steps between kept draws; 0: measured from the burn-in (``mcmc_steps``)."""
        if self.mcmc_steps > 0:
            return max(1, (self.mcmc_steps - self.burn_in) // self.chain_draws)
        return self.mcmc_thin

    @property
    def effective_mcmc_steps(self) -> int:
        """Sampler steps of one chain including burn-in (an upper bound when the thinning is
        measured); a network runs ``chains`` of them."""
        if self.mcmc_steps > 0:
            return self.mcmc_steps
        return self.burn_in + self.chain_draws * (self.mcmc_thin or self.max_thin)


PRESETS: dict[str, dict[str, Any]] = {
    # About two minutes on 2 cores: used by CI and for a first look.
    "quick": dict(
        networks=3,
        draws=10,
        generated=5_000,
        train_steps=300,
        batch_size=256,
        truth_events=50_000,
        n_quantiles=(5, 10),
        hidden=32,
        layers=3,
        bootstrap=50,
        # a short chain: its ESS is stated in the summary, and a warning says when it is low
        burn_in=200,
        max_thin=20,
    ),
    # The README's main job: about 10-15 minutes on 2 cores on data/shower.root.
    "default": {},
}


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file; top-level keys or a ``[calamp]`` table are option names."""
    p = Path(path)
    if not p.is_file():
        msg = f"config file {str(p)!r} does not exist"
        raise ConfigError(msg)
    try:
        data = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        msg = f"config file {str(p)!r} is not valid TOML: {err}"
        raise ConfigError(msg) from None
    if "calamp" in data and isinstance(data["calamp"], dict):
        data = data["calamp"]
    return {k.replace("-", "_"): v for k, v in data.items()}


def make_config(*layers: dict[str, Any]) -> RunConfig:
    """Merge option dictionaries (later ones win) onto the preset they name, then validate.

    ``None`` values are ignored, so unset command-line options do not hide file values.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    preset = merged.get("preset", "default")
    if preset not in PRESETS:
        msg = f"option --preset: unknown preset {preset!r} (choose from {', '.join(PRESETS)})"
        raise ConfigError(msg)
    values = dict(PRESETS[preset])
    values.update(merged)
    names = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        msg = f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})"
        raise ConfigError(msg)
    for key in ("observables", "n_quantiles"):
        if key in values and isinstance(values[key], list):
            values[key] = tuple(values[key])
        if key in values and isinstance(values[key], str):
            values[key] = tuple(s.strip() for s in values[key].split(",") if s.strip())
    if "n_quantiles" in values:
        try:
            values["n_quantiles"] = tuple(int(v) for v in values["n_quantiles"])
        except (TypeError, ValueError):
            msg = f"option --n-quantiles: expected integers, got {values['n_quantiles']!r}"
            raise ConfigError(msg) from None
    types = {f.name: f.type for f in dataclasses.fields(RunConfig)}
    values = {k: _coerce(k, v, types[k]) for k, v in values.items()}
    cfg = RunConfig(**values)
    validate(cfg)
    return cfg


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """Check a (TOML or Python) option value against its field type: ints must be integers
    (7 or 7.0, not 2.7 or "three"), floats numbers, bools booleans; one-line error otherwise."""
    flag = f"option --{name.replace('_', '-')}"
    kind = str(kind)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            msg = f"{flag}: expected an integer, got {value!r}"
            raise ConfigError(msg)
        try:
            num = float(value)
        except ValueError:
            msg = f"{flag}: expected an integer, got {value!r}"
            raise ConfigError(msg) from None
        if not num.is_integer():
            msg = f"{flag}: expected an integer, got {value!r}"
            raise ConfigError(msg)
        return int(num)
    if kind == "float":
        if isinstance(value, bool):
            msg = f"{flag}: expected a number, got {value!r}"
            raise ConfigError(msg)
        try:
            return float(value)
        except (TypeError, ValueError):
            msg = f"{flag}: expected a number, got {value!r}"
            raise ConfigError(msg) from None
    if kind == "bool" and not isinstance(value, bool):
        msg = f"{flag}: expected true or false, got {value!r}"
        raise ConfigError(msg)
    if kind in ("str", "str | None") and value is not None and not isinstance(value, str):
        if name == "incident_branch" and isinstance(value, int | float):
            return str(value)  # a constant incident energy in GeV (see calamp.io)
        msg = f"{flag}: expected a string, got {value!r}"
        raise ConfigError(msg)
    return value


CAPABILITIES: dict[str, tuple[str, ...]] = {
    "flow": ("vi", "adammcmc", "sgld", "sghmc", "ensemble", "oracle"),
    "maf": ("adammcmc", "sgld", "sghmc", "ensemble", "oracle"),
    "cnf": ("vi", "adammcmc", "sgld", "sghmc", "ensemble", "oracle"),
    "gan": ("vi", "adammcmc", "sgld", "sghmc", "ensemble", "oracle"),
}
"""Bayesian methods each model supports (checked before any folder is created)."""


def _check(cond: bool, option: str, text: str) -> None:
    if not cond:
        msg = f"option --{option.replace('_', '-')}: {text}"
        raise ConfigError(msg)


def validate(cfg: RunConfig) -> None:
    """Raise :class:`ConfigError` naming the first bad option."""
    _check(cfg.model in MODELS, "model", f"{cfg.model!r} is not one of {', '.join(MODELS)}")
    _check(cfg.method in METHODS, "method", f"{cfg.method!r} is not one of {', '.join(METHODS)}")
    if cfg.model in MODELS and cfg.method in METHODS:
        valid = [f"{m}+{x}" for m, xs in CAPABILITIES.items() for x in xs]
        _check(
            cfg.method in CAPABILITIES[cfg.model],
            "method",
            f"{cfg.method!r} is not available for --model {cfg.model} "
            f"(valid: {', '.join(valid)})",
        )
    _check(cfg.seed >= 0, "seed", f"must be >= 0, got {cfg.seed}")
    _check(cfg.chunk_size >= 1, "chunk_size", f"must be >= 1, got {cfg.chunk_size}")
    _check(cfg.workers >= 0, "workers", f"must be >= 0 (0: automatic), got {cfg.workers}")
    _check(
        cfg.workers <= 1 or cfg.scheduler is None,
        "workers",
        "local worker processes and --scheduler exclude each other (the cluster has its own)",
    )
    _check(cfg.generated >= 2, "generated", f"must be >= 2 events per draw, got {cfg.generated}")
    _check(cfg.truth_events >= 2, "truth_events", f"must be >= 2, got {cfg.truth_events}")
    _check(cfg.n_train >= 0, "n_train", f"must be >= 0, got {cfg.n_train}")
    _check(cfg.kl_convention in ("sum", "mean"), "kl_convention", "must be 'sum' or 'mean'")
    _check(
        cfg.lr_schedule in ("constant", "cosine"), "lr_schedule", "must be 'constant' or 'cosine'"
    )
    _check(
        cfg.truth in ("auto", "simulator", "holdout"),
        "truth",
        "must be 'auto', 'simulator' or 'holdout'",
    )
    _check(cfg.ode_solver in ("dopri", "rk4"), "ode_solver", "must be 'dopri' or 'rk4'")
    _check(
        cfg.bin_probabilities in ("sampled", "quadrature"),
        "bin_probabilities",
        f"must be 'sampled' or 'quadrature', got {cfg.bin_probabilities!r}",
    )
    _check(
        cfg.generation_noise in ("independent", "common"),
        "generation_noise",
        f"must be 'independent' or 'common', got {cfg.generation_noise!r}",
    )
    _check(
        math.isfinite(cfg.centroid_features) and cfg.centroid_features >= 0,
        "centroid_features",
        f"must be >= 0 cells, got {cfg.centroid_features}",
    )
    if cfg.centroid_features > 0:
        _check(
            cfg.toy is None and cfg.model != "gan",
            "centroid_features",
            "centroid features are a shower representation of the flow, maf and cnf models",
        )
    if cfg.generation_noise == "common":
        _check(
            cfg.bin_probabilities == "sampled",
            "generation_noise",
            "common noise needs sampled bin probabilities (quadrature has no noise)",
        )
        _check(
            cfg.generated >= 2 * NOISE_BATCHES,
            "generation_noise",
            f"common noise needs --generated >= {2 * NOISE_BATCHES} ({NOISE_BATCHES} batches "
            f"of >= 2 events), got {cfg.generated}",
        )
    if cfg.bin_probabilities == "quadrature":
        _check(
            cfg.toy == "ring" and cfg.model in ("flow", "maf", "cnf") and cfg.method != "oracle",
            "bin_probabilities",
            "quadrature needs the ring toy and a model with a density (flow, maf, cnf; not "
            f"--method oracle), got toy {cfg.toy!r}, model {cfg.model!r}, method {cfg.method!r}",
        )
    _check(cfg.ode_steps >= 1, "ode_steps", "must be >= 1")
    _check(cfg.toy in (None, "ring"), "toy", f"{cfg.toy!r} is not a known toy (use 'ring')")
    for name in (
        "networks",
        "generated",
        "train_steps",
        "batch_size",
        "truth_events",
        "chunk_size",
    ):
        _check(
            int(getattr(cfg, name)) >= 1,
            name,
            f"must be a positive integer, got {getattr(cfg, name)}",
        )
    _check(cfg.hidden >= 0, "hidden", f"must be >= 0 (0: automatic), got {cfg.hidden}")
    _check(cfg.layers >= 0, "layers", f"must be >= 0 (0: automatic), got {cfg.layers}")
    _check(cfg.draws >= 2, "draws", f"needs at least 2 draws for a spread, got {cfg.draws}")
    _check(cfg.networks >= 1, "networks", "must be >= 1")
    for name in (
        "kl_factor",
        "sigma",
        "learning_rate",
        "prior_scale",
        "inverse_temperature",
        "vi_init_scale",
        "vi_scale_lr",
    ):
        _check(float(getattr(cfg, name)) > 0, name, f"must be positive, got {getattr(cfg, name)}")
    _check(
        cfg.sampler_lr >= 0, "sampler_lr", f"must be >= 0 (0: the method's default), got "
        f"{cfg.sampler_lr}"
    )
    _check(cfg.friction >= 0, "friction", "must be >= 0")
    _check(
        cfg.mh_noise in ("none", "penalty"),
        "mh_noise",
        f"must be 'none' or 'penalty', got {cfg.mh_noise!r}",
    )
    _check(
        not (cfg.mh_noise == "penalty" and cfg.model == "gan"),
        "mh_noise",
        "'penalty' needs per-event likelihood terms, which the GAN's adversarial energy does not "
        "have (use 'none')",
    )
    _check(0 < cfg.holdout_fraction < 1, "holdout_fraction", "must be in (0, 1)")
    _check(cfg.mcmc_steps >= 0, "mcmc_steps", "must be >= 0")
    _check(cfg.burn_in >= 0, "burn_in", "must be >= 0")
    _check(cfg.mcmc_thin >= 0, "mcmc_thin", "must be >= 0")
    _check(cfg.max_thin >= 1, "max_thin", "must be >= 1")
    _check(cfg.chains >= 1, "chains", f"must be >= 1, got {cfg.chains}")
    if cfg.chains > 1:
        _check(
            cfg.method in ("adammcmc", "sgld", "sghmc"),
            "chains",
            f"several chains per network need an SG-MCMC method, not {cfg.method!r}",
        )
        _check(
            cfg.draws % cfg.chains == 0 and cfg.draws // cfg.chains >= 4,
            "chains",
            f"the {cfg.draws} draws must split into {cfg.chains} chains of >= 4 draws each "
            "(the between-chain split-R-hat needs 4 states per chain)",
        )
    _check(
        cfg.effective_mcmc_steps - cfg.burn_in >= cfg.chain_draws,
        "mcmc_steps",
        f"needs at least burn_in + draws per chain = {cfg.burn_in + cfg.chain_draws} steps",
    )
    _check(
        cfg.thin > 0 or cfg.burn_in >= 20,
        "burn_in",
        f"must be >= 20 to measure the thinning (got {cfg.burn_in}); or set --mcmc-thin",
    )
    _check(
        len(cfg.n_quantiles) >= 1 and all(n >= 2 for n in cfg.n_quantiles),
        "n_quantiles",
        f"needs integers >= 2, got {list(cfg.n_quantiles)}",
    )
    _check(len(cfg.observables) >= 1, "observables", "needs at least one observable")
    _check(cfg.write_samples >= 0, "write_samples", "must be >= 0")
    _check(cfg.bootstrap >= 0, "bootstrap", "must be >= 0")
    if cfg.toy is None:
        unknown = [
            o for o in cfg.observables if o not in SHOWER_OBSERVABLES and not o.startswith("cell_")
        ]
        _check(
            not unknown,
            "observables",
            f"unknown observable(s) {', '.join(unknown)} (known: {', '.join(SHOWER_OBSERVABLES)}"
            ", cell_<iy>_<ix>)",
        )
