"""AdamMCMC step-size scan on the ring coupling flow: the measurement behind calamp's default
``sampler_lr`` for AdamMCMC (``RunConfig.sampler_step``).

    python analysis/sampler_step_scan.py [--steps 3000] [--lrs 1e-3,1e-4,3e-5]

Pre-trains the pipeline's ring flow (4 couplings of 2x64) for 5,000 steps (batch 1,000, n =
10,000), then runs 5 batched AdamMCMC chains (σ = 0.1, minibatch 256, moments frozen after 500
steps) from the pre-trained weights for each Adam step, and records per chain the acceptance
rate, the integrated autocorrelation time (second half) of the mean log-density of 4 groups of
256 fixed training events, their between-chain split-R̂, and the drift of that log-density from
the start (how far the chain leaves the pre-trained mode). Writes
``analysis/results/sampler_step_scan.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from calamp._tf import tf
from calamp.bayes.batched import BatchedAdamMCMC
from calamp.bayes.diagnostics import integrated_autocorrelation_time, split_rhat
from calamp.bayes.flat import get_flat
from calamp.models.flows import CouplingFlow
from calamp.models.training import EpochBatches
from calamp.simulate.ring import ring

OUT = Path(__file__).resolve().parent / "results" / "sampler_step_scan.json"
N, CHAINS, BATCH = 10_000, 5, 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lrs", default="1e-3,1e-4,3e-5")
    args = parser.parse_args()
    x = ring(N, seed=0).astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    model = CouplingFlow(2, n_couplings=4, hidden=(64, 64), seed=0)
    model.fit(x, steps=5000, batch_size=1000, learning_rate=1e-3, seed=1, progress=False)
    start = get_flat(model.trainable_variables)
    xref = tf.constant(np.broadcast_to(x[:1024], (CHAINS, 1024, 2)))

    def energy(theta, xb):
        nll = -tf.reduce_mean(model.batched_log_prob(theta, xb), axis=1) * N
        return nll + 0.5 * tf.reduce_sum(tf.square(theta), axis=1)

    rows = []
    for lr in (float(v) for v in args.lrs.split(",")):
        sampler = BatchedAdamMCMC(np.tile(start, (CHAINS, 1)), energy, seeds=list(range(CHAINS)),
                                  lr=lr, sigma=0.1, adapt_steps=500)

        @tf.function
        def stats(s=sampler):
            lp = model.batched_log_prob(s.theta, xref)
            return tf.reduce_mean(tf.reshape(lp, [CHAINS, 4, 256]), axis=2)

        streams = [EpochBatches(c, N, BATCH) for c in range(CHAINS)]
        trace = np.zeros((args.steps, CHAINS, 4))
        for t in range(args.steps):
            sampler.step(tf.constant(x[np.stack([b(t) for b in streams])]))
            trace[t] = stats().numpy()
        half = trace[args.steps // 2 :]
        rows.append({
            "lr": lr,
            "acceptance": sampler.acceptance_rate.tolist(),
            "tau_steps": [float(np.nanmax(integrated_autocorrelation_time(half[:, c])))
                          for c in range(CHAINS)],
            "rhat_between_chains": split_rhat(half, chains=CHAINS).tolist(),
            "drift_nats": (trace[-1].mean(0) - trace[0].mean(0)).tolist(),
        })
        print(json.dumps(rows[-1]), flush=True)
    OUT.write_text(json.dumps({"steps": args.steps, "chains": CHAINS, "batch": BATCH,
                               "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
