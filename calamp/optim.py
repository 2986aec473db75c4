"""Adam, once: the update rule every calamp optimiser and the AdamMCMC proposal use.

Kingma & Ba (arXiv:1412.6980) with torch's ε convention: with moments
m_t = β1 m + (1 − β1) g and v_t = β2 v + (1 − β2) g², the update is
lr · m̂ / (√v̂ + ε), m̂ = m_t / (1 − β1^t), v̂ = v_t / (1 − β2^t), written with the bias
corrections folded into scalars (one multiply per weight fewer).
"""

from __future__ import annotations

from typing import Any

from calamp._tf import tf

__all__ = ["Adam", "adam_update"]


def adam_update(
    grad: Any, m: Any, v: Any, t: Any, *, lr: Any, beta1: float, beta2: float, eps: float
) -> tuple[Any, Any, Any]:
    """One Adam step from gradient ``grad`` and moments ``m``, ``v`` before it.

    Args:
        grad, m, v: tensors of one shape (any dtype; float32 or float64).
        t: the 1-based step count of this update; a scalar or a tensor that broadcasts against
            ``grad`` (e.g. (K, 1, 1) for K networks with their own counters).
        lr: learning rate (scalar or broadcastable tensor, e.g. a schedule factor times lr).
        beta1, beta2, eps: Adam's constants.

    Returns:
        ``(update, m_new, v_new)``: subtract ``update`` from the weights.
    """
    dtype = grad.dtype
    t = tf.cast(t, dtype)
    b1, b2 = tf.constant(beta1, dtype), tf.constant(beta2, dtype)
    m_new = b1 * m + (1.0 - b1) * grad
    v_new = b2 * v + (1.0 - b2) * tf.square(grad)
    root_c2 = tf.sqrt(1.0 - tf.pow(b2, t))
    lr_t = tf.cast(lr, dtype) * root_c2 / (1.0 - tf.pow(b1, t))
    return lr_t * m_new / (tf.sqrt(v_new) + eps * root_c2), m_new, v_new


class Adam(tf.Module):
    """Adam on a list of variables, its state as tf.Variables (checkpointable).

    Args:
        variables: the variables to optimise (moments get their shapes).
        lr: base learning rate (times ``lr_factor`` of each :meth:`apply`).
        betas: (β1, β2).
        eps: ε (torch convention).
        lr_factors: per-variable multipliers of the learning rate (default all 1), e.g.
            :func:`calamp.bayes.vi.lr_factors` for the VI width parameters.
    """

    def __init__(
        self, variables: list[tf.Variable], lr: float, betas: tuple[float, float], eps: float,
        lr_factors: list[float] | None = None,
    ) -> None:
        super().__init__(name="adam")
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(betas[0]), float(betas[1]), eps
        factors = [1.0] * len(variables) if lr_factors is None else [float(f) for f in lr_factors]
        if len(factors) != len(variables):
            msg = f"`lr_factors` has {len(factors)} entries for {len(variables)} variables"
            raise ValueError(msg)
        self.lr_factors = factors
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

    def apply(
        self, grads: list[tf.Tensor], variables: list[tf.Variable], lr_factor: tf.Tensor
    ) -> None:
        """One update of every variable (traceable)."""
        t = self.iterations.assign_add(1)
        for g, m, v, var, f in zip(grads, self.m, self.v, variables, self.lr_factors,
                                   strict=True):
            lr = lr_factor * self.lr if f == 1.0 else lr_factor * (self.lr * f)
            update, m_new, v_new = adam_update(
                g, m, v, t, lr=lr, beta1=self.beta1, beta2=self.beta2,
                eps=self.eps,
            )
            m.assign(m_new)
            v.assign(v_new)
            var.assign_sub(update)
