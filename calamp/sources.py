"""Where the data come from: training sets and truth, observables, binnings, feature maps.

The ring toy and shower files (simulator-made or foreign, with a held-out truth) become a
:class:`Source`: K training sets, a truth sample and notes on how they were made. The
observables of events, the quantile binnings of the truth, the invertible event <-> network
feature maps and the decoding of generated features back into events live here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calamp.config import RunConfig
from calamp.histograms import Binning, quantile_binning, to_polar
from calamp.io import CalampError, ShowerSet
from calamp.seeds import derive_seed

__all__ = [
    "RingFeatures",
    "Source",
    "decode_events",
    "event_observables",
    "incident_energies",
    "make_binnings",
    "make_features",
    "model_context",
    "observable_names",
    "prepare_source",
    "split_key",
]


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

    @property
    def event_dim(self) -> int:
        """Dimension of one event in feature space: 2 (ring) or cells + 1 (showers)."""
        if self.kind == "ring":
            return 2
        return int(np.prod(self.train_sets[0].shape)) + 1


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
        names: shower observables to compute (default: all of :mod:`calamp.observables`);
            the ring always gives its own (``names`` is ignored).

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

    @property
    def log_abs_det_jacobian(self) -> float:
        """log |det d(features)/d(x)| of :meth:`forward` (2D: -2 log scale): add it to a
        feature-space log density to get the density per unit area of the plane."""
        return -2.0 * float(np.log(self.scale))

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

    return ShowerPreprocessor.fit(
        train.energy, train.incident_energy, centroid_smear=cfg.centroid_features
    )


def model_context(kind: str, train: Any) -> np.ndarray | None:
    """Conditioning input: log incident energy when it varies across the training set."""
    if kind != "showers":
        return None
    e = np.asarray(train.incident_energy, np.float64)
    if np.ptp(e) <= 1e-6 * max(1.0, float(np.abs(e).max())):
        return None
    return np.log(e / np.median(e)).astype(np.float32)[:, None]


def incident_energies(kind: str, train: Any) -> np.ndarray | None:
    """Training incident energies (GeV) that generation resamples (None for the ring)."""
    return None if kind == "ring" else np.asarray(train.incident_energy, np.float32)


def encode_events(kind: str, feats: Any, events: Any) -> np.ndarray:
    """Events -> network features (N, D) float32: ring points, or showers (with their incident
    energies); the inverse of :func:`decode_events`."""
    if kind == "ring":
        return np.asarray(feats.forward(events), np.float32)
    return np.asarray(feats.forward(events.energy, events.incident_energy), np.float32)


def decode_events(kind: str, feats: Any, chunk: np.ndarray, e_inc: np.ndarray | None) -> Any:
    """Network features -> events: ring points, or showers at the given incident energies."""
    if kind == "ring":
        return feats.inverse(chunk)
    if e_inc is None:
        msg = "shower generation needs the incident energies of the training set"
        raise CalampError(msg)
    images = feats.inverse(chunk, e_inc)
    return ShowerSet(images, e_inc, source="generated")
