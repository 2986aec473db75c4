"""Invertible shower preprocessing: calorimeter images (N, ny, nx) <-> network features (N, D).

Forward map (fitted on training data, then fixed):

1. ``E = sum(cells)`` per shower; feature 0 is ``u = log(E / E_ref)`` with ``E_ref`` the incident
   energy when given (conditional showers) or the mean training total otherwise.
2. Cell fractions ``f = cells / E`` (they sum to 1). Empty cells are dequantised: they get a
   uniform energy in ``[0, noise)`` GeV (``noise <= threshold``), i.e. ``f = U(0, noise) / E``, so
   the network never sees a delta peak at zero.
3. ``logit(alpha + (1 - 2 alpha) f)`` (``transform="logit"``) or ``log(f + alpha)`` (``"log"``).
4. Standardisation of all D = ny*nx + 1 features with the training mean and std.

Inverse map (physical images): undo 4 and 3, clip fractions to >= 0 and normalise them to sum
1, set cells whose energy
``f * E`` is below ``threshold`` to 0 (this removes the dequantisation noise), then rescale the
remaining cells so the image total equals ``E`` from feature 0. Images are non-negative and
their totals are exactly the generated total energy.

Round trip: ``inverse(forward(x)) == x`` up to float32 rounding for images whose non-zero cells
are all >= ``threshold``; non-zero cells below ``threshold`` come back as 0 (and the others are
rescaled to keep the total).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ShowerPreprocessor", "TRANSFORMS"]

TRANSFORMS = ("logit", "log")
_MIN_STD = 1e-6


def _as_images(images: Any) -> np.ndarray:
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim != 3:
        msg = f"`images` must have shape (N, ny, nx), got {arr.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(arr)):
        msg = "`images` contains NaN or inf"
        raise ValueError(msg)
    if np.any(arr < 0):
        msg = "`images` contains negative cell energies"
        raise ValueError(msg)
    return arr


def _as_incident(incident: Any, n: int) -> np.ndarray | None:
    if incident is None:
        return None
    arr = np.asarray(incident, dtype=np.float64).reshape(-1)
    if arr.size == 1 and n != 1:
        arr = np.full(n, float(arr[0]))
    if arr.shape != (n,):
        msg = f"`incident_energy` must have shape ({n},), got {arr.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(arr) & (arr > 0)):
        msg = "`incident_energy` must be positive and finite"
        raise ValueError(msg)
    return arr


@dataclass(frozen=True, eq=False)
class ShowerPreprocessor:
    """Fitted image <-> feature map; build it with :meth:`fit`, store it with :meth:`to_dict`.

    Attributes:
        shape: image shape (ny, nx).
        threshold: cell threshold in GeV; cells below it are 0 after :meth:`inverse`.
        noise: dequantisation noise of empty cells, uniform in [0, noise) GeV (noise <= threshold).
        alpha: regulariser of the log/logit transform.
        transform: ``"logit"`` or ``"log"``.
        conditional: feature 0 relative to the incident energy (True) or to ``e_ref`` (False).
        e_ref: reference energy in GeV (mean training total when not conditional).
        mean, std: (D,) standardisation constants, D = ny*nx + 1 (+ 2 with centroid features).
        centroid_smear: > 0 appends the shower's energy-weighted centroid (x, y, in cells from
            the image centre) as two features, smeared by a Gaussian of this width (cells) so
            the joint density is not degenerate; :meth:`inverse` drops them. They give the
            flow the shower position as explicit coordinates. Measured on the 8x128 coupling
            flow with the standardised variant of analysis/generator_curves.py (smearing in
            units of the centroid's spread), the gain in the centroid's A_true is within the
            seed-to-seed scatter (analysis/results/generator_curves.json); this option itself
            (cells) has no learning curve yet. 0 (default): no centroid features.
    """

    shape: tuple[int, int]
    threshold: float
    noise: float
    alpha: float
    transform: str
    conditional: bool
    e_ref: float
    mean: np.ndarray = field(repr=False)
    std: np.ndarray = field(repr=False)
    centroid_smear: float = 0.0

    @property
    def n_features(self) -> int:
        """D = ny*nx + 1, + 2 with centroid features."""
        return self.shape[0] * self.shape[1] + 1 + (2 if self.centroid_smear > 0 else 0)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        images: Any,
        incident_energy: Any = None,
        *,
        threshold: float = 1e-4,
        noise: float | None = None,
        alpha: float = 1e-6,
        transform: str = "logit",
        seed: int = 0,
        centroid_smear: float = 0.0,
    ) -> ShowerPreprocessor:
        """Fit the standardisation on training showers.

        Args:
            images: (N, ny, nx) cell energies in GeV (non-negative, total > 0).
            incident_energy: (N,) GeV, or ``None`` for unconditional showers.
            threshold: cell threshold in GeV (> 0).
            noise: dequantisation width in GeV, default ``threshold / 2``; must be <= threshold.
            alpha: log/logit regulariser in (0, 0.5).
            transform: ``"logit"`` or ``"log"``.
            seed: seed of the dequantisation noise used while fitting.
            centroid_smear: width (cells) of the smeared centroid features; 0: none.
        """
        if not (math.isfinite(centroid_smear) and centroid_smear >= 0):
            msg = f"`centroid_smear` must be >= 0 cells, got {centroid_smear}"
            raise ValueError(msg)
        if not threshold > 0:
            msg = f"`threshold` must be positive (GeV), got {threshold}"
            raise ValueError(msg)
        noise = threshold / 2 if noise is None else float(noise)
        if not 0 <= noise <= threshold:
            msg = f"`noise` must be in [0, threshold={threshold}] GeV, got {noise}"
            raise ValueError(msg)
        if not 0 < alpha < 0.5:
            msg = f"`alpha` must be in (0, 0.5), got {alpha}"
            raise ValueError(msg)
        if transform not in TRANSFORMS:
            msg = f"`transform` must be one of {TRANSFORMS}, got {transform!r}"
            raise ValueError(msg)
        arr = _as_images(images)
        inc = _as_incident(incident_energy, arr.shape[0])
        totals = arr.sum(axis=(1, 2))
        if np.any(totals <= 0):
            msg = "`images` contains showers with zero total energy"
            raise ValueError(msg)
        e_ref = 1.0 if inc is not None else float(totals.mean())
        d = arr.shape[1] * arr.shape[2] + 1 + (2 if centroid_smear > 0 else 0)
        proto = cls(
            shape=(int(arr.shape[1]), int(arr.shape[2])),
            threshold=float(threshold),
            noise=noise,
            alpha=float(alpha),
            transform=transform,
            conditional=inc is not None,
            e_ref=e_ref,
            mean=np.zeros(d),
            std=np.ones(d),
            centroid_smear=float(centroid_smear),
        )
        raw = proto._raw_features(arr, inc, seed)
        mean = raw.mean(axis=0)
        std = np.maximum(raw.std(axis=0), _MIN_STD)
        return cls(**{**proto._fields(), "mean": mean, "std": std})

    def _fields(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "threshold": self.threshold,
            "noise": self.noise,
            "alpha": self.alpha,
            "transform": self.transform,
            "conditional": self.conditional,
            "e_ref": self.e_ref,
            "mean": self.mean,
            "std": self.std,
            "centroid_smear": self.centroid_smear,
        }

    # -- maps --------------------------------------------------------------------------------
    def _reference(self, inc: np.ndarray | None, n: int) -> np.ndarray:
        if self.conditional:
            if inc is None:
                msg = "`incident_energy` is required: the preprocessor was fitted conditionally"
                raise ValueError(msg)
            return inc
        if inc is not None:
            msg = "`incident_energy` given but the preprocessor was fitted without it"
            raise ValueError(msg)
        return np.full(n, self.e_ref)

    def _raw_features(self, arr: np.ndarray, inc: np.ndarray | None, seed: int) -> np.ndarray:
        n = arr.shape[0]
        ref = self._reference(inc, n)
        flat = arr.reshape(n, -1)
        totals = flat.sum(axis=1)
        if np.any(totals <= 0):
            msg = "`images` contains showers with zero total energy"
            raise ValueError(msg)
        rng = np.random.default_rng(seed)
        flat = np.where(flat > 0, flat, rng.uniform(0.0, self.noise, flat.shape))
        frac = flat / totals[:, None]
        if self.transform == "logit":
            p = self.alpha + (1.0 - 2.0 * self.alpha) * frac
            cells = np.log(p) - np.log1p(-p)
        else:
            cells = np.log(frac + self.alpha)
        parts = [np.log(totals / ref)[:, None], cells]
        if self.centroid_smear > 0:  # (x, y) centroid in cells from the centre, smeared
            ny, nx = self.shape
            img = frac.reshape(n, ny, nx)
            xc = img.sum(axis=1) @ (np.arange(nx) - (nx - 1) / 2)
            yc = img.sum(axis=2) @ (np.arange(ny) - (ny - 1) / 2)
            smear = np.random.default_rng([seed, 1]).standard_normal((n, 2))
            parts.append(np.stack([xc, yc], axis=1) + self.centroid_smear * smear)
        return np.concatenate(parts, axis=1)

    def forward(self, images: Any, incident_energy: Any = None, *, seed: int = 0) -> np.ndarray:
        """Images (N, ny, nx) GeV -> standardised features (N, D) float32.

        ``seed`` seeds the dequantisation noise of empty cells.
        """
        arr = _as_images(images)
        if arr.shape[1:] != self.shape:
            msg = f"`images` must have shape (N, {self.shape[0]}, {self.shape[1]}), got {arr.shape}"
            raise ValueError(msg)
        inc = _as_incident(incident_energy, arr.shape[0])
        raw = self._raw_features(arr, inc, seed)
        return ((raw - self.mean) / self.std).astype(np.float32)

    def inverse(self, features: Any, incident_energy: Any = None) -> np.ndarray:
        """Features (N, D) -> physical images (N, ny, nx) float32 in GeV.

        Cells are non-negative, cells below ``threshold`` are 0, and each image sums to the
        total energy encoded in feature 0 (0 if no cell passes the threshold).
        """
        feat = np.asarray(features, dtype=np.float64)
        if feat.ndim != 2 or feat.shape[1] != self.n_features:
            msg = f"`features` must have shape (N, {self.n_features}), got {feat.shape}"
            raise ValueError(msg)
        n = feat.shape[0]
        ref = self._reference(_as_incident(incident_energy, n), n)
        raw = feat * self.std + self.mean
        log_ratio = np.clip(raw[:, 0], -700.0, 700.0)
        totals = ref * np.exp(log_ratio)
        cells = raw[:, 1 : 1 + self.shape[0] * self.shape[1]]  # centroid features dropped
        if self.transform == "logit":
            p = 0.5 * (1.0 + np.tanh(0.5 * cells))  # overflow-free sigmoid
            frac = (p - self.alpha) / (1.0 - 2.0 * self.alpha)
        else:
            frac = np.exp(np.minimum(cells, 700.0)) - self.alpha
        frac = np.clip(frac, 0.0, None)
        fsum = frac.sum(axis=1, keepdims=True)
        frac = np.divide(frac, fsum, out=np.zeros_like(frac), where=fsum > 0)
        # after normalising to 1 the rescale below is >= 1: kept cells stay above threshold
        energy = frac * totals[:, None]
        energy = np.where(energy >= self.threshold, energy, 0.0)
        kept = energy.sum(axis=1)
        scale = np.divide(totals, kept, out=np.zeros_like(totals), where=kept > 0)
        energy = energy * scale[:, None]
        return energy.reshape(n, *self.shape).astype(np.float32)

    def context(self, incident_energy: Any) -> np.ndarray:
        """Conditioning input (N, 1) float32: log(E_inc / 1 GeV) for conditional models."""
        inc = _as_incident(incident_energy, np.asarray(incident_energy).size)
        assert inc is not None
        return np.log(inc)[:, None].astype(np.float32)

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict; :meth:`from_dict` restores an identical preprocessor."""
        out = self._fields()
        out["shape"] = list(self.shape)
        out["mean"] = [float(v) for v in self.mean]
        out["std"] = [float(v) for v in self.std]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShowerPreprocessor:
        """Inverse of :meth:`to_dict`."""
        required = {
            "shape",
            "threshold",
            "noise",
            "alpha",
            "transform",
            "conditional",
            "e_ref",
            "mean",
            "std",
        }
        missing = sorted(required - set(d))
        if missing:
            msg = f"preprocessor dict is missing keys {missing}"
            raise ValueError(msg)
        shape = tuple(int(v) for v in d["shape"])
        mean = np.asarray(d["mean"], dtype=np.float64)
        std = np.asarray(d["std"], dtype=np.float64)
        smear = float(d.get("centroid_smear", 0.0))  # absent in stores before the option
        d_expected = shape[0] * shape[1] + 1 + (2 if smear > 0 else 0)
        if mean.shape != (d_expected,) or std.shape != (d_expected,):
            msg = f"`mean`/`std` must have {d_expected} entries for shape {shape}"
            raise ValueError(msg)
        if d["transform"] not in TRANSFORMS or not math.isfinite(float(d["e_ref"])):
            msg = f"invalid preprocessor dict: transform={d['transform']!r}, e_ref={d['e_ref']!r}"
            raise ValueError(msg)
        return cls(
            shape=(shape[0], shape[1]),
            threshold=float(d["threshold"]),
            noise=float(d["noise"]),
            alpha=float(d["alpha"]),
            transform=str(d["transform"]),
            conditional=bool(d["conditional"]),
            e_ref=float(d["e_ref"]),
            mean=mean,
            std=std,
            centroid_smear=smear,
        )
