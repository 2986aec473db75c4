"""Result documents of the studies, generated from their summary JSON (no number typed by hand).

``python analysis/ring_study.py document`` and ``python analysis/calo_study.py document`` (and
their ``report`` step) write ``analysis/RING_RESULTS.md`` and ``analysis/CALO_RESULTS.md`` with
these functions; ``tests/test_docs.py`` checks that every number in the committed documents is
in the committed JSON. The prose here carries no figures: whatever it says with a number, the
number comes from the JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def num(v: Any) -> str:
    """A JSON number as the documents print it (3 significant digits; integers >= 1000 whole,
    tiny numbers in 4-digit exponent form, so the document test can match them)."""
    if v is None or isinstance(v, bool):
        return "n/a"
    v = float(v)
    if not math.isfinite(v):
        return "inf" if v > 0 else "n/a"
    a = abs(v)
    if a >= 999.5 or (a >= 1 and v == int(v)):
        return f"{v:.0f}"
    if a >= 1e-4 or a == 0:
        return f"{v:.3g}"
    return f"{v:.4e}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def relative(paths: Iterable[str]) -> list[str]:
    """Figure paths relative to the analysis folder (as stored: absolute or relative)."""
    out = []
    for p in paths:
        path = Path(p)
        try:
            out.append(str(path.relative_to(HERE)))
        except ValueError:
            out.append(str(path).split("/analysis/", 1)[-1])
    return out


def settings_table(settings: Mapping[str, Any]) -> list[str]:
    """The budget's settings as a two-column table."""
    def cell(v: Any) -> str:
        if isinstance(v, list):
            return ", ".join(cell(x) for x in v)
        return num(v) if isinstance(v, int | float) and not isinstance(v, bool) else str(v)

    return table(("setting", "value"), ((f"`{k}`", cell(v)) for k, v in settings.items()))


def write(path: Path, text: str) -> Path:
    path.write_text(text.rstrip("\n") + "\n")
    return path
