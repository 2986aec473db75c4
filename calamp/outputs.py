"""Write results: ``results.json`` (every number) and ``results.root`` (hist objects via uproot).

I/O only: the numbers come from :mod:`calamp.job`. ROOT layout, per observable ``OBS`` and
number of quantile bins ``N`` (directory ``OBS/qN``):

- ``truth`` — truth bin fractions (TH1D);
- ``posterior_net{k}`` — posterior mean of network k with the posterior std as its error
  (``Weight()`` storage keeps variances, so ROOT shows std as the bin error);
- ``draws_net{k}`` — the per-draw fractions as a 2D histogram (observable bin × draw index);
- ``amplification`` — per-bin amplification n'_j (mean over networks, TH1D).

One-dimensional observables use their bin edges (open outer edges closed at the truth's extreme
values); multi-dimensional grids (the ring's (r, φ)) use the flattened bin index, C order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hist
import numpy as np
import uproot

from calamp.atomic import write_json_atomic
from calamp.stats.arrays import jsonable

__all__ = ["root_records", "to_jsonable", "write_json", "write_root", "write_section"]


def to_jsonable(obj: Any) -> Any:
    """JSON types from numpy scalars/arrays, objects with ``to_dict``, mappings and paths.

    Non-finite floats become ``None`` (JSON has no NaN/inf); the conversion of arrays and
    numbers is :func:`calamp.stats.arrays.jsonable`, the one converter of the package.
    """
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return jsonable(obj)


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON atomically (temp file + rename)."""
    return write_json_atomic(path, to_jsonable(data))


def write_section(
    path: str | Path, begin: str, end: str, section: str, *, append: bool = False
) -> Path:
    """Replace the text from marker ``begin`` to marker ``end`` of a document with ``section``
    (which includes both markers): how the result documents keep sections generated from JSON.
    Without the markers: append the section if ``append``, else raise ``ValueError``."""
    path = Path(path)
    text = path.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    elif append:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    else:
        msg = f"{path}: the markers {begin!r} ... {end!r} are missing"
        raise ValueError(msg)
    path.write_text(text)
    return path


def _axis(edges: np.ndarray | None, n_bins: int, label: str) -> hist.axis.AxesMixin:
    if edges is None:
        return hist.axis.Regular(n_bins, 0, n_bins, name="bin", label=f"{label} bin index")
    return hist.axis.Variable(np.asarray(edges, dtype=float), name="x", label=label)


def write_root(path: str | Path, records: list[Mapping[str, Any]]) -> Path:
    """Write the histograms of every record to a new ROOT file at ``path`` (overwrites it).

    A record is a mapping with ``path`` ("OBS/qN"), ``edges`` ((B+1,) finite edges, or None for
    a flattened grid), ``label``, ``truth`` (B,), ``draws`` (K, s, B) fractions and
    ``amp_per_bin`` (B,) (see :func:`root_records`).

    The caller guarantees that overwriting is allowed (the results folder is fresh or
    ``--overwrite`` was given).
    """
    path = Path(path)
    with uproot.recreate(path) as f:
        for rec in records:
            draws = np.asarray(rec["draws"], dtype=float)  # (K, s, B)
            k_net, s, b = draws.shape
            ax = _axis(rec.get("edges"), b, rec.get("label", rec["path"]))
            h = hist.Hist(ax, storage=hist.storage.Double())
            h.view()[...] = np.asarray(rec["truth"], dtype=float)
            f[f"{rec['path']}/truth"] = h
            for k in range(k_net):
                hw = hist.Hist(ax, storage=hist.storage.Weight())
                view = hw.view()
                view.value = draws[k].mean(axis=0)
                view.variance = draws[k].var(axis=0, ddof=1)
                f[f"{rec['path']}/posterior_net{k}"] = hw
                h2 = hist.Hist(
                    ax,
                    hist.axis.Integer(0, s, name="draw", label="draw index"),
                    storage=hist.storage.Double(),
                )
                h2.view()[...] = draws[k].T
                f[f"{rec['path']}/draws_net{k}"] = h2
            ha = hist.Hist(ax, storage=hist.storage.Double())
            ha.view()[...] = np.nan_to_num(
                np.asarray(rec["amp_per_bin"], dtype=float), nan=0.0, posinf=0.0
            )
            f[f"{rec['path']}/amplification"] = ha
    return path


def root_records(
    results: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> list[dict[str, Any]]:
    """What :func:`write_root` writes, from ``results.json``'s dict and ``results.npz``'s arrays."""
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
