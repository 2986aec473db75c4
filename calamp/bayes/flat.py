"""A model's weights as one flat vector θ of length P.

The SG-MCMC samplers and the draw store see a network only through its list of
``tf.Variable`` objects, concatenated in list order (each variable flattened in row-major
order). :func:`flatten` / :func:`assign_flat` are graph-friendly (usable inside
``tf.function``); :func:`get_flat` / :func:`set_flat` are their eager numpy twins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from calamp._tf import tf

__all__ = ["num_params", "flatten", "assign_flat", "get_flat", "set_flat"]


def _sizes(variables: Sequence[tf.Variable]) -> list[int]:
    if len(variables) == 0:
        msg = "`variables` is empty: expected at least one tf.Variable"
        raise ValueError(msg)
    sizes = []
    for v in variables:
        if not v.shape.is_fully_defined():
            msg = f"`variables`: variable {v.name!r} has an undefined shape {v.shape}"
            raise ValueError(msg)
        sizes.append(int(v.shape.num_elements()))
    dtypes = {v.dtype for v in variables}
    if len(dtypes) != 1:
        msg = f"`variables` must share one dtype, found {sorted(d.name for d in dtypes)}"
        raise ValueError(msg)
    return sizes


def num_params(variables: Sequence[tf.Variable]) -> int:
    """Number of scalar weights P in ``variables`` (sum of their sizes)."""
    return int(sum(_sizes(variables)))


def flatten(variables: Sequence[tf.Variable | tf.Tensor]) -> tf.Tensor:
    """Concatenate ``variables`` (or tensors of the same shapes) into θ, shape (P,)."""
    _sizes(variables)
    return tf.concat([tf.reshape(v, [-1]) for v in variables], axis=0)


def assign_flat(variables: Sequence[tf.Variable], flat: tf.Tensor) -> None:
    """Write the flat vector ``flat`` (P,) back into ``variables`` (graph-friendly)."""
    sizes = _sizes(variables)
    flat = tf.convert_to_tensor(flat, dtype=variables[0].dtype)
    if flat.shape.rank != 1 or (flat.shape[0] is not None and flat.shape[0] != sum(sizes)):
        msg = f"`flat` must have shape ({sum(sizes)},), got {flat.shape}"
        raise ValueError(msg)
    for v, part in zip(variables, tf.split(flat, sizes), strict=True):
        v.assign(tf.reshape(part, v.shape))


def get_flat(variables: Sequence[tf.Variable]) -> np.ndarray:
    """Current weights as a numpy vector, shape (P,), in the variables' dtype."""
    return flatten(variables).numpy()


def set_flat(variables: Sequence[tf.Variable], array: np.ndarray) -> None:
    """Set the weights from a numpy vector ``array`` of shape (P,)."""
    p = num_params(variables)
    arr = np.asarray(array)
    if arr.shape != (p,):
        msg = f"`array` must have shape ({p},), got {arr.shape}"
        raise ValueError(msg)
    assign_flat(variables, tf.constant(arr, dtype=variables[0].dtype))
