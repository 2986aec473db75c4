"""One place that imports TensorFlow, tf-keras (Keras 2) and TensorFlow Probability.

TFP's layers need Keras 2, which lives in the ``tf_keras`` package. We import it explicitly
and never set ``TF_USE_LEGACY_KERAS``, so a user's Keras 3 code in the same process is untouched.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # quiet C++ logs (incl. "no CUDA driver")

import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
import tf_keras  # noqa: E402

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["tf", "tfp", "tf_keras", "tfd", "tfb"]
