"""SG-MCMC samplers on a model's flat weight vector θ (TF2): AdamMCMC, SGLD and SGHMC.

Common contract. The caller supplies ``energy_fn(*batch) -> scalar tf.Tensor`` that evaluates
U_B(θ) at the *current* values of ``variables``, typically
U = (N/|B|) Σ_batch −log p_θ(x) − log prior(θ). The target is the tempered posterior
π(θ) ∝ exp(−λ U(θ)) with inverse temperature λ (``inverse_temperature``; the posterior width
scales as 1/√λ). The sampler owns the chain state: the variables themselves (θ) plus its own
``tf.Variable`` state (step counter, Adam moments or momentum, counters). Samplers are
``tf.Module`` objects, so ``tf.train.Checkpoint(sampler=sampler)`` saves θ *and* the sampler
state. All randomness is ``tf.random.stateless_*`` keyed by (``seed``, step counter), so a
chain restored from a checkpoint continues bit-identically.

``step(*batch)`` is a compiled ``tf.function`` returning a dict of scalars:
``energy`` (U at the state the step started from), ``accepted`` (bool), ``accept_prob``
(Metropolis–Hastings acceptance probability; 1 for SGLD/SGHMC) and ``nonfinite`` (bool: a NaN/inf
energy, gradient or proposal was met). Non-finite proposals are rejected (AdamMCMC) or the step
is skipped, keeping θ and the momentum (SGLD/SGHMC); they never reach the variables and are
counted in ``n_nonfinite``. A chain must start from a state with finite energy and gradient.

References: AdamMCMC, S. Bieringer et al., arXiv:2312.14027 (as used in arXiv:2408.00838);
SGLD, M. Welling and Y. W. Teh, ICML 2011; SGHMC, T. Chen, E. Fox and C. Guestrin,
arXiv:1402.4102. Running a chain (steps, thinning, checkpoints) is
:func:`calamp.bayes.chain.run_chain`.

Size (~490 lines): three samplers on one base class that owns the shared contract (keys,
energy and gradient, counters, compiled steps); AdamMCMC's exact Metropolis–Hastings
correction is most of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from calamp._tf import tf
from calamp.bayes.flat import assign_flat, flatten, num_params
from calamp.optim import adam_update

__all__ = [
    "AdamMCMC",
    "SGLD",
    "SGHMC",
    "adam_mcmc_settings",
    "mh_log_alpha",
    "minibatch_noise_chi2",
    "minibatch_noise_penalty",
    "rank_one_normal_log_prob",
    "split_energy",
]

EnergyFn = Callable[..., tf.Tensor]
_SALT = 0x5EED_CA1A  # separates sampler key streams from other users of the same seed


def rank_one_normal_log_prob(
    x: tf.Tensor, mean: tf.Tensor, direction: tf.Tensor, scale: float, direction_scale: float
) -> tf.Tensor:
    """Log-density of N(mean, s² I + σ_Δ² u uᵀ) at x, exact and O(P).

    With d = x − mean, s = ``scale``, σ_Δ = ``direction_scale`` and u = ``direction``:
    log q = −(P/2) log 2π − P log s − ½ log(1 + σ_Δ²|u|²/s²)
            − (1/2s²) [|d|² − σ_Δ² (d·u)² / (s² + σ_Δ²|u|²)]
    (matrix determinant lemma and Sherman–Morrison; PHYSICS.md §2 without the 2π constant).

    Args:
        x, mean, direction: (..., P) tensors (broadcast against each other).
        scale: isotropic standard deviation s > 0.
        direction_scale: standard deviation σ_Δ ≥ 0 along ``direction``.

    Returns:
        (...,) log-density in the dtype of ``x``.
    """
    x = tf.convert_to_tensor(x)
    dtype = x.dtype

    def as_dtype(t):  # Python floats straight to ``dtype`` (no float32 round trip)
        return tf.cast(tf.convert_to_tensor(t, dtype_hint=dtype), dtype)

    d = x - as_dtype(mean)
    u = as_dtype(direction)
    s2 = as_dtype(scale) ** 2
    sd2 = as_dtype(direction_scale) ** 2
    p = tf.cast(tf.shape(d)[-1], dtype)
    d2 = tf.reduce_sum(d * d, axis=-1)
    u2 = tf.reduce_sum(u * u, axis=-1)
    du = tf.reduce_sum(d * u, axis=-1)
    quad = (d2 - sd2 * du * du / (s2 + sd2 * u2)) / s2
    log_det = p * tf.math.log(s2) + tf.math.log1p(sd2 * u2 / s2)
    return -0.5 * (p * as_dtype(math.log(2.0 * math.pi)) + log_det + quad)


def _all_finite(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_all(tf.math.is_finite(x))


def split_energy(out: Any, *, need_terms: bool) -> tuple[tf.Tensor, Any]:
    """``(energy, per-event terms or None)`` from what an energy function returned: the energy
    alone, or ``(energy, terms)`` (terms: the per-event parts, for the minibatch-noise χ²)."""
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return tf.convert_to_tensor(out[0]), tf.convert_to_tensor(out[1])
    if need_terms:
        msg = "with `noise_penalty`, `energy_fn` must return (energy, per-event terms)"
        raise ValueError(msg)
    return tf.convert_to_tensor(out), None


def _check_population(population: int | None) -> int | None:
    if population is None:
        return None
    if int(population) != population or population < 1:
        msg = f"`population` must be a positive integer or None, got {population!r}"
        raise ValueError(msg)
    return int(population)


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        msg = f"`{name}` must be a finite positive number, got {value}"
        raise ValueError(msg)
    return value


def adam_mcmc_settings(
    p: int,
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    sigma: float,
    sigma_delta: float | None,
    adapt_steps: int | None,
) -> dict:
    """Validated AdamMCMC settings for P weights (σ_Δ defaults to √P/50); shared by
    :class:`AdamMCMC` and :class:`~calamp.bayes.batched.BatchedAdamMCMC`."""
    if adapt_steps is not None and int(adapt_steps) < 0:
        msg = f"`adapt_steps` must be None or >= 0, got {adapt_steps}"
        raise ValueError(msg)
    b1, b2 = (float(b) for b in betas)
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        msg = f"`betas` must lie in [0, 1), got {betas}"
        raise ValueError(msg)
    sigma_delta = math.sqrt(p) / 50.0 if sigma_delta is None else float(sigma_delta)
    if not (math.isfinite(sigma_delta) and sigma_delta >= 0):
        msg = f"`sigma_delta` must be finite and >= 0, got {sigma_delta}"
        raise ValueError(msg)
    return {
        "lr": _check_positive("lr", lr),
        "betas": (b1, b2),
        "eps": _check_positive("eps", eps),
        "sigma": _check_positive("sigma", sigma),
        "sigma_delta": sigma_delta,
        "adapt_steps": None if adapt_steps is None else int(adapt_steps),
    }


def mh_log_alpha(
    theta: tf.Tensor,
    proposal: tf.Tensor,
    update: tf.Tensor,
    rev_update: tf.Tensor,
    energy: tf.Tensor,
    prop_energy: tf.Tensor,
    *,
    scale: float,
    sigma_delta: float,
    inverse_temperature: float,
) -> tf.Tensor:
    """log of AdamMCMC's Metropolis–Hastings ratio (float64), (...,) for (..., P) states:
    −λ[U(θ̃) − U(θ)] + log q(θ|θ̃) − log q(θ̃|θ) with the rank-one proposal densities."""
    f64 = tf.float64
    log_q_fwd = rank_one_normal_log_prob(
        tf.cast(proposal, f64), tf.cast(theta - update, f64), tf.cast(update, f64), scale,
        sigma_delta,
    )
    log_q_rev = rank_one_normal_log_prob(
        tf.cast(theta, f64), tf.cast(proposal - rev_update, f64), tf.cast(rev_update, f64),
        scale, sigma_delta,
    )
    return (
        -inverse_temperature * (tf.cast(prop_energy, f64) - tf.cast(energy, f64))
        + log_q_rev
        - log_q_fwd
    )


def minibatch_noise_chi2(
    terms: tf.Tensor,
    prop_terms: tf.Tensor,
    *,
    inverse_temperature: float,
    population: int | None = None,
) -> tf.Tensor:
    """Estimated variance χ² of a minibatch's λ·(U(θ̃) − U(θ)) (float64), (...,).

    A minibatch estimate Δ̂ = Σ_i (e_i(θ̃) − e_i(θ)) of U(θ̃) − U(θ), from per-event terms e_i
    (the energy is Σ_i e_i plus a batch-independent part, so e_i = (N/B)·(−log p_θ(x_i))), has
    the variance χ² = λ² B s²(δ) (1 − B/N), with s² the unbiased sample variance of the B
    per-event differences δ_i (the finite-population factor applies to a batch drawn without
    replacement). When χ² ≳ 1 the accept/reject decision on Δ̂ is driven by the noise, and the
    plain ratio samples a *wider* distribution than π (standard deviations 1.6x too large on a
    Gaussian posterior at N/B = 5, ``tests/test_samplers.py``).

    Args:
        terms, prop_terms: (..., B) per-event energy terms at θ and θ̃ on the same batch.
        inverse_temperature: λ.
        population: N, the number of training events; ``None``: no finite-population factor.
    """
    f64 = tf.float64
    d = tf.cast(prop_terms, f64) - tf.cast(terms, f64)
    b = tf.cast(tf.shape(d)[-1], f64)
    s2 = tf.math.reduce_variance(d, axis=-1) * b / tf.maximum(b - 1.0, 1.0)
    chi2 = inverse_temperature**2 * b * s2
    if population is not None:
        chi2 = chi2 * tf.maximum(1.0 - b / float(population), 0.0)
    return chi2


def minibatch_noise_penalty(chi2: tf.Tensor, batch_size: tf.Tensor) -> tf.Tensor:
    """Penalty u that makes MH on a noisy energy difference exact, (...,) float64.

    Ceperley & Dewing, J. Chem. Phys. 110, 9812 (1999): for Gaussian noise of estimated variance
    χ² (:func:`minibatch_noise_chi2`, B − 1 degrees of freedom), accepting with
    min(1, exp(−λΔ̂ − u)), u = χ²/2 + χ⁴/(4B) + χ⁶/(3B(B + 2)), satisfies detailed balance.
    Usable where χ² ≲ 1; larger noise only drives the acceptance to zero (smaller steps or
    larger batches are then needed).
    """
    b = tf.cast(batch_size, tf.float64)
    return chi2 / 2.0 + chi2**2 / (4.0 * b) + chi2**3 / (3.0 * b * (b + 2.0))


class _Sampler(tf.Module):
    """Shared state and plumbing; subclasses implement ``_step``."""

    _n_keys = 1
    _noise_penalty = False  # AdamMCMC: energy_fn must then return per-event terms

    def __init__(
        self,
        variables: Sequence[tf.Variable],
        energy_fn: EnergyFn,
        *,
        inverse_temperature: float,
        seed: int,
        name: str,
    ) -> None:
        super().__init__(name=name)
        variables = tuple(variables)
        self._p = num_params(variables)
        if not variables[0].dtype.is_floating:
            msg = f"`variables` must be floating point, got {variables[0].dtype.name}"
            raise ValueError(msg)
        if not callable(energy_fn):
            msg = "`energy_fn` must be callable: energy_fn(*batch) -> scalar tf.Tensor"
            raise ValueError(msg)
        self.model_variables = variables
        # A lambda is not trackable: the checkpoint holds θ and sampler state, not energy_fn.
        self._energy_fn = lambda *batch: energy_fn(*batch)
        self._dtype = variables[0].dtype
        self._lam = _check_positive("inverse_temperature", inverse_temperature)
        self._seed = int(seed)
        with self.name_scope:
            self.step_count = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.accepted_count = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="accepted_count"
            )
            self.nonfinite_count = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="nonfinite_count"
            )

    # -- public read-only views -----------------------------------------------------------
    @property
    def num_params(self) -> int:
        """Number of weights P."""
        return self._p

    @property
    def inverse_temperature(self) -> float:
        """λ in π(θ) ∝ exp(−λ U(θ))."""
        return self._lam

    @property
    def seed(self) -> int:
        """Integer seed of the stateless random streams."""
        return self._seed

    @property
    def steps(self) -> int:
        """Number of steps taken so far (all runs, restored with the checkpoint)."""
        return int(self.step_count.numpy())

    @property
    def n_nonfinite(self) -> int:
        """Number of steps that met a NaN/inf energy, gradient or proposal."""
        return int(self.nonfinite_count.numpy())

    @property
    def acceptance_rate(self) -> float:
        """Fraction of accepted steps so far (SGLD/SGHMC: fraction of non-skipped steps)."""
        n = self.steps
        return float(self.accepted_count.numpy()) / n if n else float("nan")

    def checkpoint_items(self) -> dict[str, tf.Module]:
        """Objects to hand to ``tf.train.Checkpoint(**items)`` (θ and the sampler state)."""
        return {"sampler": self}

    # -- helpers --------------------------------------------------------------------------
    def _keys(self) -> tf.Tensor:
        base = tf.constant([self._seed, _SALT], dtype=tf.int64)
        key = tf.random.experimental.stateless_fold_in(base, self.step_count)
        return tf.random.experimental.stateless_split(key, self._n_keys)

    def _energy_terms_and_grad(self, batch: tuple) -> tuple[tf.Tensor, tf.Tensor, Any]:
        """(U, ∇U, per-event terms (B,) or None) at the current weights."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.model_variables)
            energy, terms = split_energy(self._energy_fn(*batch), need_terms=self._noise_penalty)
        if energy.shape.rank != 0 or (terms is not None and terms.shape.rank != 1):
            msg = (f"`energy_fn` must return a scalar (and (B,) per-event terms), got shapes "
                   f"{energy.shape} and {None if terms is None else terms.shape}")
            raise ValueError(msg)
        grads = tape.gradient(
            energy, self.model_variables, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return energy, flatten(grads), terms

    def _energy_and_grad(self, batch: tuple) -> tuple[tf.Tensor, tf.Tensor]:
        return self._energy_terms_and_grad(batch)[:2]

    def _energy(self, batch: tuple) -> tf.Tensor:
        return split_energy(self._energy_fn(*batch), need_terms=False)[0]

    def _finish(self, accepted: tf.Tensor, nonfinite: tf.Tensor) -> None:
        self.accepted_count.assign_add(tf.cast(accepted, tf.int64))
        self.nonfinite_count.assign_add(tf.cast(nonfinite, tf.int64))
        self.step_count.assign_add(1)

    @tf.function(reduce_retracing=True)
    def step(self, *batch: tf.Tensor) -> dict[str, tf.Tensor]:
        """One sampler step on ``batch`` (passed to ``energy_fn``); see the module docstring."""
        return self._step(tuple(batch))

    @tf.function(reduce_retracing=True)
    def _run_steps(self, n: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """``n`` argument-free steps in one compiled loop: energies, accepted, nonfinite (n,)."""
        energies = tf.TensorArray(tf.float64, size=n)
        accepted = tf.TensorArray(tf.bool, size=n)
        nonfinite = tf.TensorArray(tf.bool, size=n)
        for i in tf.range(n):
            out = self._step(())
            energies = energies.write(i, tf.cast(out["energy"], tf.float64))
            accepted = accepted.write(i, out["accepted"])
            nonfinite = nonfinite.write(i, out["nonfinite"])
        return energies.stack(), accepted.stack(), nonfinite.stack()

    def _step(self, batch: tuple) -> dict[str, tf.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


class AdamMCMC(_Sampler):
    """AdamMCMC: Metropolis-adjusted proposals centred on an Adam step (arXiv:2312.14027).

    With Adam update u_t (computed from ∇U(θ_t) and the optimizer moments), the proposal is
    θ̃ ~ q(·|θ_t) = N(θ_t − u_t, s² I + σ_Δ² u_t u_tᵀ), s = σ/√P. With ``metropolis=True`` the
    proposal is accepted with probability
    min(1, exp(−λ[U(θ̃) − U(θ_t)]) q(θ_t|θ̃) / q(θ̃|θ_t)) on the *same* batch, where the
    reverse density uses the Adam update ũ computed from ∇U(θ̃) with the same (old) optimizer
    state, i.e. q(θ_t|θ̃) = N(θ_t; θ̃ − ũ, s² I + σ_Δ² ũ ũᵀ) (exact rank-one form, see
    :func:`rank_one_normal_log_prob`). Given the optimizer state, each step therefore leaves
    π invariant; with the full training set as the batch the chain samples π exactly. On
    minibatches that change from step to step the energy difference is a noisy estimate and the
    plain ratio samples a wider distribution; ``noise_penalty=True`` corrects it
    (:func:`minibatch_noise_penalty`).

    Adam moments: while adapting, every step advances the moments (m, v, t) with the gradient
    at the current state θ_t, whether the proposal is then accepted or rejected (as the
    reference implementation does: its optimizer step precedes the accept/reject decision).
    The MH ratio of a step only ever uses the moments from before that step. Steps whose
    gradient at θ_t is non-finite leave the moments untouched. The gradient fed to Adam is ∇U
    (not ∇λU; Adam is scale-invariant up to ``eps``).

    Exactness: for fixed moments each step is a valid MH kernel for π, but moments that keep
    adapting depend on the chain's recent states, and the chain then targets π only
    approximately. Measured on a 3-weight Gaussian posterior with lr ≈ 0.3 posterior standard
    deviations, permanent adaptation shrank the posterior variance by ≈ 11% (200k steps,
    ≈ 8 standard errors), frozen moments matched it within Monte-Carlo error. ``adapt_steps``
    freezes the moments once the sampler's step counter reaches it (set it to the burn-in for
    an exact chain); the default ``None`` adapts forever, as the reference implementation does.

    With ``metropolis=False`` every finite proposal is accepted (the energy at θ̃ is still
    evaluated, forward only, to reject NaN/inf regions): a noisy Adam without exactness.

    Args:
        variables: the model's weights θ (list of tf.Variable, one dtype).
        energy_fn: ``energy_fn(*batch) -> scalar`` U at the current weights.
        lr, betas, eps: Adam hyperparameters.
        sigma: isotropic proposal noise σ; per-weight standard deviation s = σ/√P.
        sigma_delta: standard deviation σ_Δ along the Adam direction; default √P/50.
        inverse_temperature: λ.
        metropolis: do the Metropolis–Hastings correction.
        adapt_steps: freeze the Adam moments after this many sampler steps (None: never).
        seed: integer seed of the stateless random streams.
        noise_penalty: correct the acceptance for the minibatch noise of the energy difference
            (:func:`minibatch_noise_penalty`); ``energy_fn`` must then return ``(U, terms)``
            with ``terms`` the (B,) per-event parts of U (U = Σ terms + a batch-independent
            part). Without it, MH on varying minibatches samples a wider distribution than π.
            An ``energy_fn`` that returns terms without ``noise_penalty`` gets the noise
            reported (``step()["noise_chi2"]``, :func:`minibatch_noise_chi2`) but not corrected.
        population: N, the number of training events (finite-population correction of the
            penalty); ``None``: none.
    """

    _n_keys = 3

    def __init__(
        self,
        variables: Sequence[tf.Variable],
        energy_fn: EnergyFn,
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        sigma: float = 0.1,
        sigma_delta: float | None = None,
        inverse_temperature: float = 1.0,
        metropolis: bool = True,
        adapt_steps: int | None = None,
        seed: int = 0,
        noise_penalty: bool = False,
        population: int | None = None,
    ) -> None:
        super().__init__(
            variables,
            energy_fn,
            inverse_temperature=inverse_temperature,
            seed=seed,
            name="adam_mcmc",
        )
        self._noise_penalty = bool(noise_penalty)
        self._population = _check_population(population)
        cfg = adam_mcmc_settings(
            self._p, lr=lr, betas=betas, eps=eps, sigma=sigma, sigma_delta=sigma_delta,
            adapt_steps=adapt_steps,
        )
        self._lr, self._betas, self._eps = cfg["lr"], cfg["betas"], cfg["eps"]
        self._sigma, self._sigma_delta = cfg["sigma"], cfg["sigma_delta"]
        self._adapt_steps = cfg["adapt_steps"]
        self._metropolis = bool(metropolis)
        with self.name_scope:
            self.adam_m = tf.Variable(tf.zeros([self._p], self._dtype), trainable=False, name="m")
            self.adam_v = tf.Variable(tf.zeros([self._p], self._dtype), trainable=False, name="v")
            self.adam_t = tf.Variable(0, dtype=tf.int64, trainable=False, name="adam_t")

    @property
    def scale(self) -> float:
        """Isotropic per-weight proposal standard deviation s = σ/√P."""
        return self._sigma / math.sqrt(self._p)

    @property
    def sigma_delta(self) -> float:
        """Standard deviation σ_Δ along the Adam direction."""
        return self._sigma_delta

    def _adam(self, grad: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        b1, b2 = self._betas
        return adam_update(
            grad, self.adam_m, self.adam_v, self.adam_t + 1, lr=self._lr, beta1=b1, beta2=b2,
            eps=self._eps,
        )

    def _step(self, batch: tuple) -> dict[str, tf.Tensor]:
        keys = self._keys()
        theta = flatten(self.model_variables)
        energy, grad, terms = self._energy_terms_and_grad(batch)
        grad_ok = tf.math.is_finite(energy) & _all_finite(grad)
        update, m_new, v_new = self._adam(grad)

        s = self.scale
        iso = tf.random.stateless_normal([self._p], seed=keys[0], dtype=self._dtype)
        along = tf.random.stateless_normal([], seed=keys[1], dtype=self._dtype)
        proposal = theta - update + s * iso + self._sigma_delta * along * update
        prop_ok = grad_ok & _all_finite(proposal)
        # Non-finite proposals are never written into the variables.
        assign_flat(self.model_variables, tf.where(prop_ok, proposal, theta))

        f64 = tf.float64
        if self._metropolis:
            chi2 = None
            prop_energy, prop_grad, prop_terms = self._energy_terms_and_grad(batch)
            rev_update, _, _ = self._adam(prop_grad)
            log_alpha = mh_log_alpha(
                theta, proposal, update, rev_update, energy, prop_energy, scale=s,
                sigma_delta=self._sigma_delta, inverse_temperature=self._lam,
            )
            if terms is not None:
                chi2 = minibatch_noise_chi2(
                    terms, prop_terms, inverse_temperature=self._lam,
                    population=self._population,
                )
                if self._noise_penalty:
                    log_alpha = log_alpha - minibatch_noise_penalty(chi2, tf.shape(terms)[-1])
            ok = prop_ok & tf.math.is_finite(log_alpha)
            log_u = tf.math.log(
                tf.random.stateless_uniform([], seed=keys[2], dtype=f64, minval=0.0, maxval=1.0)
            )
            accepted = ok & (log_u < log_alpha)
            accept_prob = tf.where(ok, tf.exp(tf.minimum(log_alpha, 0.0)), tf.zeros([], f64))
        else:
            prop_energy = self._energy(batch)
            chi2 = None
            ok = prop_ok & tf.math.is_finite(prop_energy)
            accepted = ok
            accept_prob = tf.cast(ok, f64)

        assign_flat(self.model_variables, tf.where(accepted, proposal, theta))
        upd = grad_ok
        if self._adapt_steps is not None:
            upd = upd & (self.step_count < self._adapt_steps)
        self.adam_m.assign(tf.where(upd, m_new, self.adam_m))
        self.adam_v.assign(tf.where(upd, v_new, self.adam_v))
        self.adam_t.assign_add(tf.cast(upd, tf.int64))
        nonfinite = tf.logical_not(ok)
        self._finish(accepted, nonfinite)
        return {
            "energy": energy,
            "proposal_energy": prop_energy,
            "accepted": accepted,
            "accept_prob": accept_prob,
            "nonfinite": nonfinite,
            # the minibatch noise χ² of this step's MH test (corrected or not); NaN without terms
            "noise_chi2": tf.constant(math.nan, f64) if chi2 is None else chi2,
        }


class SGLD(_Sampler):
    """Stochastic-gradient Langevin dynamics (Welling & Teh 2011).

    θ ← θ − (lr/2) ∇[λ U(θ)] + N(0, lr I), constant step size ``lr``. No Metropolis correction:
    the stationary distribution deviates from π by O(lr) (for a Gaussian target with precision
    eigenvalue a the variance is inflated by 1/(1 − lr·λa/4)). A step with a non-finite energy,
    gradient or update is skipped (θ kept) and counted.
    """

    def __init__(
        self,
        variables: Sequence[tf.Variable],
        energy_fn: EnergyFn,
        *,
        lr: float,
        inverse_temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            variables, energy_fn, inverse_temperature=inverse_temperature, seed=seed, name="sgld"
        )
        self._lr = _check_positive("lr", lr)

    def _step(self, batch: tuple) -> dict[str, tf.Tensor]:
        keys = self._keys()
        theta = flatten(self.model_variables)
        energy, grad = self._energy_and_grad(batch)
        noise = tf.random.stateless_normal([self._p], seed=keys[0], dtype=self._dtype)
        new = theta - (0.5 * self._lr * self._lam) * grad + math.sqrt(self._lr) * noise
        ok = tf.math.is_finite(energy) & _all_finite(grad) & _all_finite(new)
        assign_flat(self.model_variables, tf.where(ok, new, theta))
        self._finish(ok, tf.logical_not(ok))
        return {
            "energy": energy,
            "accepted": ok,
            "accept_prob": tf.cast(ok, tf.float64),
            "nonfinite": tf.logical_not(ok),
        }


class SGHMC(_Sampler):
    """Stochastic-gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin 2014, eq. 15).

    "SGD with momentum" parametrisation, unit mass, gradient-noise estimate β̂ = 0:
        v ← (1 − α) v − η ∇[λ U(θ)] + N(0, 2 α η I),   θ ← θ + v,
    with learning rate η = ``lr`` and momentum decay α = ``friction`` (0 < α ≤ 1). In terms of
    Hamiltonian dynamics: step size ε = √η, friction C = α/√η. The momentum v starts at zero,
    is part of the checkpointed state and is kept (as θ) when a step meets NaN/inf (skipped).
    Without Metropolis correction the stationary distribution deviates from π by O(η).
    """

    def __init__(
        self,
        variables: Sequence[tf.Variable],
        energy_fn: EnergyFn,
        *,
        lr: float,
        friction: float = 0.1,
        inverse_temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            variables,
            energy_fn,
            inverse_temperature=inverse_temperature,
            seed=seed,
            name="sghmc",
        )
        self._lr = _check_positive("lr", lr)
        friction = float(friction)
        if not (0.0 < friction <= 1.0):
            msg = f"`friction` must lie in (0, 1], got {friction}"
            raise ValueError(msg)
        self._friction = friction
        with self.name_scope:
            self.momentum = tf.Variable(
                tf.zeros([self._p], self._dtype), trainable=False, name="momentum"
            )

    def _step(self, batch: tuple) -> dict[str, tf.Tensor]:
        keys = self._keys()
        theta = flatten(self.model_variables)
        energy, grad = self._energy_and_grad(batch)
        noise = tf.random.stateless_normal([self._p], seed=keys[0], dtype=self._dtype)
        a, eta = self._friction, self._lr
        v = (1.0 - a) * self.momentum - (eta * self._lam) * grad + math.sqrt(2 * a * eta) * noise
        new = theta + v
        ok = tf.math.is_finite(energy) & _all_finite(grad) & _all_finite(new)
        assign_flat(self.model_variables, tf.where(ok, new, theta))
        self.momentum.assign(tf.where(ok, v, self.momentum))
        self._finish(ok, tf.logical_not(ok))
        return {
            "energy": energy,
            "accepted": ok,
            "accept_prob": tf.cast(ok, tf.float64),
            "nonfinite": tf.logical_not(ok),
        }
