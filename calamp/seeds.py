"""Seeds: one integer expands into independent streams per purpose, network and draw.

``derive_seed(seed, purpose, k, i)`` uses :class:`numpy.random.SeedSequence`, so network k and
draw i are reproducible anywhere (after ``--resume``, in another process, on a dask worker).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PURPOSES", "derive_seed"]

PURPOSES = {
    "truth": 1,
    "train_data": 2,
    "init": 3,
    "fit": 4,
    "draw": 5,
    "generate": 6,
    "sampler": 7,
    "context": 8,
    "samples": 9,
    "bootstrap": 10,
    "closure": 11,
    "split": 12,
    "coverage": 13,
}


def derive_seed(master: int, purpose: str, *indices: int) -> int:
    """Independent 31-bit integer seed for (master seed, purpose, network, draw, ...)."""
    ss = np.random.SeedSequence([int(master), PURPOSES[purpose], *map(int, indices)])
    return int(ss.generate_state(1, np.uint32)[0] >> 1)
