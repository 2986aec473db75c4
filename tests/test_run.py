"""The command line: error paths give one line and exit code 2; options and TOML merge."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from calamp.config import ConfigError, load_toml, make_config
from calamp.run import main


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # exactly one line, no traceback
    assert err[0].startswith("calamp: error:")
    return err[0]


def test_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.root"
    assert main([str(missing), "--out", str(tmp_path / "o")]) == 2
    assert "nope.root" in _err_line(capsys)


def test_not_a_root_file(tmp_path, capsys):
    bad = tmp_path / "text.root"
    bad.write_text("this is not ROOT")
    assert main([str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "text.root" in _err_line(capsys)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--toy", "ring", "--networks", "0"], "--networks"),
        (["--toy", "ring", "--draws", "1"], "--draws"),
        (["--toy", "ring", "--model", "vae"], "--model"),
        (["--toy", "ring", "--method", "hmc"], "--method"),
        (["--toy", "ring", "--sigma", "-1"], "--sigma"),
        (["--toy", "ring", "--n-quantiles", "1,5"], "--n-quantiles"),
        (["--toy", "torus"], "--toy"),
        (["showers.root", "--observables", "e_total,bogus"], "bogus"),
        (["--toy", "ring", "--networks", "two"], "--networks"),
        ([], "no input"),
    ],
)
def test_bad_options(tmp_path, capsys, args, needle):
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    assert needle in _err_line(capsys)
    assert not (tmp_path / "o").exists()


def test_bad_config_file(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("networks = [unclosed\n")
    assert main(["--toy", "ring", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "bad.toml" in _err_line(capsys)
    cfg.write_text("netwrks = 3\n")
    assert main(["--toy", "ring", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "netwrks" in _err_line(capsys)
    assert main(["--toy", "ring", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in _err_line(capsys)


def test_existing_output_folder(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["--toy", "ring", "--out", str(out)]) == 2
    assert "--overwrite" in _err_line(capsys)
    assert (out / "keep.txt").read_text() == "mine"


def test_toml_and_command_line_precedence(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[calamp]\nnetworks = 4\ndraws = 7\nmethod = "sgld"\nn_quantiles = [4, 8]\n')
    file_opts = load_toml(toml)
    cfg = make_config(file_opts, {"draws": 9, "networks": None})
    assert (cfg.networks, cfg.draws, cfg.method, cfg.n_quantiles) == (4, 9, "sgld", (4, 8))
    quick = make_config({"preset": "quick"}, {"draws": 12})
    assert quick.draws == 12 and quick.networks == 3
    with pytest.raises(ConfigError, match="--kl-convention"):
        make_config({"kl_convention": "avg"})


def test_module_entry_point_help():
    res = subprocess.run(
        [sys.executable, "-m", "calamp.run", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert res.returncode == 0
    assert "--quick" in res.stdout and "--toy" in res.stdout


def test_cli_runs_ring_job(tmp_path):
    out = tmp_path / "o"
    code = main(
        [
            "--toy",
            "ring",
            "--quick",
            "--networks",
            "2",
            "--draws",
            "3",
            "--generated",
            "500",
            "--train-steps",
            "20",
            "--truth-events",
            "4000",
            "--n-train",
            "300",
            "--n-quantiles",
            "3",
            "--no-plots",
            "--no-progress",
            "--bootstrap",
            "0",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["networks"] == 2 and results["config"]["preset"] == "quick"


# ------------------------------------------------------------------------------------------------
# defects of the orchestration issue: each is one line and exit 2, and no data is lost
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    from calamp.io import write_showers
    from calamp.simulate import photon_showers

    path = tmp_path_factory.mktemp("cli") / "small.root"
    write_showers(path, photon_showers(600, seed=4))
    return path


QUICK_ORACLE = ["--quick", "--method", "oracle", "--no-plots", "--no-progress",
                "--observables", "e_total", "--n-quantiles", "5"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--toy", "ring", "--seed", "-1"], "--seed"),
        (["--toy", "ring", "--model", "maf", "--method", "vi"], "not available for --model maf"),
        (["--toy", "ring", "--chunk-size", "0"], "--chunk-size"),
        (["--toy", "ring", "--workers", "-2"], "--workers"),
        (["--toy", "ring", "--lr-schedule", "linear"], "--lr-schedule"),
        (["--toy", "ring", "--vi-init-scale", "0"], "--vi-init-scale"),
        (["--toy", "ring", "--hidden", "-1"], "--hidden"),
        (["--toy", "ring", "--chains", "2"], "need an SG-MCMC method"),
        (["--toy", "ring", "--method", "adammcmc", "--chains", "3"], "split into 3 chains"),
        (["--toy", "ring", "--method", "adammcmc", "--chains", "0"], "--chains"),
    ],
)
def test_more_bad_options(tmp_path, capsys, args, needle):
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    assert needle in _err_line(capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ['"three"', "2.7", "true"])
def test_toml_types_are_checked(tmp_path, capsys, value):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"networks = {value}\n")
    assert main(["--toy", "ring", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "--networks: expected an integer" in _err_line(capsys)


def test_out_is_the_input_file(small_file, capsys):
    before = small_file.read_bytes()
    assert main([str(small_file), "--out", str(small_file), *QUICK_ORACLE]) == 2
    assert "is a file" in _err_line(capsys)
    assert small_file.read_bytes() == before


def test_overwrite_never_deletes_the_input_inside_the_folder(tmp_path, small_file, capsys):
    out = tmp_path / "res"
    assert main([str(small_file), "--out", str(out), *QUICK_ORACLE]) == 0
    inside = out / "data.root"
    inside.write_bytes(small_file.read_bytes())
    capsys.readouterr()
    assert main([str(inside), "--out", str(out), "--overwrite", *QUICK_ORACLE]) == 2
    assert "lies inside the output folder" in _err_line(capsys)
    assert inside.read_bytes() == small_file.read_bytes()


def test_resume_with_another_input_is_refused(tmp_path, small_file, capsys):
    from calamp.io import write_showers
    from calamp.simulate import photon_showers

    other = tmp_path / "other.root"
    write_showers(other, photon_showers(600, seed=5))
    out = tmp_path / "res"
    assert main([str(small_file), "--out", str(out), *QUICK_ORACLE]) == 0
    capsys.readouterr()
    assert main([str(other), "--out", str(out), "--resume", *QUICK_ORACLE]) == 2
    assert "was made from" in _err_line(capsys)
    assert main([str(small_file), "--out", str(out), "--resume", *QUICK_ORACLE]) == 0


def test_n_train_larger_than_the_data(tmp_path, small_file, capsys):
    assert main([str(small_file), "--out", str(tmp_path / "o"), "--n-train", "5000",
                 *QUICK_ORACLE]) == 2
    assert "--n-train 5000 exceeds" in _err_line(capsys)
    assert not (tmp_path / "o").exists()


def test_oracle_write_samples_and_numeric_incident_branch(tmp_path, small_file):
    out = tmp_path / "res"
    assert main([str(small_file), "--out", str(out), "--write-samples", "3",
                 "--incident-branch", "50", *QUICK_ORACLE]) == 0
    assert (out / "results.json").is_file() and (out / "samples.root").is_file()


def test_tiny_training_sets_are_warned_about(tmp_path, small_file, capsys):
    assert main([str(small_file), "--out", str(tmp_path / "o"), "--n-train", "20",
                 *QUICK_ORACLE]) == 0
    assert "only 20 training events per network" in capsys.readouterr().err


def test_images_that_are_not_a_grid(tmp_path, capsys):
    import numpy as np
    import uproot

    path = tmp_path / "flat.root"
    with uproot.recreate(path) as f:
        f.mktree("showers", {"energy": ("float32", (1, 100)), "incident_energy": "float32"})
        f["showers"].extend({"energy": np.ones((300, 1, 100), np.float32),
                             "incident_energy": np.full(300, 50.0, np.float32)})
    assert main([str(path), "--out", str(tmp_path / "o"), *QUICK_ORACLE]) == 2
    assert "shape (1, 100)" in _err_line(capsys)
    assert not (tmp_path / "o").exists()  # checked before any folder is made


def test_simulator_truth_on_a_foreign_file_is_warned_about(tmp_path, small_file, capsys):
    assert main([str(small_file), "--out", str(tmp_path / "o"), "--truth", "simulator",
                 *QUICK_ORACLE]) == 0
    assert "which calamp.simulate did not make" in capsys.readouterr().err
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["data"]["truth_is_exact"] is False


def test_subcommands_share_the_entry_point(tmp_path):
    out = tmp_path / "sim.root"
    assert main(["simulate", "--n", "20", "--out", str(out)]) == 0 and out.is_file()
    assert main(["evaluate", "--help"]) == 0


# ------------------------------------------------------------------------------------------------
# one parser for every command: help, one-line errors, `calamp run` = `calamp`
# ------------------------------------------------------------------------------------------------
COMMAND_ARGS = {  # the required arguments of each command
    "run": ["--toy", "ring"],
    "evaluate": ["samples.root", "--truth", "simulator", "--n-train", "100"],
    "report": ["folder"],
    "simulate": ["--n", "5", "--out", "x.root"],
}


@pytest.mark.parametrize("command", sorted(COMMAND_ARGS))
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: calamp {command} ")
    assert "--bogus" not in out


def test_top_level_help_lists_the_commands_and_the_run_options(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMAND_ARGS:
        assert f"    {command} " in out
    assert "--quick" in out and "--toy" in out  # no command: run


BAD_TYPES = {  # an option of the wrong type under each command
    "run": ["--networks", "two"],
    "evaluate": ["--truth-events", "many"],
    "report": ["--reanalyse=yes"],
    "simulate": ["--energy", "high"],
}


@pytest.mark.parametrize("command", sorted(COMMAND_ARGS))
@pytest.mark.parametrize("kind", ["unknown", "type"])
def test_bad_options_of_every_command_are_one_line(command, kind, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = ["--bogus"] if kind == "unknown" else BAD_TYPES[command]
    assert main([command, *COMMAND_ARGS[command], *extra]) == 2
    assert extra[0].split("=")[0] in _err_line(capsys)
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("command", ["evaluate", "report", "simulate"])
def test_missing_arguments_are_one_line(command, capsys):
    assert main([command]) == 2
    assert "required" in _err_line(capsys)


def test_run_is_the_default_command(tmp_path, capsys):
    from calamp.run import build_parser

    argv = ["x.root", "--networks", "3", "--no-plots", "--out", "o"]
    parser = build_parser()
    assert parser.parse_args(["run", *argv]) == parser.parse_args(argv)
    assert parser.parse_args(argv).networks == 3
    assert parser.parse_args([]).command == "run"
    bad = ["--toy", "ring", "--networks", "0", "--out", str(tmp_path / "o")]
    assert main(["run", *bad]) == 2
    with_command = _err_line(capsys)
    assert main(bad) == 2
    assert _err_line(capsys) == with_command
    assert main(["run", "--help"]) == 0
    run_help = capsys.readouterr().out
    assert "--quick" in run_help and "--toy" in run_help


def test_report_of_a_folder_without_results(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "has no results.json" in _err_line(capsys)


def test_interrupt_is_exit_130(tmp_path, capsys, monkeypatch):
    import calamp.job
    import calamp.simulate

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(calamp.job, "run_job", stop)
    assert main(["--toy", "ring", "--out", str(tmp_path / "o")]) == 130
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(calamp.simulate, "photon_showers", stop)
    assert main(["simulate", "--n", "5", "--out", str(tmp_path / "x.root")]) == 130
    assert capsys.readouterr().err.strip() == "calamp: interrupted"


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("calamp.run", ["evaluate", "--help"]),
        ("calamp.evaluate", ["--help"]),
        ("calamp.report", ["--help"]),
        ("calamp.simulate", ["--help"]),
        ("calamp.simulate", ["--n", "5", "--out", "{tmp}/x.root", "--bogus"]),
        ("calamp.report", ["--bogus"]),
    ],
)
def test_module_entry_points(module, argv, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", module, *(a.format(tmp=tmp_path) for a in argv)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if "--help" in argv:
        assert res.returncode == 0, res.stderr
        prog = f"python -m {module}" + (f" {argv[0]}" if argv[0] != "--help" else "")
        assert res.stdout.startswith(f"usage: {prog} ")
    else:
        assert res.returncode == 2
        err = res.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("calamp: error:"), res.stderr
        assert not (tmp_path / "x.root").exists()


def test_local_worker_rule():
    """Automatic worker processes only for jobs worth a process start-up, never more than K."""
    from calamp.config import make_config, model_size
    from calamp.job import local_workers

    auto = make_config({"networks": 5})
    assert local_workers(auto, 60.0) == 1
    assert 1 <= local_workers(auto, 600.0) <= 5
    assert local_workers(make_config({"networks": 3, "workers": 8}), 1.0) == 3
    assert local_workers(make_config({"workers": 1}), 1e6) == 1
    # automatic sizes: the shower flow is 8 couplings of 2x128, the 2D toys keep 4x64
    assert model_size(auto, 101) == (8, 128) and model_size(auto, 2) == (4, 64)
    assert model_size(make_config({"layers": 3, "hidden": 16}), 101) == (3, 16)
