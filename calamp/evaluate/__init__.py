"""Evaluate any Bayesian generator from its per-draw samples: ``calamp evaluate``.

A generator built elsewhere (PyTorch, JAX, Keras; VI, ensembles, SG-MCMC) enters at the
boundary of DESIGN.md: for every network k and posterior draw i a sample of generated showers.
From them calamp fills per-draw histograms of the shower observables, binned in quantiles of
the truth, and computes the same amplification, coverage and closure as the main job, writing
the same outputs (``results.json`` with the schema of :mod:`calamp.schema`, ``results.root``,
``results.npz``, figures).

The pieces:

* :mod:`~calamp.evaluate.readers`: per-draw samples from ROOT, CaloChallenge HDF5 or Python
  (:func:`iterate_samples`), each item ``(k, i, images, incident)``;
* :mod:`~calamp.evaluate.truth`: the truth showers (file, array, ``"simulator"``) or the
  binnings and truth fractions of an earlier calamp run;
* :mod:`~calamp.evaluate.core`: :func:`evaluate`, the histograms and statistics;
* :mod:`~calamp.evaluate.writing`: the results folder (JSON, ROOT, npz, figures);
* :mod:`~calamp.evaluate.command`: the command line (:func:`add_arguments`,
  :func:`run_command`, :func:`main`; the parser is :mod:`calamp.cli`'s);
* :mod:`~calamp.evaluate.errors`: :class:`EvaluateError`.
"""

from __future__ import annotations

from calamp.evaluate.command import add_arguments, main, run_command
from calamp.evaluate.core import ObservableFn as ObservableFn
from calamp.evaluate.core import evaluate
from calamp.evaluate.errors import EvaluateError
from calamp.evaluate.readers import iterate_samples

__all__ = ["EvaluateError", "add_arguments", "evaluate", "iterate_samples", "main", "run_command"]
