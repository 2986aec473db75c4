"""Noise-free bin probabilities by quadrature (calamp.quadrature, the pipeline's quadrature path):
exact against the ring's own density, within the statistical error of a large generated sample
for a trained flow, and through the main job."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import interrupt_network_once
from scipy import stats
from scipy.optimize import brentq

from calamp import pipeline
from calamp.binnings import QuantileBinning, RegularBinning, fill_counts, to_polar
from calamp.config import ConfigError, make_config
from calamp.quadrature import integrate, polar_rule
from calamp.simulate.ring import ring, ring_log_prob, ring_radius_cdf


def _exact_ring_binnings(sides=(5, 10, 50, 200)) -> dict:
    """(r, phi) grids with the ring's exact quantile edges: every cell has probability 1/B."""
    out = {}
    for n in sides:
        qs = np.linspace(0.0, 1.0, n + 1)[1:-1]
        r = [brentq(lambda x, q=q: float(ring_radius_cdf(x)) - q, 4.0, 60.0) for q in qs]
        er = np.array([4.0, *r, 15.0])
        ep = np.linspace(0.0, 2.0 * np.pi, n + 1)
        out[f"ring/q{n}"] = QuantileBinning((er, ep), ("r", "phi"))
        out[f"r/q{n}"] = QuantileBinning((er,), ("r",))
        out[f"phi/q{n}"] = QuantileBinning((ep,), ("phi",))
    return out


def test_exact_ring_density_gives_equiprobable_cells():
    """Truth first: the ring's exact density over its exact quantile cells is 1/B per cell (the
    kink of the density at r0 = 4 is a breakpoint, the tail is integrated to infinity). The
    tolerance 1e-5 relative is 6,000 times below the relative multinomial error of one 200x200
    cell in a sample of 10^7 events (0.063)."""
    binnings = _exact_ring_binnings()
    probs, mass = integrate(polar_rule(binnings, order=3), ring_log_prob)
    assert mass == pytest.approx(1.0, abs=1e-7)
    for key, p in probs.items():
        np.testing.assert_allclose(p * p.size, 1.0, atol=1e-5, err_msg=key)


def test_gaussian_mass_and_chunk_independence():
    """An off-centre Gaussian's mass is 1 (its tail reaches beyond the largest edge); the result
    is bitwise independent of how the points are chunked."""
    binnings = {"ring/q4": QuantileBinning((np.array([0.5, 1.0, 2.0, 3.0]),
                                             np.linspace(0, 2 * np.pi, 5)), ("r", "phi"))}
    mu, sd = np.array([1.0, -0.5]), 1.3

    def log_g(xy):
        return stats.multivariate_normal(mu, sd**2 * np.eye(2)).logpdf(xy)

    rule = polar_rule(binnings)
    a, mass = integrate(rule, log_g, chunk_size=1_000)
    b, _ = integrate(rule, log_g, chunk_size=10**7)
    assert mass == pytest.approx(1.0, abs=1e-7)
    np.testing.assert_array_equal(a["ring/q4"], b["ring/q4"])


def test_bad_binnings_are_refused():
    with pytest.raises(ValueError, match="empty"):
        polar_rule({})
    three = QuantileBinning(tuple(np.linspace(0, 1, 3) for _ in range(3)), ("a", "b", "c"))
    with pytest.raises(ValueError, match="'x/q2'.*not polar"):
        polar_rule({"x/q2": three})
    negative = RegularBinning((3, 3), (-1.0, 0.0), (1.0, 6.0), ("r", "phi"))
    with pytest.raises(ValueError, match="not polar"):
        polar_rule({"ring/q3": negative})
    good = _exact_ring_binnings((3,))
    with pytest.raises(ValueError, match="order"):
        polar_rule(good, order=0)


@pytest.fixture(scope="module")
def trained_ring_flow():
    """A small coupling flow trained briefly on the ring (its density has the ring's shape and
    the narrow structures a learned density has)."""
    from calamp.models.flows import CouplingFlow

    x = ring(4_000, seed=5)
    scale = float(np.std(x))
    model = CouplingFlow(2, 0, n_couplings=4, hidden=(32, 32), seed=3)
    model.fit((x / scale).astype(np.float32), None, steps=300, batch_size=256,
              learning_rate=3e-3, seed=1, progress=False)
    return model, scale


def test_quadrature_agrees_with_a_large_generated_sample(trained_ring_flow):
    """The bin probabilities of a trained flow by quadrature equal the fractions of 10^6 of
    its generated events on a 50 x 50 grid within their multinomial error: Pearson's
    chi-square against chi^2(B - 1), two-sided at the 1e-4 level (fixed seeds)."""
    model, scale = trained_ring_flow
    truth = to_polar(ring(200_000, seed=7))
    from calamp.binnings import quantile_binning

    binning = quantile_binning(truth, 50, names=("r", "phi"))

    def log_density(xy):
        z = (xy / scale).astype(np.float32)
        return np.asarray(model.log_prob(z), np.float64) - 2.0 * np.log(scale)

    probs, mass = integrate(polar_rule({"ring/q50": binning}), log_density)
    assert mass == pytest.approx(1.0, abs=2e-3)
    p = probs["ring/q50"] / mass
    n = 1_000_000
    events = np.asarray(model.sample(n, seed=[11, 12]), np.float64) * scale
    counts = fill_counts(binning, to_polar(events))
    chi2 = float(np.sum((counts - n * p) ** 2 / (n * p)))
    dof = p.size - 1
    assert stats.chi2.sf(chi2, dof) > 1e-4, chi2
    assert stats.chi2.cdf(chi2, dof) > 1e-4, chi2


QUAD = dict(
    toy="ring", model="flow", method="vi", networks=2, draws=4, train_steps=60, batch_size=100,
    n_train=400, truth_events=5_000, n_quantiles=(3, 5), hidden=16, layers=2, bootstrap=5,
    bin_probabilities="quadrature", plots=False, progress=False,
)


def test_quadrature_job_is_noise_free_and_resumes(tmp_path, monkeypatch):
    cfg = make_config(QUAD)
    full = pipeline.run_job(cfg, out=tmp_path / "full")
    assert full["data"]["bin_probabilities"] == "quadrature"
    assert full["data"]["n_generated_per_draw"] is None
    for net in full["networks"]:
        q = net["quadrature"]
        assert q["converged"] and q["refined_max_z"] <= q["tolerance_z"]
        assert abs(q["mass_min"] - 1) < 1e-2 and abs(q["mass_max"] - 1) < 1e-2
    for res in full["binnings"].values():
        assert np.all(np.asarray(res["amplification"]["noise_fraction"]) == 0.0)
    # results do not depend on the generation chunk size (quadrature blocks are fixed)
    other = pipeline.run_job(make_config(QUAD, dict(chunk_size=77)), out=tmp_path / "chunk")
    for key, res in full["binnings"].items():
        assert other["binnings"][key]["amplification"]["n_prime"] == res["amplification"][
            "n_prime"]

    interrupt_network_once(monkeypatch, "integrate_network")
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_job(cfg, out=tmp_path / "resumed")
    resumed = pipeline.run_job(cfg, out=tmp_path / "resumed", resume=True)
    for key, res in full["binnings"].items():
        assert resumed["binnings"][key]["amplification"]["n_prime"] == res["amplification"][
            "n_prime"]
    # the stored per-draw probabilities reanalyse to the same numbers (no generation noise)
    again = pipeline.reanalyse(tmp_path / "full", plots=False)
    for key, res in full["binnings"].items():
        assert again["binnings"][key]["amplification"]["n_prime"] == pytest.approx(
            res["amplification"]["n_prime"], rel=1e-12)


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        (dict(toy="drop"), "quadrature needs the ring toy"),
        (dict(model="gan", method="ensemble"), "model 'gan'"),
        (dict(method="oracle"), "oracle"),
        (dict(bin_probabilities="exact"), "'sampled' or 'quadrature'"),
    ],
)
def test_quadrature_options_are_validated(opts, match):
    base = {k: v for k, v in QUAD.items() if not (k == "toy" and opts.get("toy") == "drop")}
    with pytest.raises(ConfigError, match=match):
        make_config(base, {k: v for k, v in opts.items() if v != "drop"})
