"""The results folder of a job: it owns its files, is locked while a run uses it, and remembers
which input it was made from (pure Python file handling; no numerics).

* ``.calamp-results`` marks a folder calamp made; ``--overwrite`` deletes only the entries
  calamp writes (:data:`OWNED`), never a file it did not write, and refuses when the input lies
  inside the folder.
* ``.calamp-lock`` (created exclusively, holding host and pid) keeps a second run out while one
  is running; a lock whose process is gone (same host) is stale and taken over.
* ``input.json`` holds the input's fingerprint (resolved path, size, SHA-256 of its first and
  last MiB, tree/branch options); ``--resume`` refuses a different input.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from calamp.io import OutputExistsError

__all__ = ["MARKER", "OWNED", "ResultsFolder", "input_fingerprint"]

MARKER = ".calamp-results"
LOCK = ".calamp-lock"
OWNED = (
    MARKER,
    "config.json",
    "input.json",
    "results.json",
    "results.root",
    "results.npz",
    "samples.root",
    "draws",
    "partial",
    "checkpoints",
    "figures",
)
"""Entries of a results folder that calamp writes (and ``--overwrite`` may delete)."""
_MIB = 1 << 20


def input_fingerprint(path: str | Path | None, options: dict[str, Any]) -> dict[str, Any]:
    """What identifies an input: resolved path, size, SHA-256 of the first and last MiB, and
    the options that choose what is read from it (tree, branches). ``path=None`` (a toy or an
    in-memory ShowerSet) is identified by the options alone."""
    if path is None:
        return {"path": None, **options}
    p = Path(path).resolve()
    size = p.stat().st_size
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        h.update(fh.read(_MIB))
        if size > _MIB:
            fh.seek(max(_MIB, size - _MIB))
            h.update(fh.read(_MIB))
    return {"path": str(p), "size": size, "sha256_head_tail": h.hexdigest(), **options}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ResultsFolder:
    """A results folder opened for one run (use as a context manager: the lock is released).

    Args:
        path: the folder (``--out``).
        config: the job's configuration (``config.json``; compared on resume).
        fingerprint: the input's :func:`input_fingerprint` (compared on resume).
        overwrite: replace calamp's files of an earlier run.
        resume: continue the run in the folder (same options and input).
        protect: files the run reads (the input): never deleted, and ``--overwrite`` refuses
            when one lies inside the folder.
        ignore: options that may differ on resume (progress bars, plots, scheduler).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        config: dict[str, Any],
        fingerprint: dict[str, Any],
        overwrite: bool = False,
        resume: bool = False,
        protect: tuple[str | Path, ...] = (),
        ignore: frozenset[str] = frozenset({"progress", "plots", "scheduler"}),
    ) -> None:
        self.path = Path(path)
        self._config = json.loads(json.dumps(config))
        self._fingerprint = json.loads(json.dumps(fingerprint))
        self._overwrite, self._resume = bool(overwrite), bool(resume)
        self._protect = tuple(Path(p).resolve() for p in protect)
        self._ignore = ignore
        self._locked = False

    # -- opening --------------------------------------------------------------------------
    def __enter__(self) -> ResultsFolder:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Check, lock and prepare the folder (nothing is deleted before every check passed)."""
        out = self.path
        if out.exists() and not out.is_dir():
            msg = f"--out {out} is a file, not a folder: choose a folder name"
            raise OutputExistsError(msg)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            msg = f"--out {out}: cannot create the folder ({err.strerror or err})"
            raise OutputExistsError(msg) from None
        self._lock()
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        lock = self.path / LOCK
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    other = json.loads(lock.read_text() or "{}")
                except (OSError, ValueError):
                    other = {}
                same_host = other.get("host") == me["host"]
                if same_host and isinstance(other.get("pid"), int) and not _alive(other["pid"]):
                    lock.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                who = f"pid {other.get('pid')} on {other.get('host')}" if other else "another run"
                msg = (
                    f"--out {self.path} is in use by another calamp run ({who}); wait for it, "
                    f"or remove {lock} if that run is gone"
                )
                raise OutputExistsError(msg) from None
            except OSError as err:
                msg = f"--out {self.path}: cannot write there ({err.strerror or err})"
                raise OutputExistsError(msg) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self._locked = True
            return

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._locked:
            (self.path / LOCK).unlink(missing_ok=True)
            self._locked = False

    def _entries(self) -> list[Path]:
        return [p for p in self.path.iterdir() if p.name != LOCK]

    def _prepare(self) -> None:
        out = self.path
        entries = self._entries()
        if entries and self._resume:
            self._check_resume()
            return
        if entries:
            if not self._overwrite:
                msg = (
                    f"output folder {out} exists; pass --overwrite to replace it, --resume to "
                    "continue it, or choose another --out"
                )
                raise OutputExistsError(msg)
            if not (out / MARKER).exists():
                msg = (
                    f"--overwrite: {out} was not made by calamp (no {MARKER} file); "
                    "refusing to delete it"
                )
                raise OutputExistsError(msg)
            inside = [p for p in self._protect if out.resolve() in p.parents]
            if inside:
                msg = (
                    f"--overwrite: the input {inside[0]} lies inside the output folder {out}; "
                    "refusing (move the input or choose another --out)"
                )
                raise OutputExistsError(msg)
            for entry in entries:
                if entry.name in OWNED:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
        from calamp.outputs import write_json

        (out / MARKER).write_text("calamp results folder\n")
        write_json(out / "config.json", self._config)
        write_json(out / "input.json", self._fingerprint)

    def _check_resume(self) -> None:
        out = self.path
        cfg_file = out / "config.json"
        if not cfg_file.exists():
            msg = f"--resume: {out} holds no calamp run (no config.json)"
            raise OutputExistsError(msg)
        old = json.loads(cfg_file.read_text())
        diff = sorted(
            k for k in self._config if k not in self._ignore and old.get(k) != self._config[k]
        )
        if diff:
            msg = (
                f"--resume: options differ from the run in {out}: {', '.join(diff)}; "
                "use the same options or a new --out"
            )
            raise OutputExistsError(msg)
        fp_file = out / "input.json"
        old_fp = json.loads(fp_file.read_text()) if fp_file.exists() else None
        if old_fp != self._fingerprint:
            was = "an unrecorded input" if old_fp is None else old_fp.get("path")
            msg = (
                f"--resume: {out} was made from {was}, not from this input "
                f"({self._fingerprint.get('path')}, or it changed since); use the same input "
                "or a new --out"
            )
            raise OutputExistsError(msg)
