"""Writing an evaluation into its results folder: ``results.npz``, ``results.root``,
``results.json`` and the figures, under the folder's lock and ``--overwrite`` rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _write(
    results: dict[str, Any],
    arrays: dict[str, np.ndarray],
    out: Path,
    *,
    overwrite: bool,
    plots: bool,
    protect: tuple,
) -> None:
    from calamp.folder import ResultsFolder, input_fingerprint
    from calamp.outputs import root_records, write_json, write_root

    first = protect[0] if protect and Path(protect[0]).is_file() else None
    with ResultsFolder(
        out,
        config=results["config"],
        fingerprint=input_fingerprint(first, {"evaluate": True}),
        overwrite=overwrite,
        protect=protect,
    ):
        np.savez_compressed(out / "results.npz", **arrays)
        write_root(out / "results.root", root_records(results, arrays))
        write_json(out / "results.json", results)
        if plots:
            from calamp.report import make_figures

            results["figures"] = [
                str(p.relative_to(out)) for p in make_figures(results, arrays, out / "figures")
            ]
            write_json(out / "results.json", results)
