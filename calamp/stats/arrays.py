"""Shared input checks and JSON conversion of the statistics modules (numpy only)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "as_ksb",
    "check_generated",
    "check_n_truth",
    "check_truth",
    "jsonable",
    "squeeze_k",
]


def as_ksb(values: np.ndarray, name: str = "values") -> tuple[np.ndarray, bool]:
    """(s, B) or (K, s, B) -> (K, s, B) float64 and whether the K axis was added."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2:
        arr, squeeze = arr[None], True
    elif arr.ndim == 3:
        squeeze = False
    else:
        msg = f"`{name}` must have shape (s, B) or (K, s, B), got {np.shape(values)}"
        raise ValueError(msg)
    if arr.shape[1] < 2:
        msg = f"`{name}` needs at least 2 draws (axis -2), got shape {arr.shape}"
        raise ValueError(msg)
    if arr.shape[2] < 1:
        msg = f"`{name}` needs at least one bin (axis -1), got shape {arr.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(arr)):
        msg = f"`{name}` contains NaN or inf (unfilled draws?)"
        raise ValueError(msg)
    return arr, squeeze


def squeeze_k(x: Any, squeeze: bool) -> Any:
    """Drop the leading network axis; 0-d results become Python floats."""
    if not squeeze:
        return x
    x = np.asarray(x)[0]
    return x.item() if np.ndim(x) == 0 else x


def check_generated(n_generated: Any, k: int, s: int) -> np.ndarray | None:
    """Events per draw g as a (K, s) float array (scalar, (s,) or (K, s) input), or None.

    Every draw needs g >= 2 for the unbiased noise estimate ĥ(1 - ĥ)/(g - 1).
    """
    if n_generated is None:
        return None
    g = np.asarray(n_generated, dtype=np.float64)
    try:
        g = np.broadcast_to(g, (k, s)).copy()
    except ValueError:
        msg = f"`n_generated` must be a scalar, (s,) or (K, s) = ({k}, {s}), got {g.shape}"
        raise ValueError(msg) from None
    if not np.all(g >= 2):
        msg = f"`n_generated` must be >= 2 events per draw, got min {float(np.min(g))}"
        raise ValueError(msg)
    return g


def check_truth(truth: np.ndarray, n_bins: int) -> np.ndarray:
    """(B,) finite truth values."""
    t = np.asarray(truth, dtype=np.float64)
    if t.shape != (n_bins,):
        msg = f"`truth` must have shape ({n_bins},) to match the bins of `values`, got {t.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(t)):
        msg = "`truth` must be finite"
        raise ValueError(msg)
    return t


def check_n_truth(n_truth: float | None) -> float | None:
    """Size N of a finite truth sample (None: exact truth)."""
    if n_truth is None or math.isinf(n_truth):
        return None
    if not n_truth > 0:
        msg = f"`n_truth` must be > 0 events (or None for an exact truth), got {n_truth}"
        raise ValueError(msg)
    return float(n_truth)


def jsonable(obj: Any) -> Any:
    """Arrays -> lists, NaN/inf -> None, numpy scalars -> Python scalars (recursively)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
