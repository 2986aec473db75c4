"""calamp evaluate: per-draw samples of a generator built elsewhere.

Known answer: network k is a base sample of m showers; draw i re-weights it with Bayesian-
bootstrap (Dirichlet(1, ..., 1)) weights and generates g >> m showers from those weights. The
bin probabilities of the draws then spread like p(1 - p)/(m + 1) around the base sample's, so
the ideal amplification is n' = m + 1 (not g), and the base sample, itself m truth showers,
sits as far from the truth as the spread says: calibrated and closing. A Dirichlet(4, ..., 4)
posterior is 4 times too narrow (n' = 4m + 1) and must be flagged over-confident.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from calamp import pipeline
from calamp.config import make_config
from calamp.evaluate import evaluate, main
from calamp.io import ShowerSet, write_showers
from calamp.simulate import photon_showers

K, S, M, G = 3, 12, 400, 8_000
OBS = ("e_total", "x_width", "f_core3x3")


def _draws(alpha: float, seed: int = 0, s: int = S):
    rng = np.random.default_rng(seed)
    for k in range(K):
        base = photon_showers(M, seed=100 + k)
        for i in range(s):
            w = rng.dirichlet(np.full(M, alpha))
            idx = rng.choice(M, size=G, p=w)
            yield k, i, base.energy[idx], base.incident_energy[idx]


@pytest.fixture(scope="module")
def truth():
    return photon_showers(40_000, seed=7)


def _write_root(path, alpha):
    sets, nets, draws = [], [], []
    for k, i, e, inc in _draws(alpha):
        sets.append(ShowerSet(e, inc))
        nets.append(np.full(len(e), k, np.int32))
        draws.append(np.full(len(e), i, np.int32))
    write_showers(path, ShowerSet.concatenate(sets),
                  extra_branches={"network": np.concatenate(nets), "draw": np.concatenate(draws)})


def test_known_answer_and_root_equals_hdf5(tmp_path, truth):
    root = tmp_path / "samples.root"
    _write_root(root, 1.0)
    res = evaluate(str(root), truth, n_train=M, observables=OBS, n_quantiles=(5, 10),
                   out=tmp_path / "ev", plots=False)
    for key, b in res["binnings"].items():
        c = b["amplification"]["combined"]
        # the unbiased precision 1/n' is 1/(m + 1) within 4 of its errors
        assert abs(c["precision"] * (M + 1) - 1) < 4 * c["precision_err"] * (M + 1), (key, c)
        assert b["closure"]["verdict"] in ("closes", "inconclusive"), (key, b["closure"])
    states = [b["coverage"]["state"] for b in res["binnings"].values()]
    assert states.count("calibrated") >= len(states) - 1, states
    assert "external" in res["data"]["origin"] and res["data"]["n_generated_per_draw"] == G
    saved = json.loads((tmp_path / "ev" / "results.json").read_text())
    from calamp.schema import validate_results

    validate_results(saved)
    # the same samples as one CaloChallenge HDF5 file (flat voxels + network/draw datasets)
    h5 = tmp_path / "samples.h5"
    items = list(_draws(1.0))
    with h5py.File(h5, "w") as f:
        f["showers"] = np.concatenate([e.reshape(len(e), -1) for _, _, e, _ in items])
        f["incident_energies"] = np.concatenate([inc for *_, inc in items])[:, None]
        f["network"] = np.concatenate([np.full(len(e), k) for k, _, e, _ in items])
        f["draw"] = np.concatenate([np.full(len(e), i) for _, i, e, _ in items])
    other = evaluate(str(h5), truth, n_train=M, observables=OBS, n_quantiles=(5, 10),
                     plots=False)
    for key, b in res["binnings"].items():
        assert other["binnings"][key]["amplification"] == b["amplification"]
        assert other["binnings"][key]["coverage"]["empirical"] == b["coverage"]["empirical"]


def test_too_narrow_posterior_is_flagged(truth):
    # 20 draws and 20 bins: a calibrated MAD stays below ~0.14 (the floor's limit), a posterior
    # half as wide as it should be gives MAD ≈ 0.2
    res = evaluate(list(_draws(4.0, s=20)), truth, n_train=M, observables=OBS,
                   n_quantiles=(20,), plots=False)
    for key, b in res["binnings"].items():
        c = b["amplification"]["combined"]
        assert abs(c["precision"] * (4 * M + 1) - 1) < 4 * c["precision_err"] * (4 * M + 1)
        assert b["closure"]["verdict"] == "n' too high (over-confident)", key
        assert b["coverage"]["state"] == "over-confident", key


def test_callable_and_array_inputs(truth):
    rng = np.random.default_rng(3)
    bases = [photon_showers(300, seed=200 + k) for k in range(2)]

    def sample(k: int, i: int, n: int) -> np.ndarray:  # e.g. a torch model behind a lambda
        return bases[k].energy[rng.integers(0, 300, n)]

    res = evaluate(sample, truth, n_train=300, networks=2, n_draws=4, events=500,
                   observables=("e_total",), n_quantiles=(5,), plots=False)
    assert res["data"]["n_networks"] == 2 and res["data"]["n_draws"] == 4
    arr = np.stack([[b.energy[:50] for _ in range(3)] for b in bases])  # (K, s, g, ny, nx)
    core = {"core2x2": lambda im: im[:, 4:6, 4:6].sum(axis=(1, 2))}
    res = evaluate(arr, truth, n_train=300, observables=("e_max",), n_quantiles=(4,),
                   custom_observables=core, plots=False)
    assert set(res["binnings"]) == {"e_max/q4", "core2x2/q4"}
    # a constant observable is left out with a warning, not a crash
    res = evaluate(arr, truth, n_train=300, observables=("e_max",), n_quantiles=(4,),
                   custom_observables={"zero": lambda im: 0.0 * im[:, 0, 0]}, plots=False)
    assert "zero/q4" not in res["binnings"]
    assert any("zero is constant" in w for w in res["data"]["warnings"])


def test_round_trip_with_write_samples(tmp_path):
    data = tmp_path / "showers.root"
    write_showers(data, photon_showers(3_000, seed=9))
    g = 2_000
    cfg = make_config(dict(method="oracle", networks=3, draws=6, generated=g, write_samples=g,
                           observables=("e_total", "x_width"), n_quantiles=(5, 10), bootstrap=0,
                           plots=False, progress=False))
    run = pipeline.run_job(cfg, data, out=tmp_path / "run")
    assert main([str(tmp_path / "run" / "samples.root"), "--truth", str(tmp_path / "run"),
                 "--n-train", str(run["data"]["n_train"]), "--out", str(tmp_path / "ev"),
                 "--no-plots"]) == 0
    ev = json.loads((tmp_path / "ev" / "results.json").read_text())
    for key, b in run["binnings"].items():
        e = ev["binnings"][key]
        assert e["amplification"]["n_prime"] == b["amplification"]["n_prime"], key
        assert e["coverage"]["empirical"] == b["coverage"]["empirical"], key
        assert e["closure"]["n_eq"] == b["closure"]["n_eq"], key
        assert e["closure"]["verdict"] == b["closure"]["verdict"], key


def _bad_root(path, *, drop=None, one_draw=False, nan=False, negative=False, shape=(10, 10)):
    n = 200
    e = np.random.default_rng(1).random((n, *shape)).astype(np.float32)
    if nan:
        e[3, 2, 2] = np.nan
    if negative:
        e[5, 1, 1] = -1.0
    branches = {"network": np.repeat([0, 1], n // 2).astype(np.int32),
                "draw": (np.zeros(n) if one_draw else np.tile([0, 1], n // 2)).astype(np.int32)}
    if drop:
        branches.pop(drop)
    import uproot

    with uproot.recreate(path) as f:
        f.mktree("showers", {"energy": ("float32", shape), "incident_energy": "float32",
                             **{k: "int32" for k in branches}})
        f["showers"].extend({"energy": e, "incident_energy": np.full(n, 50, np.float32),
                             **branches})


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (dict(drop="draw"), "`network` and `draw`"),
        (dict(one_draw=True), "at least 2"),
        (dict(shape=(8, 8)), "the truth has"),
        (dict(nan=True), "entry 3"),  # the reader names file, tree, branch and entry
        (dict(negative=True), "entry 5"),
    ],
)
def test_bad_samples_are_one_line_and_exit_2(tmp_path, capsys, truth, kwargs, needle):
    tfile = tmp_path / "truth.root"
    write_showers(tfile, photon_showers(2_000, seed=1))
    bad = tmp_path / "bad.root"
    _bad_root(bad, **kwargs)
    code = main([str(bad), "--truth", str(tfile), "--n-train", "100", "--out",
                 str(tmp_path / "o"), "--no-plots", "--observables", "e_total",
                 "--n-quantiles", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("calamp: error:") and needle in err[-1], err
    assert not (tmp_path / "o").exists()


def test_unequal_draw_sizes_are_stated(truth):
    items = [(k, i, e[: 2_000 + 500 * i], inc[: 2_000 + 500 * i])
             for k, i, e, inc in _draws(1.0) if i < 3]
    res = evaluate(items, truth, n_train=M, observables=("e_total",), n_quantiles=(5,),
                   plots=False)
    assert any("different numbers of events" in w for w in res["data"]["warnings"])


def test_hdf5_folder_layout_with_flat_voxels(tmp_path, truth):
    folder = tmp_path / "challenge"
    items = list(_draws(1.0, s=3))
    for k, i, e, inc in items:
        (folder / f"network_{k}").mkdir(parents=True, exist_ok=True)
        with h5py.File(folder / f"network_{k}" / f"draw_{i}.h5", "w") as f:
            f["showers"] = e.reshape(len(e), -1)  # CaloChallenge: flat voxel vectors
            f["incident_energies"] = inc[:, None]
    code = main([str(folder), "--truth", "simulator", "--truth-events", "20000", "--n-train",
                 str(M), "--shape", "10,10", "--out", str(tmp_path / "o"), "--no-plots",
                 "--observables", "e_total,x_width", "--n-quantiles", "5"])
    assert code == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["data"]["n_networks"] == K and res["data"]["n_draws"] == 3
    assert "simulator" in res["config"]["truth"]
