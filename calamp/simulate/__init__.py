"""Truth samples: a parametric photon-shower simulator and the ring toy (numpy only).

The shower simulator follows the GFlash parametrisation of Grindhammer & Peters
(hep-ex/0001020) for a homogeneous medium, as summarised in ``PHYSICS.md`` section 4. Every
public name is importable from here; they live in

* :mod:`~calamp.simulate.config`: the calorimeter (:class:`CaloConfig`) and the parameter
  records (:class:`LongitudinalParameters`, :class:`ShowerParameters`);
* :mod:`~calamp.simulate.parametrisation`: the GFlash formulas
  (:func:`longitudinal_parameters`, the lateral profile);
* :mod:`~calamp.simulate.expectation`: the same model integrated by quadrature
  (:func:`longitudinal_mean_max`, :func:`mean_deposit_depth`, :func:`mean_image`);
* :mod:`~calamp.simulate.sampling`: the Monte Carlo in seeded blocks (:func:`photon_showers`,
  :func:`iter_photon_showers`, :func:`sample_shower_parameters`, ``BLOCK_SIZE``);
* :mod:`~calamp.simulate.ring`: the 2D ring toy and its exact density;
* here: :func:`provenance` of a simulated sample and :func:`main`, the command line
  ``python -m calamp.simulate`` (whose parser and writing are :mod:`calamp.cli`'s).
"""

from __future__ import annotations

from collections.abc import Sequence

from calamp.simulate.config import CaloConfig, LongitudinalParameters, ShowerParameters
from calamp.simulate.expectation import longitudinal_mean_max, mean_deposit_depth, mean_image
from calamp.simulate.parametrisation import longitudinal_parameters
from calamp.simulate.ring import ring, ring_log_prob, ring_radius_cdf, ring_radius_pdf
from calamp.simulate.sampling import (
    BLOCK_SIZE,
    iter_photon_showers,
    photon_showers,
    sample_shower_parameters,
)

__all__ = [
    "BLOCK_SIZE",
    "CaloConfig",
    "LongitudinalParameters",
    "ShowerParameters",
    "iter_photon_showers",
    "longitudinal_mean_max",
    "longitudinal_parameters",
    "main",
    "mean_deposit_depth",
    "mean_image",
    "photon_showers",
    "provenance",
    "ring",
    "ring_log_prob",
    "ring_radius_cdf",
    "ring_radius_pdf",
    "sample_shower_parameters",
]


# ----------------------------------------------------------------------------------------------
# Provenance and the command line (whose parser is calamp.cli's)
# ----------------------------------------------------------------------------------------------


def provenance(
    energy: float, seed: int | None, n: int, config: CaloConfig | None = None
) -> dict[str, object]:
    """JSON record of a simulated sample (stored in its ROOT file by ``write_showers``)."""
    from dataclasses import asdict

    from calamp import __version__

    return {
        "generator": "calamp.simulate.photon_showers",
        "calamp_version": __version__,
        "energy": float(energy),
        "seed": seed,
        "n": int(n),
        "config": asdict(config or CaloConfig()),
    }


def main(argv: Sequence[str] | None = None, *, prog: str = "calamp simulate") -> int:
    """Command line: ``calamp simulate --n N --out file.root [options]`` (= ``python -m
    calamp.simulate``); the parser and the writing are :mod:`calamp.cli`'s.

    Returns:
        0 on success, 2 on bad options or a refused output (one line on stderr).
    """
    from calamp.cli import main as calamp_main

    return calamp_main(argv, prog=prog, command="simulate")
