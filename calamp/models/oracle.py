"""The oracle ensemble: the Bayesian posterior of an ideal model, as a check of the statistics.

The ideal non-parametric model of a training set D_n is its empirical distribution; its
posterior (the Bayesian bootstrap) is represented by resamples of D_n. Oracle network k is
trained on its own independent truth sample D_n^k; its draw i is a resample of D_n^k of size n
with replacement, and generating g events from draw i resamples that again. Then

* the spread of the histograms over draws is multinomial of size n around ĥ(D_n^k), so the
  Bayesian amplification comes out at n'/n = 1 (after the generation-noise correction);
* ĥ(D_n^k) itself deviates from the truth like one more such sample, so the truth is
  exchangeable with the draws: the coverage curve lies on the diagonal (up to the s-draw factor
  (s-1)/(s+1), see :func:`calamp.stats.coverage`);
* the posterior mean ≈ ĥ(D_n^k), a truth sample of size n: the JSD closure gives n_eq ≈ n.

It implements the part of the :class:`~calamp.models.base.Generator` interface that generation
uses (``set_eval_weights``, ``sample``, ``sample_chunks``, ``config``), in numpy, so the oracle
goes through exactly the same pipeline code as the networks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["OracleGenerator", "IdentityFeatures"]


class OracleGenerator:
    """Bootstrap posterior of the empirical distribution of a training set.

    Args:
        events: (n, dim) training events in feature space.
        seed: base seed; draw i resamples with ``[seed, i]``.
    """

    kind = "oracle"

    def __init__(self, events: np.ndarray, *, seed: int = 0) -> None:
        self.events = np.asarray(events)
        if self.events.ndim != 2 or len(self.events) < 1:
            msg = f"`events` must have shape (n, dim) with n >= 1, got {self.events.shape}"
            raise ValueError(msg)
        self.seed = int(seed)
        self._draw: int | None = None
        self._resample: np.ndarray | None = None
        self.trainable_variables: list = []

    @property
    def n(self) -> int:
        """Training-set size."""
        return len(self.events)

    def config(self) -> dict[str, Any]:
        """JSON description (the training events themselves are not included)."""
        return {"kind": "oracle", "n": self.n, "dim": int(self.events.shape[1]), "seed": self.seed}

    def draw_weights(self, s: int) -> np.ndarray:
        """(s, 1) 'weight vectors' of s draws: the draw indices (exact in float32)."""
        return np.arange(s, dtype=np.float32)[:, None]

    def set_eval_weights(self, vec: Any) -> None:
        """Select draw ``int(vec[0])``: a resample of the training set of size n."""
        i = int(np.asarray(vec).reshape(-1)[0])
        if i != self._draw:
            rng = np.random.default_rng([self.seed, i])
            self._resample = rng.integers(0, self.n, self.n)
            self._draw = i

    def sample(self, n: int, c: Any = None, *, seed: Any) -> np.ndarray:
        """``n`` events drawn with replacement from the current draw's resample."""
        if self._resample is None:
            self.set_eval_weights([0])
        assert self._resample is not None
        rng = np.random.default_rng(np.asarray(seed, dtype=np.int64).ravel().tolist())
        return self.events[self._resample[rng.integers(0, self.n, int(n))]]

    def sample_chunks(
        self, n: int, c: Any = None, *, seed: Any, chunk_size: int = 100_000
    ) -> Iterator[np.ndarray]:
        """Yield ``n`` events in chunks of ``chunk_size``; generation block b (of
        :data:`~calamp.models.base.SEED_BLOCK` events) uses seed ``[seed, b]``, so the events
        do not depend on the chunk size."""
        from calamp.models.base import block_spans, rechunk

        base = int(np.asarray(seed).ravel()[0])
        blocks = (
            self.sample(b - a, seed=[base, k]) for k, (a, b) in enumerate(block_spans(n))
        )
        yield from rechunk(blocks, int(chunk_size))


class IdentityFeatures:
    """Feature map of the oracle: ring points unchanged, shower images flattened."""

    def __init__(self, shape: tuple[int, int] | None = None) -> None:
        self.shape = None if shape is None else tuple(int(v) for v in shape)

    def forward(self, x: Any, incident: Any = None) -> np.ndarray:
        arr = np.asarray(x, np.float32)
        return arr if self.shape is None else arr.reshape(len(arr), -1)

    def inverse(self, f: Any, incident: Any = None) -> np.ndarray:
        arr = np.asarray(f)
        return arr.astype(np.float64) if self.shape is None else arr.reshape(-1, *self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "identity", "shape": None if self.shape is None else list(self.shape)}
