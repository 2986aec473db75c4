"""The error contract every calamp command line shares: our own errors are one line on stderr
and exit code 2, Ctrl-C is exit 130 with a hint, anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["guarded"]


def guarded(body: Callable[[], Any], *, on_interrupt: str = "interrupted") -> int:
    """Run ``body()`` and return the process exit code (0, 2 or 130).

    ``ConfigError`` (bad option) and ``CalampError`` (bad input, refused action) print
    ``calamp: error: <message>`` and give 2; ``KeyboardInterrupt`` prints
    ``calamp: <on_interrupt>`` and gives 130.
    """
    try:
        body()
    except KeyboardInterrupt:
        print(f"calamp: {on_interrupt}", file=sys.stderr)
        return 130
    except Exception as err:
        from calamp.config import ConfigError
        from calamp.io import CalampError

        if isinstance(err, ConfigError | CalampError):
            print(f"calamp: error: {err}", file=sys.stderr)
            return 2
        raise
    return 0
