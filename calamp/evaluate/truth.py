"""The truth of ``calamp evaluate``: showers (file, array, simulator) or the binnings and
truth fractions of an earlier calamp run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from calamp.evaluate.errors import EvaluateError
from calamp.evaluate.readers import _check_images, _h5_datasets
from calamp.io import ShowerSet


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
