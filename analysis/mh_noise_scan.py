"""How noisy is AdamMCMC's minibatch Metropolis–Hastings test on the ring flow?

    python analysis/mh_noise_scan.py            # ~6 min on 1 core; writes the JSON below

AdamMCMC accepts on the energy difference of the *minibatch* (as the reference code does).
That difference is a noisy estimate of the full-data one, with variance
χ² = λ² B s²(δ) (1 − B/N) estimated from the B per-event differences δ_i; when χ² ≫ 1 the
accept/reject decision is driven by the noise, and the chain samples a wider distribution than
the posterior (on a Gaussian posterior: standard deviations 1.6x too large at N/B = 5,
``tests/test_samplers.py``). The exact correction (``--mh-noise penalty``,
:func:`calamp.bayes.samplers.minibatch_noise_penalty`) subtracts ≈ χ²/2 from log α and is only
usable where χ² ≲ 1.

This script trains network 0 of the committed ring AdamMCMC point
(``analysis/results/ring_adammcmc_point.json``: coupling flow 4x64, 5,000 steps on 10,000 ring
events, batch 256) and then, for step scales f (the Adam step ``f · 1e-4`` and the proposal
noise ``σ = f · 0.1``) and batch sizes, runs short chains with and without the penalty and
records the acceptance and the median χ² of the MH tests (reported by the sampler in both
modes). The result is stored under ``mh_noise_scan`` in
``analysis/results/ring_adammcmc_point.json`` (the point it diagnoses), and the point's section
of ``analysis/RING_RESULTS.md`` is rendered again (``analysis/ring_mcmc_point.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
BASE_LR, BASE_SIGMA = 1e-4, 0.1  # the committed point's sampler settings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-steps", type=int, default=5_000)
    ap.add_argument("--steps", type=int, default=400, help="sampler steps per setting")
    ap.add_argument("--scales", default="1,0.3,0.1,0.03,0.01")
    ap.add_argument("--batches", default="256,1000")
    args = ap.parse_args(argv)

    import dataclasses

    import numpy as np

    from calamp.bayes.flat import get_flat
    from calamp.config import RunConfig
    from calamp.posterior import _batched_sampler, _stacked_batch_fn, _training_data, build_model
    from calamp.seeds import derive_seed
    from calamp.sources import prepare_source

    cfg = RunConfig(toy="ring", model="flow", method="adammcmc", hidden=64, layers=4,
                    train_steps=args.train_steps, n_train=10_000, batch_size=256, networks=1,
                    truth_events=10_000, progress=False, plots=False)
    source = prepare_source(cfg)
    _, x, c = _training_data(cfg, 0, source)
    n = len(x)
    model = build_model(cfg, x.shape[1], 0, bayesian=None, n_train=n,
                        seed=derive_seed(cfg.seed, "init", 0))
    t0 = time.perf_counter()
    model.fit(x, c, steps=cfg.train_steps, batch_size=cfg.batch_size,
              learning_rate=cfg.learning_rate, lr_schedule=cfg.lr_schedule,
              seed=derive_seed(cfg.seed, "fit", 0), progress=False)
    fit_seconds = time.perf_counter() - t0
    start = get_flat(model.trainable_variables)

    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        for f in (float(s) for s in args.scales.split(",")):
            for penalty in (False, True):
                # the pipeline's sampler (energy with per-event terms) at this step scale
                point = dataclasses.replace(
                    cfg, sampler_lr=f * BASE_LR, sigma=f * BASE_SIGMA, burn_in=args.steps // 4,
                    mh_noise="penalty" if penalty else "none",
                )
                sampler = _batched_sampler(point, model, start,
                                           [derive_seed(cfg.seed, "sampler", 0)], n)
                batches = _stacked_batch_fn(x, c, batch, sampler.seeds)
                pens, acc = [], []
                t0 = time.perf_counter()
                for step in range(args.steps):
                    out = sampler.step(*batches(step))
                    pens.append(float(out["noise_chi2"][0]))
                    acc.append(bool(out["accepted"][0]))
                row = {
                    "batch": batch, "scale": f, "sampler_lr": f * BASE_LR,
                    "sigma": f * BASE_SIGMA, "penalty": penalty,
                    "acceptance": float(np.mean(acc)),
                    "median_noise_chi2": float(np.median(pens)),
                    "seconds": time.perf_counter() - t0,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {
        "command": "python analysis/mh_noise_scan.py" + (
            "" if argv is None and len(sys.argv) == 1 else " " + " ".join(argv or sys.argv[1:])),
        "model": {"kind": "flow", "couplings": 4, "hidden": 64, "train_steps": cfg.train_steps,
                  "n_train": n, "fit_seconds": fit_seconds},
        "steps_per_setting": args.steps,
        "rows": rows,
    }
    import ring_mcmc_point

    point = json.loads(ring_mcmc_point.POINT_JSON.read_text())
    point["mh_noise_scan"] = result
    ring_mcmc_point.POINT_JSON.write_text(json.dumps(point, indent=1) + "\n")
    ring_mcmc_point.write_document(point)
    print(f"wrote {ring_mcmc_point.POINT_JSON} (mh_noise_scan) and its RING_RESULTS.md section")
    return 0


if __name__ == "__main__":
    sys.exit(main())
