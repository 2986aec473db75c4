"""The one error of ``calamp evaluate``."""

from __future__ import annotations

from calamp.io import CalampError

__all__ = ["EvaluateError"]


class EvaluateError(CalampError):
    """Bad per-draw samples or options; the message names the file, dataset or option."""
