"""Training-step cost of the default shower flow (8 couplings of 2x128 RQ splines, 101
features, batch 256), deterministic and VI, with and without XLA, and the cost of XLA's
stateless normal random numbers on CPU (why the VI step gains less from XLA).

Run alone on an idle machine (1 TensorFlow thread, as in a worker process):
``python benchmarks/bench_shower_flow.py``. Prints a Markdown table; about 3 minutes.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

from calamp._tf import tf  # noqa: E402
from calamp.bayes.vi import VIConfig  # noqa: E402
from calamp.models.flows import CouplingFlow  # noqa: E402


def step_cost(vi: bool, xla: bool, steps: int = 60, warm: int = 10, couplings: int = 8,
              hidden: int = 128) -> tuple[float, float]:
    """(compile + first step seconds, seconds per later step) of CouplingFlow.fit."""
    x = np.random.default_rng(0).standard_normal((2560, 101)).astype(np.float32)
    kw = dict(bayesian="vi", vi=VIConfig.from_k(1.0, 10_000, init_scale=1e-3)) if vi else {}

    class Flow(CouplingFlow):
        @property
        def xla(self) -> bool:  # type: ignore[override]
            return xla

    model = Flow(101, 0, n_couplings=couplings, hidden=(hidden, hidden), seed=0, **kw)
    stamps: dict[int, float] = {}
    t0 = time.perf_counter()
    model.fit(x, None, steps=steps, batch_size=256, seed=1, progress=False,
              callback=lambda s, _loss: stamps.__setitem__(s, time.perf_counter()))
    return stamps[1] - t0, (stamps[steps] - stamps[warm]) / (steps - warm)


def vi_ablation(steps: int = 50, warm: int = 10) -> list[tuple[str, float]]:
    """Where the VI step's extra time goes (XLA, default shower flow): ms per step of the VI
    step as is, with the weight noise replaced by a constant (no random numbers), and with the
    KL term dropped, beside the deterministic step. The ablations change what is computed, so
    they are profiles, not training settings."""
    from calamp.bayes import vi as vi_mod

    rows = [("deterministic", step_cost(False, True, steps, warm)[1]),
            ("VI k=1 as is", step_cost(True, True, steps, warm)[1])]
    keep = vi_mod.VIDense.sample_weights, vi_mod.VIDense.kl_divergence
    try:
        vi_mod.VIDense.sample_weights = (  # type: ignore[method-assign]
            lambda self, seed: self.posterior_loc + self.posterior_scale * 0.5)
        rows.append(("VI k=1, no random numbers", step_cost(True, True, steps, warm)[1]))
        vi_mod.VIDense.sample_weights = keep[0]  # type: ignore[method-assign]
        vi_mod.VIDense.kl_divergence = lambda self: tf.zeros([])  # type: ignore[method-assign]
        rows.append(("VI k=1, no KL term", step_cost(True, True, steps, warm)[1]))
    finally:
        vi_mod.VIDense.sample_weights, vi_mod.VIDense.kl_divergence = keep
    return rows


def rng_cost(xla: bool, n: int = 1_360_000, repeats: int = 10) -> float:
    """Seconds for n stateless standard normals (one VI weight sample of the flow)."""
    f = tf.function(lambda s: tf.reduce_sum(tf.random.stateless_normal([n], s)), jit_compile=xla)
    s = tf.constant([1, 2])
    f(s)
    t0 = time.perf_counter()
    for _ in range(repeats):
        f(s).numpy()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true",
                   help="also the small flows (3x32: the quick preset, 2x16: the tests)")
    p.add_argument("--ablate", action="store_true",
                   help="only the VI step's profile (random numbers, KL) at the default size")
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    if args.ablate:
        print("| 8x128 XLA step | per step [ms] |")
        print("|---|---|")
        for name, per in vi_ablation():
            print(f"| {name} | {1e3 * per:.0f} |", flush=True)
        return
    print("| flow | training step | compile + first step [s] | per step [ms] |")
    print("|---|---|---|---|")
    archs = [(8, 128)] + ([(3, 32), (2, 16)] if args.small else [])
    for couplings, hidden in archs:
        for vi in (False, True):
            for xla in (False, True):
                first, per = step_cost(vi, xla, couplings=couplings, hidden=hidden)
                name = f"{'VI k=1' if vi else 'deterministic'}, {'XLA' if xla else 'plain'}"
                print(f"| {couplings}x{hidden} | {name} | {first:.1f} | {1e3 * per:.0f} |",
                      flush=True)
    for xla in (False, True):
        print(f"| 8x128 | 1.36 M stateless normals, {'XLA' if xla else 'plain'} | – | "
              f"{1e3 * rng_cost(xla):.0f} |", flush=True)


if __name__ == "__main__":
    main()
