"""Scaled-down ring and calorimeter studies: structure and sanity of the analysis scripts."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "analysis" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_ci(name: str, tmp_path: Path, option: str, points: str):
    """Run ``analysis/<name>.py all --budget ci`` on ``points`` under ``tmp_path``; returns the
    module and its run, results and figure folders."""
    study = _load(name)
    out, res, fig = tmp_path / "runs", tmp_path / "results", tmp_path / "fig"
    code = study.main(
        [
            "all",
            "--budget",
            "ci",
            f"--{option}",
            points,
            "--out",
            str(out),
            "--results",
            str(res),
            "--figures",
            str(fig),
        ]
    )
    assert code == 0
    return study, out, res, fig


@pytest.mark.parametrize(("name", "option"), [("ring_study", "configs"), ("calo_study", "points")])
def test_study_command_line(name, option, capsys):
    # run as a script: the shared module next to it is found, the options are the documented ones
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    usage = subprocess.run(
        [sys.executable, str(ROOT / "analysis" / f"{name}.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path},
    ).stdout
    for flag in ("--budget", f"--{option}", "--out", "--results", "--figures", "--seed"):
        assert flag in usage
    # an unknown point is refused before anything runs
    assert _load(name).main(["run", "--budget", "ci", f"--{option}", "oracle,nope"]) == 2
    assert "unknown" in capsys.readouterr().err


def test_power_law_fit_recovers_known_parameters():
    ring_study = _load("ring_study")
    rng = np.random.default_rng(4)
    n_q = np.array([225, 400, 900, 1600, 2500, 4900, 10_000], float)
    a, b = 0.004, 1.0
    amp = a * n_q**b * np.exp(rng.normal(0, 0.02, n_q.size))
    fit = ring_study.power_law(n_q, amp, 0.02 * amp)
    # 2% scatter over a decade and a half: b to ~0.02, a to ~15% (4 sigma bounds)
    assert abs(fit["b"] - b) < 4 * fit["b_err"] and fit["b_err"] < 0.05
    assert abs(np.log(fit["a"] / a)) < 4 * fit["a_err"] / fit["a"]


@pytest.mark.slow
def test_ring_study_ci_budget(tmp_path):
    ring_study, out, res, fig = _run_ci("ring_study", tmp_path, "configs", "oracle,cnf_vi_k10")
    summary = json.loads((res / "ring_summary_ci.json").read_text())
    assert set(summary["points"]) == {"oracle", "cnf_vi_k10"}
    for point in summary["points"].values():
        rows = point["rows"]
        assert [r["grid"] for r in rows] == list(ring_study.BUDGETS["ci"]["grids"])
        assert {"amp_mean", "amp_min", "amp_max", "mad", "mad_r", "mad_phi", "n_eq"} <= set(rows[0])
    # amplification of the network grows with the number of quantiles (paper, Fig. amplification)
    amp = [r["amp_mean"] for r in summary["points"]["cnf_vi_k10"]["rows"]]
    assert amp[-1] > amp[0]
    # coverage curves are non-decreasing in the level
    res_json = json.loads((out / "ci" / "cnf_vi_k10" / "results.json").read_text())
    for b in res_json["binnings"].values():
        assert np.all(np.diff(b["coverage"]["empirical"]) >= 0)
    # the oracle: the unbiased amplification is 1 within 4 half-widths of its 68 % interval
    oracle = summary["points"]["oracle"]["rows"][-1]
    half = 0.5 * (oracle["amp_high"] - oracle["amp_low"])
    assert abs(oracle["amp_mean"] - 1) < 4 * half, oracle
    assert any(Path(f).name == "calibration_10x10.png" for f in summary["figures"])


@pytest.mark.slow
def test_calo_study_ci_budget(tmp_path):
    points = "oracle,flow_vi_k1,flow_amcmc_s0.1,gan_vi_k1"
    _, _, res, fig = _run_ci("calo_study", tmp_path, "points", points)
    summary = json.loads((res / "calo_summary_ci.json").read_text())
    assert len(summary["points"]) == 4
    for point in summary["points"].values():
        assert "simulator" in point["data"]["training_sets"]
        obs = point["observables"]
        assert {"e_total", "x_width", "cell_4_4"} <= set(obs)
        for per_q in obs.values():
            for v in per_q.values():
                assert len(v["jsd_generated"]) == len(v["jsd_train"]) == 2
                assert np.isfinite(v["amplification_paper"])
    assert summary["best_calibrated"]["vi"].startswith("flow_vi_k1")
    assert (fig / "closure_all.png").is_file()
    # the AdamMCMC point carries its chains' minibatch-noise chi2, and the document shows it
    amcmc = next(p for t, p in summary["points"].items() if t.startswith("flow_amcmc"))
    assert len(amcmc["mh_noise_chi2"]) == 2 and all(v is not None for v in amcmc["mh_noise_chi2"])
    calo = _load("calo_study")
    doc = calo.document(summary)
    assert "median minibatch-noise χ²" in doc
    # closure ratio n'/n_eq per binning, and the headline sections built from it
    for point in summary["points"].values():
        for per_q in point["observables"].values():
            for v in per_q.values():
                if v["true_amplification"] and v["amplification"] is not None:
                    ratio = v["amplification"] / v["true_amplification"]
                    assert v["closure_ratio"] == pytest.approx(ratio, rel=1e-9)
    assert summary["closure_window"] == [0.7, 1.4]
    assert "Which observables amplify" in doc and f"`{summary['best_calibrated']['vi']}`: " in doc


def test_calo_study_input_beyond_the_file(tmp_path):
    # a training size beyond the input file: a simulator file with the input's settings, written
    # once and reused; a file without simulator provenance is refused with a one-line error
    from calamp import io, simulate
    from calamp.io import CalampError

    calo = _load("calo_study")
    cfg = simulate.CaloConfig(moliere_radius_mm=13.0)
    small = tmp_path / "small.root"
    io.write_showers(
        small,
        simulate.photon_showers(50, 20.0, seed=3, config=cfg),
        provenance=simulate.provenance(20.0, 3, 50, cfg),
    )
    assert calo.input_for(small, 50, tmp_path / "runs", 1) == small
    big = calo.input_for(small, 120, tmp_path / "runs", 1)
    assert big == tmp_path / "runs" / "showers_n120.root"
    prov = io.read_provenance(big)
    assert prov["n"] == 120 and prov["energy"] == 20.0
    assert prov["config"]["moliere_radius_mm"] == 13.0
    assert len(io.read_showers(big)) == 120
    stamp = big.stat().st_mtime_ns
    assert calo.input_for(small, 120, tmp_path / "runs", 1) == big  # written once
    assert big.stat().st_mtime_ns == stamp
    bare = tmp_path / "bare.root"
    io.write_showers(bare, simulate.photon_showers(50, 20.0, seed=3))
    with pytest.raises(CalampError, match="bare.root: 50 showers, fewer than the 120"):
        calo.input_for(bare, 120, tmp_path / "runs", 1)
