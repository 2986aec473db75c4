"""The errors calamp raises on purpose, and the helpers that write their one-line messages.

Every problem with an input is an :class:`InputError` subclass whose one-line message names the
file and, where they apply, the tree, the branch and the entry number (counted from the start of
the tree). All calamp errors derive from :class:`CalampError`; the command lines map it to exit
code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CalampError(Exception):
    """Base class of all errors calamp raises on purpose (command lines exit with code 2)."""


class InputError(CalampError):
    """An input file cannot be used; the message names file, tree, branch and entry."""


class MissingFileError(InputError):
    """The input file does not exist."""


class NotRootError(InputError):
    """The input is not a ROOT file."""


class CorruptFileError(InputError):
    """The ROOT file is truncated or cannot be decoded."""


class TreeError(InputError):
    """No suitable tree / RNTuple, several candidates, or the named one is missing."""


class EmptyTreeError(TreeError):
    """The tree (or the requested entry range) has no entries."""


class BranchError(InputError):
    """A branch is missing or has the wrong type or shape."""


class BadValueError(InputError):
    """A value is NaN/inf, negative, or an index is out of range."""


class OutputExistsError(CalampError):
    """An output file exists and ``overwrite`` was not given."""


def _where(path: str, tree: str | None = None, branch: str | None = None, entry=None) -> str:
    parts = [f"file '{path}'"]
    if tree is not None:
        parts.append(f"tree '{tree}'")
    if branch is not None:
        parts.append(f"branch '{branch}'")
    if entry is not None:
        parts.append(f"entry {entry}")
    return ", ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _describe(err: BaseException, limit: int = 160) -> str:
    text = _one_line(err)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}"


def _closest(name: str, available: Iterable[str]) -> str:
    avail = sorted(set(available))
    if not avail:
        return "none"
    ranked = sorted(
        avail, key=lambda a: -difflib.SequenceMatcher(None, name.lower(), a.lower()).ratio()
    )
    return ", ".join(f"'{a}'" for a in ranked)
