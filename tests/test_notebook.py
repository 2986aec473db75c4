"""The physics-analysis notebook runs top to bottom (small preset), so it cannot rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_calomplify_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("CALAMP_DATA", str(ROOT / "data" / "shower.root"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "notebooks" / "calomplify.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "n' = " in outputs and "JSD closure" in outputs and "verdict" in outputs
    assert "evaluate e_total/q5: n' = " in outputs
    assert (tmp_path / "calomplify_notebook.root").is_file()
