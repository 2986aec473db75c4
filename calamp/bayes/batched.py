"""B AdamMCMC chains advanced together in one compiled step (a leading chain axis on θ).

:class:`BatchedAdamMCMC` holds the states of B chains as one (B, P) variable, e.g. the C chains
of one network, or the K·C chains of a study's K networks. The caller supplies a *batched*
energy ``energy_fn(theta, *batch) -> (B,)`` that evaluates U_b at row b of ``theta`` (B, P) on
chain b's minibatch (a model's functional log-density, such as
:meth:`calamp.models.flows.CouplingFlow.batched_log_prob`), so one forward and one backward pass
serve all chains; the gradient of Σ_b U_b is the per-chain gradient because the rows do not
interact.

Every chain is the :class:`~calamp.bayes.samplers.AdamMCMC` chain of its own seed: the same
Adam-centred proposal N(θ − u, s² I + σ_Δ² u uᵀ), the same exact Metropolis–Hastings ratio (per
chain, on the chain's own minibatch), the same moment freezing at ``adapt_steps`` and the same
stateless random numbers (keyed by (seed_b, step)). With the same energy and batches, chain b
therefore equals ``AdamMCMC(..., seed=seeds[b])`` to float rounding (the batched matmuls sum in
another order), which the tests check. ``step`` returns (B,) ``energy``, ``accepted``,
``accept_prob`` and ``nonfinite``; the module is checkpointable like the single-chain samplers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from calamp._tf import tf
from calamp.bayes.samplers import (
    _SALT,
    _check_population,
    _check_positive,
    adam_mcmc_settings,
    mh_log_alpha,
    minibatch_noise_chi2,
    minibatch_noise_penalty,
    split_energy,
)
from calamp.optim import adam_update

__all__ = ["BatchedAdamMCMC"]

BatchedEnergyFn = Callable[..., tf.Tensor]


class BatchedAdamMCMC(tf.Module):
    """B AdamMCMC chains with exact Metropolis–Hastings per chain, stepped in one graph.

    Args:
        theta0: (B, P) starting states (e.g. B copies of pre-trained weights).
        energy_fn: ``energy_fn(theta, *batch) -> (B,)`` energies U_b at the rows of the (B, P)
            tensor ``theta``.
        seeds: B integer seeds; chain b draws the random numbers of ``AdamMCMC(seed=seeds[b])``.
        lr, betas, eps, sigma, sigma_delta, inverse_temperature, metropolis, adapt_steps,
            noise_penalty, population: as :class:`~calamp.bayes.samplers.AdamMCMC` (shared by
            all chains); with ``noise_penalty`` the energy returns ``((B,) U, (B, n) terms)``.
    """

    def __init__(
        self,
        theta0: Any,
        energy_fn: BatchedEnergyFn,
        *,
        seeds: Sequence[int],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        sigma: float = 0.1,
        sigma_delta: float | None = None,
        inverse_temperature: float = 1.0,
        metropolis: bool = True,
        adapt_steps: int | None = None,
        noise_penalty: bool = False,
        population: int | None = None,
    ) -> None:
        super().__init__(name="batched_adam_mcmc")
        self._noise_penalty = bool(noise_penalty)
        self._population = _check_population(population)
        theta0 = np.asarray(theta0)
        if theta0.ndim != 2 or theta0.shape[0] < 1 or theta0.shape[1] < 1:
            msg = f"`theta0` must be a (B, P) array of starting states, got shape {theta0.shape}"
            raise ValueError(msg)
        if not np.issubdtype(theta0.dtype, np.floating):
            msg = f"`theta0` must be floating point, got {theta0.dtype}"
            raise ValueError(msg)
        if not callable(energy_fn):
            msg = "`energy_fn` must be callable: energy_fn(theta, *batch) -> (B,) tf.Tensor"
            raise ValueError(msg)
        b, p = theta0.shape
        seeds = [int(s) for s in seeds]
        if len(seeds) != b:
            msg = f"`seeds` must hold one seed per chain ({b}), got {len(seeds)}"
            raise ValueError(msg)
        cfg = adam_mcmc_settings(
            p, lr=lr, betas=betas, eps=eps, sigma=sigma, sigma_delta=sigma_delta,
            adapt_steps=adapt_steps,
        )
        self._b, self._p = int(b), int(p)
        self._energy_fn = lambda theta, *batch: energy_fn(theta, *batch)  # not trackable
        self._seeds = seeds
        self._lr, self._betas, self._eps = cfg["lr"], cfg["betas"], cfg["eps"]
        self._sigma, self._sigma_delta = cfg["sigma"], cfg["sigma_delta"]
        self._lam = _check_positive("inverse_temperature", inverse_temperature)
        self._metropolis = bool(metropolis)
        self._adapt_steps = cfg["adapt_steps"]
        dtype = tf.as_dtype(theta0.dtype)
        self._dtype = dtype
        with self.name_scope:
            self.theta = tf.Variable(theta0, dtype=dtype, trainable=False, name="theta")
            self.adam_m = tf.Variable(tf.zeros([b, p], dtype), trainable=False, name="m")
            self.adam_v = tf.Variable(tf.zeros([b, p], dtype), trainable=False, name="v")
            self.adam_t = tf.Variable(tf.zeros([b], tf.int64), trainable=False, name="adam_t")
            self.step_count = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.accepted_count = tf.Variable(
                tf.zeros([b], tf.int64), trainable=False, name="accepted_count"
            )
            self.nonfinite_count = tf.Variable(
                tf.zeros([b], tf.int64), trainable=False, name="nonfinite_count"
            )
        self._seed_tensor = tf.constant(seeds, tf.int64)

    # -- read-only views ------------------------------------------------------------------
    @property
    def n_chains(self) -> int:
        """Number of chains B."""
        return self._b

    @property
    def num_params(self) -> int:
        """Weights per chain P."""
        return self._p

    @property
    def seeds(self) -> list[int]:
        """The B chain seeds."""
        return list(self._seeds)

    @property
    def scale(self) -> float:
        """Isotropic per-weight proposal standard deviation s = σ/√P."""
        return self._sigma / math.sqrt(self._p)

    @property
    def steps(self) -> int:
        """Steps taken so far (every chain takes every step)."""
        return int(self.step_count.numpy())

    @property
    def n_nonfinite(self) -> np.ndarray:
        """(B,) steps per chain that met a NaN/inf energy, gradient or proposal."""
        return self.nonfinite_count.numpy()

    @property
    def acceptance_rate(self) -> np.ndarray:
        """(B,) fraction of accepted steps per chain so far."""
        n = self.steps
        return self.accepted_count.numpy() / n if n else np.full(self._b, np.nan)

    def state(self) -> np.ndarray:
        """Current (B, P) states."""
        return self.theta.numpy()

    def checkpoint_items(self) -> dict[str, tf.Module]:
        """Objects for ``tf.train.Checkpoint(**items)`` (θ of every chain and the sampler)."""
        return {"sampler": self}

    # -- the step -------------------------------------------------------------------------
    def _keys(self) -> tf.Tensor:
        """(B, 3, 2) stateless keys, chain b's equal to ``AdamMCMC(seed=seeds[b])._keys()``."""

        def one(seed: tf.Tensor) -> tf.Tensor:
            base = tf.stack([seed, tf.constant(_SALT, tf.int64)])
            key = tf.random.experimental.stateless_fold_in(base, self.step_count)
            return tf.random.experimental.stateless_split(key, 3)

        return tf.map_fn(one, self._seed_tensor, fn_output_signature=tf.int64)

    def _energy_and_grad(self, theta: tf.Tensor, batch: tuple) -> tuple[tf.Tensor, tf.Tensor, Any]:
        """((B,) U, (B, P) ∇U, (B, n) per-event terms or None)."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(theta)
            energy, terms = split_energy(
                self._energy_fn(theta, *batch), need_terms=self._noise_penalty
            )
            total = tf.reduce_sum(tf.where(tf.math.is_finite(energy), energy, 0.0))
        if energy.shape.rank != 1:
            msg = f"`energy_fn` must return a (B,) tensor, got shape {energy.shape}"
            raise ValueError(msg)
        if terms is not None and terms.shape.rank != 2:
            msg = f"`energy_fn` must return (B, n) per-event terms, got shape {terms.shape}"
            raise ValueError(msg)
        grad = tape.gradient(total, theta, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return energy, grad, terms

    def _adam(self, grad: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        b1, b2 = self._betas
        return adam_update(
            grad, self.adam_m, self.adam_v, (self.adam_t + 1)[:, None], lr=self._lr, beta1=b1,
            beta2=b2, eps=self._eps,
        )

    @tf.function(reduce_retracing=True)
    def step(self, *batch: tf.Tensor) -> dict[str, tf.Tensor]:
        """One step of every chain on ``batch`` (passed to ``energy_fn``): (B,) outputs."""
        keys = self._keys()
        theta = tf.identity(self.theta)
        energy, grad, terms = self._energy_and_grad(theta, tuple(batch))
        finite_rows = tf.reduce_all(tf.math.is_finite(grad), axis=1)
        grad_ok = tf.math.is_finite(energy) & finite_rows
        update, m_new, v_new = self._adam(grad)
        s = self.scale
        p = self._p
        iso = tf.map_fn(
            lambda k: tf.random.stateless_normal([p], seed=k[0], dtype=self._dtype),
            keys, fn_output_signature=self._dtype,
        )
        along = tf.map_fn(
            lambda k: tf.random.stateless_normal([], seed=k[1], dtype=self._dtype),
            keys, fn_output_signature=self._dtype,
        )
        proposal = theta - update + s * iso + self._sigma_delta * along[:, None] * update
        prop_ok = grad_ok & tf.reduce_all(tf.math.is_finite(proposal), axis=1)
        proposal = tf.where(prop_ok[:, None], proposal, theta)  # never evaluate NaN weights

        f64 = tf.float64
        if self._metropolis:
            prop_energy, prop_grad, prop_terms = self._energy_and_grad(proposal, tuple(batch))
            rev_update, _, _ = self._adam(tf.where(tf.math.is_finite(prop_grad), prop_grad, 0.0))
            log_alpha = mh_log_alpha(
                theta, proposal, update, rev_update, energy, prop_energy, scale=s,
                sigma_delta=self._sigma_delta, inverse_temperature=self._lam,
            )
            chi2 = None
            if terms is not None:
                chi2 = minibatch_noise_chi2(
                    terms, prop_terms, inverse_temperature=self._lam,
                    population=self._population,
                )
                if self._noise_penalty:
                    log_alpha = log_alpha - minibatch_noise_penalty(chi2, tf.shape(terms)[-1])
            rev_ok = tf.reduce_all(tf.math.is_finite(prop_grad), axis=1)
            ok = prop_ok & rev_ok & tf.math.is_finite(log_alpha)
            u = tf.map_fn(
                lambda k: tf.random.stateless_uniform([], seed=k[2], dtype=f64),
                keys, fn_output_signature=f64,
            )
            accepted = ok & (tf.math.log(u) < log_alpha)
            accept_prob = tf.where(ok, tf.exp(tf.minimum(log_alpha, 0.0)), tf.zeros_like(log_alpha))
        else:
            prop_energy = split_energy(self._energy_fn(proposal, *batch), need_terms=False)[0]
            chi2 = None
            ok = prop_ok & tf.math.is_finite(prop_energy)
            accepted = ok
            accept_prob = tf.cast(ok, f64)

        self.theta.assign(tf.where(accepted[:, None], proposal, theta))
        upd = grad_ok
        if self._adapt_steps is not None:
            upd = upd & (self.step_count < self._adapt_steps)
        self.adam_m.assign(tf.where(upd[:, None], m_new, self.adam_m))
        self.adam_v.assign(tf.where(upd[:, None], v_new, self.adam_v))
        self.adam_t.assign_add(tf.cast(upd, tf.int64))
        nonfinite = tf.logical_not(ok)
        self.accepted_count.assign_add(tf.cast(accepted, tf.int64))
        self.nonfinite_count.assign_add(tf.cast(nonfinite, tf.int64))
        self.step_count.assign_add(1)
        return {
            "energy": energy,
            "proposal_energy": prop_energy,
            "accepted": accepted,
            "accept_prob": accept_prob,
            "nonfinite": nonfinite,
            # (B,) minibatch noise χ² of the MH tests (corrected only with noise_penalty); NaN
            # without per-event terms
            "noise_chi2": (tf.fill(tf.shape(energy), tf.constant(math.nan, tf.float64))
                           if chi2 is None else chi2),
        }
