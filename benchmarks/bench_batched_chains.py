"""AdamMCMC + Metropolis–Hastings on the ring coupling flow: B chains in one graph vs one by one.

Run: ``python benchmarks/bench_batched_chains.py [--quick] [--chains 1,2,5,10] [--model cnf]``

The ring toy's coupling flow (the pipeline's ring size: 4 couplings of 2x64, RQ splines,
P weights printed; ``--model cnf``: the ring study's CNF 3x32 with RK4, 8 steps), minibatch
256 of 10,000 ring events, σ = 0.1, the energy of ``calamp.posterior`` (N · mean NLL +
Gaussian prior). Rows:

- ``single``: :class:`calamp.bayes.samplers.AdamMCMC` on the model's variables, one chain;
- ``batched B``: :class:`calamp.bayes.batched.BatchedAdamMCMC` with B chains, each on its
  own minibatch, through the model's ``batched_log_prob``.

Per-step cost from the difference of a long and a short timed run (compilation and warm-up
excluded), 1 intra-op thread (as a pipeline worker runs). Reports ms per step and ms per
chain-step, and the speed-up per chain-step over ``single``.

``--schedule``: the whole sampler schedule of the pipeline instead
(``calamp.posterior._run_sampler``: burn-in 100 + 1,000 steps per chain, minibatch, trace and
bookkeeping, tracing included) for 1 chain, 5 chains one after another (the single-chain path)
and 5 chains batched; wall seconds and acceptance rates.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import numpy as np  # noqa: E402

from calamp._tf import tf  # noqa: E402
from calamp.bayes.batched import BatchedAdamMCMC  # noqa: E402
from calamp.bayes.flat import get_flat  # noqa: E402
from calamp.bayes.samplers import AdamMCMC  # noqa: E402
from calamp.models.cnf import FlowMatchingCNF  # noqa: E402
from calamp.models.flows import CouplingFlow  # noqa: E402
from calamp.simulate.ring import ring  # noqa: E402

N, BATCH = 10_000, 256


def _timed(step, n_short: int, n_long: int) -> float:
    """Seconds per call of ``step()`` from the difference of a long and a short run."""
    step()  # trace + compile
    step()

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            out = step()
        np.asarray(out["energy"])  # wait for the last step
        return time.perf_counter() - t0

    return (run(n_long) - run(n_short)) / (n_long - n_short)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--chains", default="1,2,5,10", help="comma-separated B values")
    parser.add_argument("--model", choices=("flow", "cnf"), default="flow")
    parser.add_argument("--schedule", action="store_true", help="time the pipeline schedule")
    args = parser.parse_args()
    if args.schedule:
        schedule()
        return
    n_short, n_long = (5, 20) if args.quick else (50, 250)
    x = ring(N, seed=0).astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    if args.model == "flow":
        model = CouplingFlow(2, n_couplings=4, hidden=(64, 64), seed=0)
    else:
        model = FlowMatchingCNF(2, hidden=32, layers=3, solver="rk4", n_steps=8, seed=0)
    variables = list(model.trainable_variables)
    p = int(sum(int(np.prod(v.shape)) for v in variables))
    rng = np.random.default_rng(0)

    def prior(t):
        return 0.5 * tf.reduce_sum(tf.square(t))

    xb1 = tf.constant(x[rng.choice(N, BATCH, replace=False)])
    single = AdamMCMC(
        variables, lambda: model.nll(xb1) * N + prior(tf.concat(
            [tf.reshape(v, [-1]) for v in variables], 0)), sigma=0.1, seed=0, adapt_steps=100,
    )
    t_single = _timed(single.step, n_short, n_long)
    print(f"ring {args.model}, P = {p} weights, batch {BATCH}, 1 thread")
    print("| chains B | ms / step | ms / chain-step | speed-up per chain-step |")
    print("|---|---|---|---|")
    print(f"| single | {1e3 * t_single:.2f} | {1e3 * t_single:.2f} | 1.00 |")
    start = get_flat(variables)
    for b in (int(v) for v in args.chains.split(",")):
        xb = tf.constant(np.stack([x[rng.choice(N, BATCH, replace=False)] for _ in range(b)]))

        def energy(theta, xs):
            data = -tf.reduce_mean(model.batched_log_prob(theta, xs), axis=1) * N
            return data + 0.5 * tf.reduce_sum(tf.square(theta), axis=1)

        sampler = BatchedAdamMCMC(
            np.tile(start, (b, 1)), energy, seeds=list(range(b)), sigma=0.1, adapt_steps=100
        )
        t = _timed(lambda s=sampler, xs=xb: s.step(xs), n_short, n_long)
        print(f"| batched {b} | {1e3 * t:.2f} | {1e3 * t / b:.2f} | {t_single / (t / b):.2f} |")


def schedule() -> None:
    """Wall time of the pipeline's sampler schedule: 1 chain, 5 one by one, 5 batched."""
    from calamp import posterior
    from calamp.config import make_config

    x = ring(N, seed=0).astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    batched = posterior.batched_chains
    print("| chains | path | wall s (1,100 steps per chain) | acceptance |")
    print("|---|---|---|---|")
    for chains, path in ((1, "single"), (5, "single"), (5, "batched")):
        cfg = make_config(dict(toy="ring", method="adammcmc", model="flow", burn_in=100,
                               mcmc_steps=1_100, draws=10 * chains, chains=chains,
                               progress=False))
        model = CouplingFlow(2, n_couplings=4, hidden=(64, 64), seed=0)
        # the single-chain path, as models without a batched log-density take it
        posterior.batched_chains = batched if path == "batched" else (lambda cfg, model: False)
        try:
            t0 = time.perf_counter()
            _, info = posterior._run_sampler(cfg, 0, model, x, None, BATCH, None)
            wall = time.perf_counter() - t0
        finally:
            posterior.batched_chains = batched
        print(f"| {chains} | {path} | {wall:.1f} | {info['acceptance_rate']:.4f} |")


if __name__ == "__main__":
    main()
