"""Numbers in the README's main-job section come from the JSON the job wrote."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _numbers(obj) -> list[float]:
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _numbers(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _numbers(x)]
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        return []
    return [float(obj)]


def test_readme_main_job_numbers_are_in_the_json() -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- main-job:begin", 1)[1].split("<!-- main-job:end -->", 1)[0]
    block = block.split("-->", 1)[1]  # drop the marker's own comment
    block = re.sub(r"\(docs/[^)]*\)|`[^`]*`", "", block)  # figure paths, code spans
    values = _numbers(json.loads((ROOT / "docs" / "main_job.json").read_text()))
    missing = []
    for token in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", block):
        decimals = len(token.split(".")[1]) if "." in token else 0
        if not any(round(v, decimals) == float(token) for v in values):
            missing.append(token)
    assert not missing, f"README numbers not in docs/main_job.json: {missing}"
