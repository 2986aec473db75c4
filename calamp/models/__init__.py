"""Generators g(z, c; theta): normalizing flows, flow-matching CNF and GAN.

All share the :class:`~calamp.models.base.Generator` interface and are registered in
:data:`~calamp.models.base.GENERATORS`, so ``build_generator(model.config())`` rebuilds any of
them. Importing this package imports TensorFlow.
"""

from __future__ import annotations

from calamp.models.base import (
    GENERATORS,
    Generator,
    TrainingError,
    build_generator,
    register_generator,
    stateless_seed,
)
from calamp.models.cnf import FlowMatchingCNF
from calamp.models.flows import CouplingFlow, MAFlow
from calamp.models.gan import ShowerGAN

__all__ = [
    "GENERATORS",
    "CouplingFlow",
    "FlowMatchingCNF",
    "Generator",
    "MAFlow",
    "ShowerGAN",
    "TrainingError",
    "build_generator",
    "register_generator",
    "stateless_seed",
]
