"""Tests of calamp.simulate: Monte Carlo against the quadrature of the same model, the ring toy
against its exact density, determinism, and the command line."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from calamp.io import read_showers
from calamp.simulate import (
    BLOCK_SIZE,
    CaloConfig,
    iter_photon_showers,
    longitudinal_mean_max,
    longitudinal_parameters,
    main,
    mean_deposit_depth,
    mean_image,
    photon_showers,
    ring,
    ring_log_prob,
    ring_radius_cdf,
    ring_radius_pdf,
    sample_shower_parameters,
)

# A calorimeter that contains everything: one huge cell, 10^4 X0 deep.
FULL = CaloConfig(nx=1, ny=1, cell_size_mm=1e7, depth_x0=1e4)


@pytest.fixture(scope="module")
def showers50():
    return photon_showers(20_000, 50.0, seed=11)


# ---------------------------------------------------------------- shower physics


def test_mean_image_matches_monte_carlo_per_cell(showers50):
    frac = showers50.energy / 50.0
    mc = frac.mean(axis=0)
    se = frac.std(axis=0, ddof=1) / math.sqrt(len(frac))
    expected = mean_image(50.0)
    # per-cell z-scores; 100 cells, Bonferroni: P(max |z| > 4.5) ~ 100 * 6.8e-6 < 1e-3
    z = (mc - expected) / se
    assert np.abs(z).max() < 4.5


def test_containment_fractions_match_physics_and_quadrature(showers50):
    frac = showers50.energy.sum(axis=(1, 2)) / 50.0
    core = showers50.energy[:, 4:6, 4:6].sum(axis=(1, 2)) / 50.0
    expected = mean_image(50.0)
    for sample, exp in ((frac, expected.sum()), (core, expected[4:6, 4:6].sum())):
        se = sample.std(ddof=1) / math.sqrt(len(sample))
        assert abs(sample.mean() - exp) < 4 * se  # 4 standard errors of the sample mean
    # PHYSICS.md: ~96% in the 10x10 grid for 50 GeV (model value 0.960), 2x2 core ~75-80%
    assert 0.94 < expected.sum() < 0.98
    assert 0.70 < expected[4:6, 4:6].sum() < 0.82


def test_quadrature_converged():
    coarse = mean_image(50.0)
    fine = mean_image(50.0, n_hermite=10, n_depth=64, n_impact=6)
    assert np.abs(coarse - fine).max() < 1e-6


@pytest.mark.parametrize("depth", [6.0, 12.0])
def test_longitudinal_leakage_matches_quadrature(depth):
    # one huge cell: the contained fraction probes the depth profile incl. the conversion depth
    cfg = CaloConfig(nx=1, ny=1, cell_size_mm=1e7, depth_x0=depth, sampling_term=0.0)
    f = photon_showers(4_000, 50.0, seed=5, config=cfg).energy[:, 0, 0] / 50.0
    se = f.std(ddof=1) / math.sqrt(len(f))
    assert abs(f.mean() - mean_image(50.0, cfg)[0, 0]) < 4 * se


def test_shower_parameters_match_analytic_moments():
    n = 40_000
    par = sample_shower_parameters(n, 50.0, seed=2)
    depth_max = par.t_conv + par.t_max
    se = depth_max.std(ddof=1) / math.sqrt(n)
    assert abs(depth_max.mean() - longitudinal_mean_max(50.0)) < 4 * se
    # shower max ~ 8 X0 after the conversion (PHYSICS.md)
    assert 7.0 < float(np.exp(longitudinal_parameters(50.0).mean_ln_t)) < 9.0
    mean_depth = par.t_conv + par.alpha / par.beta
    se = mean_depth.std(ddof=1) / math.sqrt(n)
    assert abs(mean_depth.mean() - mean_deposit_depth(50.0)) < 4 * se
    # correlation of (ln T, ln alpha): sample r has SE (1 - rho^2) / sqrt(n)
    rho = float(longitudinal_parameters(50.0).rho)
    r = np.corrcoef(np.log(par.t_max), np.log(par.alpha))[0, 1]
    assert abs(r - rho) < 4 * (1 - rho**2) / math.sqrt(n)
    # conversion depth ~ Exp(9/7): SE of the mean = (9/7) / sqrt(n)
    assert abs(par.t_conv.mean() - 9 / 7) < 4 * (9 / 7) / math.sqrt(n)
    assert np.all(np.abs(par.x0_mm) <= 2.5) and np.all(np.abs(par.y0_mm) <= 2.5)


@pytest.mark.parametrize("energy", [10.0, 100.0])
def test_resolution_is_stochastic_term_when_fully_contained(energy):
    # fully contained: E_vis ~ Gamma(E / a^2, a^2), so std/E = a / sqrt(E) and mean = E.
    n = 5_000
    e = photon_showers(n, energy, seed=7, config=FULL).energy.sum(axis=(1, 2)).astype(float)
    a = FULL.sampling_term
    # relative SE of a sample std ~ 1/sqrt(2n) = 1.0%; tolerance 4 SE
    assert abs(e.std(ddof=1) / (a * math.sqrt(energy)) - 1) < 4 / math.sqrt(2 * n)
    assert abs(e.mean() - energy) < 4 * a * math.sqrt(energy / n)


def test_resolution_with_leakage_adds_containment_variance():
    # Given the spots, E_grid ~ Gamma(E f / a^2, a^2), hence Var(E_grid) = a^2 E E[f] + E^2 Var(f).
    # E[f], Var(f) are measured on an independent sample without sampling fluctuations.
    n, energy = 10_000, 50.0
    a = 0.16
    f = photon_showers(n, energy, seed=8, config=CaloConfig(sampling_term=0.0))
    f = f.energy.sum(axis=(1, 2)).astype(float) / energy
    e = photon_showers(n, energy, seed=9, config=CaloConfig(sampling_term=a))
    e = e.energy.sum(axis=(1, 2)).astype(float)

    def var_and_se(x):  # sample variance and its SE, sqrt((m4 - s^4) / n)
        d = x - x.mean()
        s2 = d.var(ddof=1)
        return s2, math.sqrt((np.mean(d**4) - s2**2) / len(x))

    var_f, se_f = var_and_se(f)
    var_e, se_e = var_and_se(e)
    predicted = a**2 * energy * f.mean() + energy**2 * var_f
    tolerance = 4 * math.hypot(se_e, energy**2 * se_f)
    assert abs(var_e - predicted) < tolerance
    # and the leakage term matters: the pure stochastic term alone would be too small
    assert var_e > a**2 * energy * f.mean() + tolerance


def test_noise_and_threshold():
    cfg = CaloConfig(noise_gev=0.02, threshold_gev=0.1)
    s = photon_showers(300, 50.0, seed=1, config=cfg)
    e = s.energy
    assert e.min() >= 0
    assert not np.any((e > 0) & (e < 0.1))
    s0 = photon_showers(300, 50.0, seed=1, config=CaloConfig(noise_gev=0.05))
    assert s0.energy.min() >= 0  # threshold 0 clips negative noise


def test_energy_array_and_scaling():
    energies = np.repeat([20.0, 80.0], 1_000)
    s = photon_showers(2_000, energies, seed=4)
    np.testing.assert_array_equal(s.incident_energy, energies.astype(np.float32))
    ratio = s.energy.sum(axis=(1, 2)) / energies
    # contained fraction depends only weakly on E: both near the 50 GeV value
    for part in (ratio[:1000], ratio[1000:]):
        assert 0.93 < part.mean() < 0.98


def test_impact_point_moves_centroid():
    n = 2_000
    s = photon_showers(n, 50.0, seed=12)
    par = sample_shower_parameters(n, 50.0, seed=12)
    x = (np.arange(10) - 4.5) * 5.0
    cx = (s.energy.sum(axis=1) * x).sum(axis=1) / s.energy.sum(axis=(1, 2))
    assert np.corrcoef(cx, par.x0_mm)[0, 1] > 0.8


# ---------------------------------------------------------------- determinism


def test_same_seed_same_showers_and_prefix():
    a = photon_showers(BLOCK_SIZE + 300, 50.0, seed=3)
    b = photon_showers(BLOCK_SIZE + 300, 50.0, seed=3)
    np.testing.assert_array_equal(a.energy, b.energy)
    c = photon_showers(400, 50.0, seed=3)
    np.testing.assert_array_equal(c.energy, a.energy[:400])
    d = photon_showers(400, 50.0, seed=4)
    assert not np.array_equal(c.energy, d.energy)


def test_chunked_generation_equals_one_shot():
    n = BLOCK_SIZE + 500
    whole = photon_showers(n, 30.0, seed=21)
    for chunk in (700, BLOCK_SIZE, 5000):
        parts = list(iter_photon_showers(n, 30.0, seed=21, chunk_size=chunk))
        assert all(len(p) == chunk for p in parts[:-1])
        np.testing.assert_array_equal(np.concatenate([p.energy for p in parts]), whole.energy)


def test_bad_arguments():
    with pytest.raises(ValueError, match="energy"):
        photon_showers(10, 0.01, seed=1)
    with pytest.raises(ValueError, match="energy"):
        photon_showers(10, np.ones(3) * 50, seed=1)
    with pytest.raises(ValueError, match="`n`"):
        photon_showers(-1, seed=1)
    with pytest.raises(ValueError, match="nx"):
        CaloConfig(nx=0)
    with pytest.raises(ValueError, match="sampling_term"):
        CaloConfig(sampling_term=-0.1)
    assert len(photon_showers(0, seed=1)) == 0


# ---------------------------------------------------------------- ring toy


def test_ring_density_closed_forms():
    r = np.array([3.0, 4.0, 4.5, 5.0, 7.0])
    expected = np.where(r > 4, 4 * (r - 4) * np.exp(-2 * (r - 4)), 0.0)
    np.testing.assert_allclose(ring_radius_pdf(r), expected, rtol=1e-12, atol=1e-300)
    x = r - 4
    cdf = np.where(r > 4, 1 - np.exp(-2 * x) * (1 + 2 * x), 0.0)
    np.testing.assert_allclose(ring_radius_cdf(r), cdf, rtol=1e-12, atol=1e-15)
    # log density in the plane integrates to one: int p(r)/(2 pi r) 2 pi r dr
    grid = np.linspace(4.0, 30.0, 200_001)
    xy = np.stack([grid, np.zeros_like(grid)], axis=1)
    dens = np.exp(ring_log_prob(xy)) * 2 * np.pi * grid
    assert abs(np.trapezoid(dens, grid) - 1) < 1e-6
    assert ring_log_prob(np.array([[1.0, 1.0]]))[0] == -np.inf
    with pytest.raises(ValueError, match="shape"):
        ring_radius_cdf(5.0, shape=2.5)


def test_ring_samples_follow_density():
    xy = ring(200_000, seed=13)
    assert xy.shape == (200_000, 2) and xy.dtype == np.float64
    r = np.hypot(xy[:, 0], xy[:, 1])
    assert r.min() >= 4.0
    edges = np.concatenate([np.linspace(4.0, 8.0, 41), [np.inf]])
    counts = np.histogram(r, edges)[0]
    expected = len(r) * np.diff(ring_radius_cdf(edges))
    # chi-square goodness of fit; p-value > 1e-3 at fixed seed
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    phi = np.arctan2(xy[:, 1], xy[:, 0])
    counts = np.histogram(phi, np.linspace(-np.pi, np.pi, 37))[0]
    assert stats.chisquare(counts).pvalue > 1e-3
    np.testing.assert_array_equal(ring(10, seed=1), ring(10, seed=1))


# ---------------------------------------------------------------- command line


def test_cli_writes_reads_and_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / "s.root"
    assert main(["--n", "50", "--out", str(out), "--seed", "1"]) == 0
    back = read_showers(out)
    np.testing.assert_array_equal(back.energy, photon_showers(50, 50.0, seed=1).energy)
    capsys.readouterr()
    assert main(["--n", "50", "--out", str(out), "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err and "s.root" in err
    np.testing.assert_array_equal(read_showers(out).energy, back.energy)
    assert main(["--n", "20", "--out", str(out), "--seed", "2", "--overwrite", "--rntuple"]) == 0
    import uproot

    with uproot.open(out) as f:
        assert f.classname_of("showers") == "ROOT::RNTuple"
    np.testing.assert_array_equal(read_showers(out).energy, photon_showers(20, 50.0, 2).energy)


@pytest.mark.parametrize(
    "argv",
    [
        ["--n", "0", "--out", "x.root"],
        ["--n", "ten", "--out", "x.root"],
        ["--n", "5"],
        ["--n", "5", "--out", "x.root", "--bogus"],
        ["--n", "5", "--out", "x.root", "--energy", "0.001"],
    ],
)
def test_cli_bad_options(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
    assert not (tmp_path / "x.root").exists()
