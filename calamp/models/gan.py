"""A (Bayesian) GAN for calorimeter showers: latent noise (+ context) → non-negative cell energies.

Generator g(z, c; θ): an MLP from z ~ N(0, I_latent) (and the context c) to ``dim + 1`` outputs.
With ``output="energy"`` (default) the first ``dim`` are the logits of the cell fractions and the
last one the total-energy head, so a shower is

    x = E_tot · softmax(logits),   E_tot = energy_scale · softplus(h + log(e − 1)),

non-negative by construction and equal to ``energy_scale`` at h = 0. With ``output="linear"`` the
``dim`` outputs are unconstrained features (for use behind :mod:`calamp.preprocess`).
The discriminator is a deterministic MLP on (x / energy_scale, Σx / energy_scale, c).

Training (:meth:`ShowerGAN.fit`) alternates one discriminator and one generator Adam step with the
non-saturating loss (Goodfellow et al., arXiv:1406.2661), optionally with the R1 penalty
(γ/2)·E‖∇_x D(x_real)‖² (Mescheder et al., arXiv:1801.04406). Bayesian options:

* ``bayesian="vi"``: VI layers in the generator; its loss gets the KL term (``train_loss``).
* deterministic generator for ensembles and SG-MCMC. A GAN has no likelihood, so :meth:`nll` and
  :meth:`log_prob` raise ``NotImplementedError``; :meth:`adversarial_energy` is the generator loss
  against the current (fixed) discriminator, −mean log D(g(z)), which SG-MCMC can sample as
  π(θ_g) ∝ exp(−N · energy): a Bayesian-GAN-style posterior (Saatci & Wilson, arXiv:1705.09558,
  with the discriminator held at its trained state), *not* a likelihood posterior.

Only the generator's weights define a posterior draw: :attr:`trainable_variables`,
:attr:`eval_variables` and :attr:`fit_variables` exclude the discriminator, whose weights are in
:attr:`discriminator_variables` (checkpoints contain both).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from calamp._tf import tf, tf_keras
from calamp.bayes import vi as _vi
from calamp.models.base import Generator, fold_seed, register_generator, stateless_seed
from calamp.models.training import check_fit_inputs, train_loop
from calamp.optim import Adam

__all__ = ["OUTPUTS", "ShowerGAN"]

OUTPUTS = ("energy", "linear")
"""Generator output heads: non-negative cell energies, or unconstrained features."""

_SOFTPLUS_INV_1 = math.log(math.e - 1.0)  # softplus(log(e − 1)) = 1


def _layer_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([int(seed), 0x6A4, i]).generate_state(1)[0] % (2**31 - 1))


@register_generator("gan")
class ShowerGAN(Generator):
    """GAN generator of showers (N, dim) with a deterministic MLP discriminator.

    Args:
        dim: event dimension (e.g. 100 cells of a 10×10 image, flattened row-major).
        context_dim: conditioning dimension (e.g. 1 for the incident energy), 0 = none.
        bayesian: ``"vi"`` (VI generator layers) or ``None``.
        vi: :class:`~calamp.bayes.vi.VIConfig` or dict, for ``bayesian="vi"``.
        seed: initialisation seed.
        latent_dim: dimension of z.
        hidden, layers: generator hidden width and depth (ELU).
        disc_hidden, disc_layers: discriminator hidden width and depth (leaky ReLU, slope 0.2).
        output: ``"energy"`` (non-negative cells, total-energy head) or ``"linear"``.
        energy_scale: typical total energy in the units of x (e.g. GeV); the untrained total-
            energy head starts there and the discriminator sees x / energy_scale. ``None``: set
            from the mean event sum of the data at the first :meth:`fit` (then in ``config()``).
        r1_gamma: weight γ of the R1 penalty on real data (0 = off). On conditional 10×10
            photon showers it brought the total-energy W1 after 1,500 steps from 3.8 to 0.6 GeV.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int = 0,
        *,
        bayesian: str | None = None,
        vi: Any = None,
        seed: int = 0,
        latent_dim: int = 16,
        hidden: int = 64,
        layers: int = 2,
        disc_hidden: int = 64,
        disc_layers: int = 2,
        output: str = "energy",
        energy_scale: float | None = None,
        r1_gamma: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__(dim, context_dim, bayesian=bayesian, vi=vi, seed=seed, name=name)
        for arg, value in (
            ("latent_dim", latent_dim),
            ("hidden", hidden),
            ("layers", layers),
            ("disc_hidden", disc_hidden),
            ("disc_layers", disc_layers),
        ):
            if int(value) < 1:
                msg = f"`{arg}` must be a positive integer, got {value!r}"
                raise ValueError(msg)
        if output not in OUTPUTS:
            msg = f"`output` must be one of {OUTPUTS}, got {output!r}"
            raise ValueError(msg)
        if energy_scale is not None and not (energy_scale > 0 and math.isfinite(energy_scale)):
            msg = f"`energy_scale` must be a positive finite number or None, got {energy_scale!r}"
            raise ValueError(msg)
        if not (r1_gamma >= 0 and math.isfinite(r1_gamma)):
            msg = f"`r1_gamma` must be a non-negative finite number, got {r1_gamma!r}"
            raise ValueError(msg)
        self.latent_dim, self.hidden, self.n_layers = int(latent_dim), int(hidden), int(layers)
        self.disc_hidden, self.disc_layers = int(disc_hidden), int(disc_layers)
        self.output, self.r1_gamma = output, float(r1_gamma)
        self.energy_scale = None if energy_scale is None else float(energy_scale)
        # the scale lives in a variable so compiled functions see a later (first-fit) setting
        self._scale = tf.Variable(
            1.0 if energy_scale is None else float(energy_scale), trainable=False,
            name="energy_scale",
        )
        n_out = self.dim + 1 if output == "energy" else self.dim
        widths = [self.hidden] * self.n_layers + [n_out]
        acts = ["elu"] * self.n_layers + [None]
        self.gen_net = [
            _vi.dense(w, a, bayesian=bayesian, vi=self.vi, seed=_layer_seed(self.seed, i))
            for i, (w, a) in enumerate(zip(widths, acts, strict=True))
        ]
        dwidths = [self.disc_hidden] * self.disc_layers + [1]
        self.disc_net = [
            tf_keras.layers.Dense(
                w,
                kernel_initializer=tf_keras.initializers.GlorotUniform(
                    seed=_layer_seed(self.seed, 100 + i)
                ),
            )
            for i, w in enumerate(dwidths)
        ]
        self._generate(tf.zeros([1, self.latent_dim]), self._dummy_c(1))
        self.discriminate(tf.zeros([1, self.dim]), self._dummy_c(1))

    def _dummy_c(self, n: int) -> Any:
        return tf.zeros([n, self.context_dim]) if self.context_dim else None

    def _constructor_args(self) -> dict[str, Any]:
        return {
            "latent_dim": self.latent_dim,
            "hidden": self.hidden,
            "layers": self.n_layers,
            "disc_hidden": self.disc_hidden,
            "disc_layers": self.disc_layers,
            "output": self.output,
            "energy_scale": self.energy_scale,
            "r1_gamma": self.r1_gamma,
        }

    # -- variables ---------------------------------------------------------------------------
    @property
    def generator_variables(self) -> list[tf.Variable]:
        """Trainable generator variables (VI: posterior loc/rho), in layer order."""
        return [v for layer in self.gen_net for v in layer.trainable_variables]

    @property
    def discriminator_variables(self) -> list[tf.Variable]:
        """Trainable discriminator variables, in layer order."""
        return [v for layer in self.disc_net for v in layer.trainable_variables]

    @property
    def trainable_variables(self) -> tuple[tf.Variable, ...]:
        """The generator's trainable variables only (the discriminator is not part of θ)."""
        return tuple(self.generator_variables)

    @property
    def fit_variables(self) -> list[tf.Variable]:
        """Variables of the generator step of :meth:`fit`."""
        return self.generator_variables

    # -- networks ----------------------------------------------------------------------------
    def _generate(self, z: Any, c: Any) -> Any:
        h = z if c is None else tf.concat([z, tf.cast(c, tf.float32)], axis=-1)
        for layer in self.gen_net:
            h = layer(h)
        if self.output == "linear":
            return h
        logits, head = h[:, : self.dim], h[:, self.dim :]
        total = self._scale * tf.nn.softplus(head + _SOFTPLUS_INV_1)
        return total * tf.nn.softmax(logits, axis=-1)

    def generate(self, z: Any, c: Any = None) -> Any:
        """Events from given latent vectors with the current weights.

        Args:
            z: (N, latent_dim) latent vectors.
            c: (N, context_dim) context or ``None``.

        Returns:
            (N, dim) events; non-negative for ``output="energy"``.
        """
        z = tf.convert_to_tensor(z, tf.float32)
        return self._generate(z, self._check_c(c, None))

    def discriminate(self, x: Any, c: Any = None) -> Any:
        """Discriminator logits D(x, c), (N,): large for events that look real."""
        x = tf.convert_to_tensor(x, tf.float32)
        if self.output == "energy":
            # shape and total apart: fractions (scaled by √dim to O(1)) and log(total / scale)
            total = tf.reduce_sum(x, axis=-1, keepdims=True)
            frac = x / tf.maximum(total, 1e-12 * self._scale)
            log_total = tf.math.log(tf.maximum(total / self._scale, 1e-6))
            parts = [frac * math.sqrt(self.dim), log_total]
        else:
            parts = [x]
        if c is not None:
            parts.append(tf.cast(c, tf.float32))
        h = tf.concat(parts, axis=-1)
        for layer in self.disc_net[:-1]:
            h = tf.nn.leaky_relu(layer(h), alpha=0.2)
        return self.disc_net[-1](h)[:, 0]

    def _sample(self, n: Any, c: Any, seed: Any) -> Any:
        z = tf.random.stateless_normal(tf.stack([n, self.latent_dim]), seed)
        return self._generate(z, c)

    # -- losses ------------------------------------------------------------------------------
    def data_loss(self, x: Any, c: Any, seed: Any) -> Any:
        """Non-saturating generator loss mean softplus(−D(g(z, c))) = −mean log σ(D); scalar.

        ``x`` only sets the batch size (and ``c`` the context); z is drawn from ``seed``.
        """
        n = tf.shape(x)[0]
        fake = self._sample(n, c, seed)
        return tf.reduce_mean(tf.nn.softplus(-self.discriminate(fake, c)))

    def discriminator_loss(self, x: Any, c: Any, seed: Any) -> Any:
        """mean softplus(−D(x)) + mean softplus(D(g(z))) (+ R1 penalty); scalar.

        Args:
            x: (B, dim) real batch.
            c: (B, context_dim) context or ``None``.
            seed: stateless seed (2,) of the fake batch's latent vectors.
        """
        x = tf.convert_to_tensor(x, tf.float32)
        fake = tf.stop_gradient(self._sample(tf.shape(x)[0], c, seed))
        if self.r1_gamma > 0:
            with tf.GradientTape() as tape:
                tape.watch(x)
                d_real = self.discriminate(x, c)
            grad = tape.gradient(d_real, x)
            penalty = 0.5 * self.r1_gamma * tf.reduce_mean(tf.reduce_sum(tf.square(grad), -1))
        else:
            d_real = self.discriminate(x, c)
            penalty = 0.0
        d_fake = self.discriminate(fake, c)
        real = tf.reduce_mean(tf.nn.softplus(-d_real))
        return real + tf.reduce_mean(tf.nn.softplus(d_fake)) + penalty

    def adversarial_energy(self, x: Any, c: Any = None, *, seed: Any) -> Any:
        """Generator loss for SG-MCMC over the generator weights (mean per event); scalar.

        U(θ_g) = N · adversarial_energy is the energy of the Bayesian-GAN-style posterior
        exp(Σ log D(g(z; θ_g))) with the discriminator fixed (Saatci & Wilson,
        arXiv:1705.09558): a distribution over generators that fool the trained discriminator,
        not a likelihood posterior. Keep ``seed`` fixed within one sampler step (MH needs the
        energy of the current and the proposed θ on the same z). VI: no KL term is added.

        Args:
            x: (B, dim) batch (sets B).
            c: (B, context_dim) context or ``None``.
            seed: stateless seed (2,) or int for the latent vectors.
        """
        x = self._check_x(x)
        c = self._check_c(c, None)
        return self.data_loss(x, c, stateless_seed(seed))

    def nll(self, x: Any, c: Any = None) -> Any:
        """Not available: a GAN has no likelihood; see :meth:`adversarial_energy`."""
        msg = (
            "ShowerGAN has no likelihood; for SG-MCMC over the generator weights use "
            "adversarial_energy(x, c, seed=...) (a Bayesian-GAN-style posterior)"
        )
        raise NotImplementedError(msg)

    # -- training ----------------------------------------------------------------------------
    def fit(
        self,
        x: Any,
        c: Any = None,
        *,
        steps: int,
        batch_size: int,
        learning_rate: float = 1e-4,
        betas: tuple[float, float] = (0.0, 0.99),
        seed: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 1000,
        progress: bool = True,
        callback: Callable[[int, float], None] | None = None,
        disc_learning_rate: float | None = None,
        lr_schedule: str = "constant",
    ) -> dict[str, Any]:
        """Adversarial training: per step one discriminator, then one generator Adam update.

        Same conventions as :meth:`Generator.fit`: the batch of step t is a pure function of
        (seed, t), TF randomness is keyed by (seed, t) (stream 0 of the step seed: the
        discriminator's fake batch, stream 1: the generator's ``train_loss``), and with
        ``checkpoint_dir`` both networks, both optimizers and the step counter are saved every
        ``checkpoint_every`` steps; a second call with the same arguments resumes bit-identically.
        With ``energy_scale=None`` the scale is first set to the mean event sum of ``x``.

        Args:
            x: (N, dim) training events.
            c: (N, context_dim) context or ``None``.
            steps: total number of steps (including any already done).
            batch_size: events per step (<= N).
            learning_rate, betas: Adam settings of both networks (epsilon 1e-8); β1 = 0 with R1
                was the most stable on showers (total-energy W1 0.4–1.2 GeV after 1,500 steps
                over 3 seeds, against 1.6–3.8 with β = (0.5, 0.999)).
            seed: run seed.
            checkpoint_dir, checkpoint_every, progress: as in :meth:`Generator.fit`.
            callback: ``callback(step, generator_loss)`` after every step.
            disc_learning_rate: discriminator learning rate (default ``learning_rate``).
            lr_schedule: ``"constant"`` or ``"cosine"`` (both rates times
                ``(1 + cos(pi t / steps)) / 2``), as in :meth:`Generator.fit`.

        Returns:
            ``{"loss": (steps,) generator losses (incl. KL), "disc_loss": (steps,),
            "wall_seconds", "steps", "resumed_from"}``.

        Raises:
            TrainingError: on a non-finite loss or gradient (that update is not applied).
        """
        x_np, c_np, steps, batch_size = check_fit_inputs(
            self, x, c, steps, batch_size, checkpoint_every, lr_schedule
        )
        if self.energy_scale is None:
            if self.output == "energy":
                scale = float(np.mean(x_np.sum(axis=1), dtype=np.float64))
                if not (scale > 0 and math.isfinite(scale)):
                    msg = f"`x`: mean event sum must be positive to set energy_scale, got {scale}"
                    raise ValueError(msg)
            else:
                scale = 1.0
            self.energy_scale = scale
            self._scale.assign(scale)
        d_lr = learning_rate if disc_learning_rate is None else disc_learning_rate

        g_vars, d_vars = self.generator_variables, self.discriminator_variables
        g_opt = Adam(g_vars, learning_rate, betas, 1e-8, _vi.lr_factors(self, g_vars))
        d_opt = Adam(d_vars, d_lr, betas, 1e-8, _vi.lr_factors(self, d_vars))
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False)

        def all_finite(loss: Any, grads: list[Any]) -> Any:
            ok = tf.math.is_finite(loss)
            for g in grads:
                ok = tf.logical_and(ok, tf.reduce_all(tf.math.is_finite(g)))
            return ok

        def train_step(xb: Any, cb: Any, sd: Any, lr_factor: Any) -> Any:
            if self.bayesian == "vi":
                _vi.set_noise_seed(self, fold_seed(fold_seed(sd, 0), 1))
            with tf.GradientTape() as tape:
                d_loss = self.discriminator_loss(xb, cb, fold_seed(fold_seed(sd, 0), 0))
            d_grads = tape.gradient(d_loss, d_vars)
            d_ok = all_finite(d_loss, d_grads)
            if d_ok:
                d_opt.apply(d_grads, d_vars, lr_factor)
            with tf.GradientTape() as tape:
                g_loss = self.train_loss(xb, cb, seed=fold_seed(sd, 1))
            g_grads = tape.gradient(g_loss, g_vars)
            g_ok = tf.logical_and(d_ok, all_finite(g_loss, g_grads))
            if g_ok:
                g_opt.apply(g_grads, g_vars, lr_factor)
                step_var.assign_add(1)
            return (g_loss, d_loss), g_ok

        out = train_loop(
            tf.function(train_step),
            x_np,
            c_np,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            lr_schedule=lr_schedule,
            learning_rate=learning_rate,
            betas=betas,
            key_extra={"disc_learning_rate": d_lr},
            state={"model": self, "generator_optimizer": g_opt, "discriminator_optimizer": d_opt},
            step_var=step_var,
            loss_names=("generator loss", "discriminator loss"),
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            progress=progress,
            desc="fit gan",
            callback=callback,
        )
        return {
            "loss": out["losses"][:, 0].copy(),
            "disc_loss": out["losses"][:, 1].copy(),
            "wall_seconds": out["wall_seconds"],
            "steps": steps,
            "resumed_from": out["resumed_from"],
        }
