"""Pure statistics of Bayesian amplification and calibration (numpy/scipy only).

Inputs are normalised histogram values ĥ_j(G^(i)) with shape (s, B) for one network or
(K, s, B) for K independent networks (draws i = 1..s, bins j = 1..B), following
S. Bieringer et al., arXiv:2408.00838, with the corrections of DESIGN.md that make every
estimate unbiased for an ideal posterior:

* :mod:`calamp.stats.amplification` — n' (headline) and the paper's form;
* :mod:`calamp.stats.coverage` — credible sets, calibration curves, MAD and its floor;
* :mod:`calamp.stats.closure` — JSD, exact E[JSD](n), n_eq and the closure verdict.
"""

from __future__ import annotations

from calamp.stats.amplification import AmplificationResult, amplification, invert_precision
from calamp.stats.closure import (
    ClosureResult,
    EquivalentSampleSize,
    closure,
    equivalent_sample_size,
    expected_jsd,
    jsd,
    verdict,
)
from calamp.stats.coverage import (
    REFERENCE_LEVELS,
    BootstrapResult,
    CoverageResult,
    bootstrap_coverage,
    coverage,
    critical_level,
    denoise_draws,
    mad_floor,
)

__all__ = [
    "REFERENCE_LEVELS",
    "AmplificationResult",
    "BootstrapResult",
    "ClosureResult",
    "CoverageResult",
    "EquivalentSampleSize",
    "amplification",
    "bootstrap_coverage",
    "closure",
    "coverage",
    "critical_level",
    "denoise_draws",
    "equivalent_sample_size",
    "expected_jsd",
    "invert_precision",
    "jsd",
    "mad_floor",
    "verdict",
]
