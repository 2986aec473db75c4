"""Common random numbers: draws of a network that share their latent noise, the split-batch
noise estimate of the amplification, and the job path (``generation_noise = "common"``)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import interrupt_network_once
from scipy import stats as sps

from calamp import pipeline, stats
from calamp.config import NOISE_BATCHES, ConfigError, make_config


def _location_model_precision(edges: np.ndarray, tau: float, w: np.ndarray) -> float:
    """Exact precision Σ_j w_j Var_θ b_j(θ) of bins of N(θ, 1) for θ ~ N(0, τ²)
    (Gauss-Hermite in θ; exact to ~1e-12 relative for these smooth b_j)."""
    x, wq = np.polynomial.hermite_e.hermegauss(80)
    theta, wq = tau * x, wq / wq.sum()
    b = sps.norm.cdf(edges[1:][None] - theta[:, None]) - sps.norm.cdf(
        edges[:-1][None] - theta[:, None]
    )
    mean = wq @ b
    return float(w @ (wq @ (b - mean) ** 2))


def test_split_batch_noise_estimate_is_unbiased_with_shared_latent_noise():
    """Gaussian location model: draw i generates x = θ_i + z with the same z for every draw.
    The noise left (events crossing an edge between draws) is not multinomial; the split-batch
    estimate must still give the exact weight precision on average, with an error (draws and
    event batches) that does not understate the replica scatter."""
    rng = np.random.default_rng(3)
    n_bins, s, g, tau, m, reps = 10, 20, 4_000, 0.02, NOISE_BATCHES, 300
    edges = sps.norm.ppf(np.linspace(0, 1, n_bins + 1))
    t = np.full(n_bins, 1.0 / n_bins)
    w = (1 / t) / np.sum(1 - t)
    exact = _location_model_precision(edges, tau, w)
    sizes = np.diff((np.arange(m + 1) * g) // m)
    cuts = np.r_[0, np.cumsum(sizes)]
    p, err, p_multinomial = [], [], []
    for _ in range(reps):
        theta = rng.normal(0.0, tau, s)
        idx = np.searchsorted(edges, theta[:, None] + rng.standard_normal(g)[None]) - 1
        hb = np.stack(
            [
                [np.bincount(row[cuts[b] : cuts[b + 1]], minlength=n_bins) / sizes[b]
                 for b in range(m)]
                for row in idx
            ]
        )
        h = np.einsum("smb,m->sb", hb, sizes) / g
        a = stats.amplification(h, g, truth=t, batches=hb, batch_sizes=sizes)
        p.append(a.precision)
        err.append(a.precision_err)
        p_multinomial.append(stats.amplification(h, g, truth=t).precision)
    p, err = np.array(p), np.array(err)
    sem = p.std(ddof=1) / np.sqrt(reps)
    assert abs(p.mean() - exact) < 4 * sem, (p.mean(), exact, sem)
    # the error estimate: not below the scatter (3 sigma of a std from 300 replicas: 12 %) and
    # conservative by at most the quadrature sum of its two jackknifes (< 2x)
    ratio = np.sqrt(np.mean(err**2)) / p.std(ddof=1)
    assert 0.88 < ratio < 2.0, ratio
    # the multinomial noise model is wrong for shared noise: it subtracts far too much
    assert np.mean(p_multinomial) < exact - 10 * sem


def test_batches_are_validated():
    h = np.full((5, 4), 0.25)
    with pytest.raises(ValueError, match="batches"):
        stats.amplification(h, 100, batches=np.full((5, 4), 0.25), batch_sizes=[50, 50])
    with pytest.raises(ValueError, match="batch_sizes"):
        stats.amplification(h, 100, batches=np.full((5, 2, 4), 0.25), batch_sizes=[100])
    bad = np.full((5, 2, 4), 0.25)
    bad[0, 0] = [0.4, 0.1, 0.25, 0.25]
    with pytest.raises(ValueError, match="weighted mean"):
        stats.amplification(h, 100, batches=bad, batch_sizes=[50, 50])


def test_oracle_with_common_noise_gives_unit_amplification_and_calibration(tmp_path):
    """The oracle's draws do not really share noise (each resamples its own bootstrap): the
    split-batch estimate must find the multinomial noise itself, and A = 1, calibrated."""
    s, k, n = 20, 5, 2_000
    cfg = make_config(
        dict(toy="ring", method="oracle", networks=k, draws=s, generated=40_000,
             generation_noise="common", truth_events=400_000, n_quantiles=(10,), n_train=n,
             bootstrap=0, plots=False, progress=False)
    )
    out = pipeline.run_job(cfg, out=tmp_path / "oracle")
    assert out["data"]["generation_noise"] == "common"
    for key, res in out["binnings"].items():
        amp = res["amplification"]["combined"]
        z = (amp["precision"] * n - 1) / (amp["precision_err"] * n)
        assert abs(z) < 4, (key, amp)
        # nothing is shared, so the coverage is judged, and calibrated
        assert res["coverage"]["common_noise_share"] < 0.1, key
        assert res["coverage"]["state"] == "calibrated", (key, res["coverage"]["mad"])
        clo = res["closure"]["combined"]
        z_eq = (clo["precision"] * n - 1) / (clo["precision_err"] * n)
        assert abs(z_eq) < 4, (key, clo)


SMALL = dict(
    toy="ring", model="flow", method="vi", networks=2, draws=4, train_steps=60, batch_size=100,
    n_train=400, truth_events=5_000, n_quantiles=(3,), hidden=16, layers=2, bootstrap=0,
    generated=3_000, generation_noise="common", plots=False, progress=False,
)


def test_common_noise_job_shares_noise_is_chunk_independent_and_resumes(tmp_path, monkeypatch):
    from calamp.generation import draw_events
    from calamp.network import load_network

    cfg = make_config(SMALL)
    full = pipeline.run_job(cfg, out=tmp_path / "full")
    # the draws map the same latent noise: with one draw's weights in both, identical events
    nd = load_network(tmp_path / "full" / "draws", 0)
    nd.weights[1] = nd.weights[0]
    a = np.concatenate(list(draw_events(cfg, nd, "ring", 0, 500)))
    b = np.concatenate(list(draw_events(cfg, nd, "ring", 1, 500)))
    np.testing.assert_array_equal(a, b)
    indep = make_config(SMALL, dict(generation_noise="independent"))
    c = np.concatenate(list(draw_events(indep, nd, "ring", 1, 500)))
    assert not np.array_equal(a, c)
    with np.load(tmp_path / "full" / "results.npz") as data:
        base = {k: data[k] for k in data.files if k.startswith(("fractions/", "batches/"))}
    assert {k for k in base if k.startswith("batches/")} == {
        f"batches/{key}" for key in full["binnings"]
    }
    assert next(v for k, v in base.items() if k.startswith("batches/")).shape[2] == NOISE_BATCHES
    # batches cut at event indices, not chunks: the numbers do not depend on the chunk size
    pipeline.run_job(make_config(SMALL, dict(chunk_size=77)), out=tmp_path / "chunk")
    with np.load(tmp_path / "chunk" / "results.npz") as data:
        for key, v in base.items():
            np.testing.assert_array_equal(data[key], v)
    interrupt_network_once(monkeypatch, "fill_network")
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_job(cfg, out=tmp_path / "resumed")
    resumed = pipeline.run_job(cfg, out=tmp_path / "resumed", resume=True)
    again = pipeline.reanalyse(tmp_path / "full", plots=False)
    for key, res in full["binnings"].items():
        n_prime = res["amplification"]["n_prime"]
        assert resumed["binnings"][key]["amplification"]["n_prime"] == n_prime
        assert again["binnings"][key]["amplification"]["n_prime"] == pytest.approx(
            n_prime, rel=1e-12)
        assert "common_noise_share" in res["coverage"]


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        (dict(generation_noise="shared"), "'independent' or 'common'"),
        (dict(generated=2 * NOISE_BATCHES - 1), "generated >= "),
        (dict(bin_probabilities="quadrature"), "sampled bin probabilities"),
    ],
)
def test_common_noise_options_are_validated(opts, match):
    with pytest.raises(ConfigError, match=match):
        make_config(SMALL, opts)
