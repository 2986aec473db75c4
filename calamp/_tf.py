"""One place that imports TensorFlow, tf-keras (Keras 2) and TensorFlow Probability.

TFP's layers need Keras 2, which lives in the ``tf_keras`` package. We import it explicitly
and never set ``TF_USE_LEGACY_KERAS``, so a user's Keras 3 code in the same process is untouched.

TensorFlow >= 2.16 prints C++ start-up notes (oneDNN, "no CUDA driver") to the process's stderr
before its logging is configured, whatever ``TF_CPP_MIN_LOG_LEVEL`` says. Unless the user asked
for C++ logs (``TF_CPP_MIN_LOG_LEVEL=0``), the import runs with file descriptor 2 pointed at
/dev/null; Python exceptions raised by the import are still shown.
"""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _quiet_native_stderr():
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") == "0":
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr descriptor: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _quiet_native_stderr():
    import tensorflow as tf
    import tensorflow_probability as tfp
    import tf_keras

    tf.constant(0.0) + 1.0  # loads the CPU kernels (their notes are silenced too)

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["tf", "tfp", "tf_keras", "tfd", "tfb"]
