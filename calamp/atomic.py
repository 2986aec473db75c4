"""The one way calamp replaces a file: write a temporary file next to it, then rename.

A reader (or a run killed half-way) sees the old file or the new one, never a truncated one;
a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_json_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path in ``path``'s folder; on success it replaces ``path``.

    Args:
        path: the file to (re)place; its folder is created if missing.
        fsync: flush the temporary file to disk before the rename (for data that must survive
            a power cut, e.g. posterior draws).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: int | None = 1) -> Path:
    """Write JSON-ready ``data`` (no NaN/inf) to ``path`` atomically; returns the path."""
    text = json.dumps(data, indent=indent, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
