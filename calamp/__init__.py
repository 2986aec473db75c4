"""calamp: Bayesian amplification and calibration of generative calorimeter simulators.

Data enter in :mod:`calamp.io` and :mod:`calamp.simulate`, are turned into observables in
:mod:`calamp.observables`, counted in :mod:`calamp.histograms`, learned in :mod:`calamp.models`
and :mod:`calamp.bayes`, judged in :mod:`calamp.stats` and drawn in :mod:`calamp.plotting`.
:mod:`calamp.sources` prepares training sets and truth, :mod:`calamp.posterior` trains and
generates, :mod:`calamp.analysis` judges one binning, :mod:`calamp.job` joins them
(:mod:`calamp.pipeline` keeps the stages under one name), :mod:`calamp.evaluate` judges a
generator built elsewhere, and :mod:`calamp.run` is the command line.

Importing ``calamp`` does not import TensorFlow; only :mod:`calamp.models`, :mod:`calamp.bayes`
and the modules that train (:mod:`calamp.posterior` when it trains) do.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
