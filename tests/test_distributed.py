"""Scale-out on a dask LocalCluster: same numbers as in-process, one TF thread per worker,
exact per-draw generation, fast failure on a bad scheduler address."""

from __future__ import annotations

import time

import numpy as np
import pytest

from calamp import distributed as cd
from calamp import pipeline
from calamp.config import ConfigError, make_config
from calamp.io import CalampError

distributed = pytest.importorskip("distributed")

# 2 networks x 3 draws on the ring toy: pre-training + an SGLD chain (the cheapest sampler to
# trace), 600 events per draw in 3 chunks.
TINY = dict(toy="ring", method="sgld", model="flow", networks=2, draws=3, generated=600,
            train_steps=30, mcmc_steps=18, burn_in=6, batch_size=100, n_train=400,
            truth_events=3_000, n_quantiles=(3,), hidden=16, layers=2, bootstrap=0,
            chunk_size=250, plots=False, progress=False, seed=7)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def runs(client, tmp_path_factory):
    cfg = make_config(TINY)
    root = tmp_path_factory.mktemp("dist")
    on_workers = pipeline.run_job(cfg, out=root / "workers", client=client)
    in_process = pipeline.run_job(cfg, out=root / "local")
    return cfg, root, on_workers, in_process


def test_workers_reproduce_in_process_numbers_exactly(runs):
    cfg, root, on_workers, in_process = runs
    # same seeds -> same training sets, chains, draws and generated events: the per-draw
    # fractions (counts / g, exact integers) and every statistic built on them are identical
    with np.load(root / "workers" / "results.npz") as a, \
            np.load(root / "local" / "results.npz") as b:
        keys = [k for k in a.files if k.startswith("fractions/")]
        assert sorted(keys) == sorted(k for k in b.files if k.startswith("fractions/"))
        assert len(keys) == 3  # ring, r, phi with 3 quantiles
        for k in keys:
            assert a[k].shape == (cfg.networks, cfg.draws, 9 if k.startswith("fractions/ring")
                                  else 3)
            np.testing.assert_array_equal(a[k], b[k])
    for key, res in in_process["binnings"].items():
        other = on_workers["binnings"][key]
        assert other["amplification"]["n_prime"] == res["amplification"]["n_prime"]
        assert other["amplification"]["mean_factor"] == res["amplification"]["mean_factor"]
        assert other["coverage"] == res["coverage"]
        assert other["closure"]["n_eq"] == res["closure"]["n_eq"]
    # the draws went through the store on the shared folder
    assert (root / "workers" / "draws" / "network_0001.npz").is_file()


def test_local_worker_processes_give_the_in_process_numbers(runs, tmp_path):
    """``--workers 2`` (a local cluster the job starts and stops itself) is a performance
    setting: same results as in-process, recorded under ``execution``."""
    cfg, root, _, in_process = runs
    local = pipeline.run_job(make_config(TINY, dict(workers=2)), out=tmp_path / "w2")
    assert local["execution"] == {"worker_processes": 2, "scheduler": None}
    assert in_process["execution"]["worker_processes"] == 1  # a tiny job stays in-process
    with np.load(tmp_path / "w2" / "results.npz") as a, \
            np.load(root / "local" / "results.npz") as b:
        for k in (k for k in a.files if k.startswith("fractions/")):
            np.testing.assert_array_equal(a[k], b[k])
    assert local["summary"] == in_process["summary"]


def test_worker_option_is_validated():
    with pytest.raises(ConfigError, match="--workers"):
        make_config(TINY, dict(workers=-1))
    with pytest.raises(ConfigError, match="--workers"):
        make_config(TINY, dict(workers=2, scheduler="tcp://127.0.0.1:8786"))


def test_workers_run_tensorflow_single_threaded(client, runs):
    del runs  # TensorFlow has run on the workers
    states = client.run(cd.tf_thread_state, 1)
    assert len(states) == 2
    for st in states.values():
        assert st["ok"] and st["limit"] == 1 and st["tensorflow_started"]
        assert st["inter_op_threads"] == 1  # live inter-op pool threads ("tf_Compute")
    # intra-op: during a matmul burst only one thread of the worker process does the work;
    # TensorFlow's default (one intra-op thread per core, 2 here) splits it across 2 threads
    # with ~50% of the ticks each, above the probe's 20% threshold.
    probes = client.run(cd.probe_tf_threads)
    for p in probes.values():
        assert p["ticks"] >= 10  # enough clock ticks (10 ms each) to judge
        assert p["busy_threads"] == 1
        assert p["cpu_per_wall"] < 1.3  # a single busy thread can't use more than one core


def test_per_draw_generation_equals_fill_network(client, runs):
    import dataclasses

    from calamp.models.base import SEED_BLOCK

    job_cfg, root, _, _ = runs
    # more events than one generation block, so a draw splits into several block tasks
    cfg = dataclasses.replace(job_cfg, generated=2 * SEED_BLOCK + 100)
    store = root / "workers" / "draws"
    truth_obs = pipeline.event_observables("ring", pipeline.prepare_source(cfg).truth)
    binnings = pipeline.make_binnings(cfg, "ring", truth_obs)
    nd = pipeline.load_network(store, 1)
    ref = pipeline.fill_network(cfg, nd, "ring", binnings)
    # one task per draw, and draws x 3 block tasks (2 SEED_BLOCK + 100 events) reduced in a
    # tree of fan-in 2: integer counts must agree exactly with the in-process fill
    for kwargs in ({}, dict(chunks_per_task=1, split_every=2)):
        counts, n_filled = cd.generate_histograms(client, store, 1, cfg, "ring", binnings,
                                                  **kwargs)
        np.testing.assert_array_equal(n_filled, [cfg.generated] * cfg.draws)
        for key, c in ref["counts"].items():
            np.testing.assert_array_equal(counts[key], c)
    # a subset of draws, in the order asked for
    counts, n_filled = cd.generate_histograms(client, store, 1, cfg, "ring", binnings,
                                              draws=[2, 0])
    for key, c in ref["counts"].items():
        np.testing.assert_array_equal(counts[key], c[[2, 0]])
    # and, at the job's own settings, the same counts as the job's partial file
    job_ref = pipeline.fill_network(job_cfg, nd, "ring", binnings)
    with np.load(root / "workers" / "partial" / "net1.npz") as part:
        np.testing.assert_array_equal(part["counts/r/q3"], job_ref["counts"]["r/q3"])


def test_bad_scheduler_address_fails_fast(tmp_path, monkeypatch, capsys):
    from calamp import run

    monkeypatch.setattr(cd, "CONNECT_TIMEOUT", 2.0)
    cfg = make_config(TINY, dict(scheduler="tcp://127.0.0.1:9"))  # discard port: nothing listens
    t0 = time.perf_counter()
    with pytest.raises(CalampError, match=r"cannot connect to the dask scheduler at") as err:
        pipeline.run_job(cfg, out=tmp_path / "res")
    assert time.perf_counter() - t0 < 10  # 2 s timeout + slack on a loaded machine
    assert "\n" not in str(err.value)
    assert not (tmp_path / "res").exists()  # nothing was created before the failure
    # a malformed address fails at once; the command line prints one line and exits 2
    code = run.main(["--toy", "ring", "--scheduler", "127.0.0.1", "--out", str(tmp_path / "cli")])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["calamp: error: option --scheduler: cannot connect to the dask scheduler at "
                     "'127.0.0.1' within 2 s (ValueError: missing port number in address "
                     "'127.0.0.1')"]


def test_scheduler_address_of_a_worker_is_refused(client):
    worker = next(iter(client.scheduler_info()["workers"]))
    with pytest.raises(CalampError, match="is a dask Worker, not a scheduler"):
        cd.connect(worker, timeout=5)


def test_read_showers_dask_names_the_extra(tmp_path):
    try:
        import dask_awkward  # noqa: F401
    except ImportError:
        with pytest.raises(CalampError, match=r"calamp\[dask-io\]"):
            cd.read_showers_dask(tmp_path / "x.root")
    else:  # pragma: no cover - only where the extra is installed
        pytest.skip("dask-awkward installed; the error path is not reachable")


def _power(x: int, *, p: int, offset: np.ndarray) -> np.ndarray:
    return offset + np.array([x**p])


def test_executors_map_and_reduce_alike(client):
    from operator import add

    from calamp.executors import DaskExecutor, LocalExecutor

    shared = {"p": 2, "offset": np.array([1])}
    local, dask = LocalExecutor(), DaskExecutor(client)
    assert local.map(_power, range(7), shared=shared) == [1 + i * i for i in range(7)]
    np.testing.assert_array_equal(
        dask.map(_power, range(7), shared=shared), local.map(_power, range(7), shared=shared)
    )
    # the tree reduction (fan-in 3: 3 levels for 11 items) sums exactly what the local one does
    total = sum(1 + i * i for i in range(11))
    for ex in (local, dask):
        assert ex.reduce(_power, range(11), add, shared=shared, split_every=3)[0] == total
        with pytest.raises(ValueError, match="at least one item"):
            ex.reduce(_power, [], add, shared=shared)
        with pytest.raises(ValueError, match="split_every"):
            ex.reduce(_power, range(3), add, shared=shared, split_every=1)


def _first(x: int, *, p: int, offset: np.ndarray) -> int:
    return int(offset[0]) + x**p


def _then(sub: int, first: int, *, p: int, offset: np.ndarray) -> tuple[int, int]:
    del p, offset
    return (first, sub)


def test_executors_map_then_alike(client):
    from calamp.executors import DaskExecutor, LocalExecutor

    shared = {"p": 2, "offset": np.array([1])}
    local, dask = LocalExecutor(), DaskExecutor(client)
    assert dask.slots() == 2  # two one-thread workers
    expected = ([1 + i * i for i in range(4)],
                [[(1 + i * i, 10 * i + j) for j in range(i + 1)] for i in range(4)])
    seen: dict[str, list] = {"local": [], "dask": []}
    for name, ex in (("local", local), ("dask", dask)):
        out = ex.map_then(_first, range(4), _then, lambda i: [10 * i + j for j in range(i + 1)],
                          shared=shared,
                          on_item=lambda j, f, t, name=name: seen[name].append((j, f, t)))
        assert out == expected
        # every item reported once, with its own first result and then-results
        assert sorted(seen[name]) == [(i, expected[0][i], expected[1][i]) for i in range(4)]


def test_pipelined_workers_resume_and_common_noise_equal_in_process(client, runs, tmp_path):
    """On workers a network is a training task and one generation task per block of draws
    (``draw_blocks``): the joined blocks equal the in-process fill, with common generation
    noise (batch counts) too, and ``--resume`` redoes only an unfinished network."""
    import shutil

    from calamp.generation import concatenate_fills
    from calamp.network import draw_blocks

    assert draw_blocks(3, 2) == [range(0, 1), range(1, 3)]
    assert draw_blocks(50, 2) == [range(0, 25), range(25, 50)]
    assert draw_blocks(2, 8) == [range(0, 1), range(1, 2)]
    cfg = make_config(TINY, dict(generation_noise="common", draws=4, networks=3))
    a = pipeline.run_job(cfg, out=tmp_path / "w", client=client)
    b = pipeline.run_job(cfg, out=tmp_path / "p")
    with np.load(tmp_path / "w" / "results.npz") as x, np.load(tmp_path / "p" / "results.npz") as y:
        assert any(k.startswith("batches/") for k in x.files)
        for k in x.files:
            np.testing.assert_array_equal(x[k], y[k])
    assert a["summary"] == b["summary"]
    # the blocks of any split concatenate to the whole network's fill
    nd = pipeline.load_network(tmp_path / "w" / "draws", 2)
    truth_obs = pipeline.event_observables("ring", pipeline.prepare_source(cfg).truth)
    binnings = pipeline.make_binnings(cfg, "ring", truth_obs)
    whole = pipeline.fill_network(cfg, nd, "ring", binnings)
    parts = concatenate_fills([pipeline.fill_network(cfg, nd, "ring", binnings, r)
                               for r in (range(0, 3), range(3, 4))])
    for name in ("counts", "batch_counts"):
        for key in whole[name]:
            np.testing.assert_array_equal(parts[name][key], whole[name][key])
    np.testing.assert_array_equal(parts["batch_filled"], whole["batch_filled"])
    with pytest.raises(ValueError, match="non-empty block"):
        pipeline.fill_network(cfg, nd, "ring", binnings, range(3, 5))
    # an interrupted run: network 1's histograms lost; resume redoes only that network
    shutil.copytree(tmp_path / "w", tmp_path / "r")
    for suffix in ("npz", "json"):
        (tmp_path / "r" / "partial" / f"net1.{suffix}").unlink()
    before = (tmp_path / "r" / "partial" / "net0.npz").stat().st_mtime_ns
    c = pipeline.run_job(cfg, out=tmp_path / "r", client=client, resume=True)
    assert (tmp_path / "r" / "partial" / "net0.npz").stat().st_mtime_ns == before
    assert (tmp_path / "r" / "partial" / "net1.npz").is_file()
    assert c["summary"] == a["summary"]


def test_quadrature_job_on_workers_equals_in_process(client, tmp_path):
    """Quadrature bin probabilities on workers: one task per network (its rule is chosen on
    draw 0), the same numbers as in this process."""
    cfg = make_config(dict(
        toy="ring", model="flow", method="vi", networks=3, draws=4, train_steps=60,
        batch_size=100, n_train=400, truth_events=5_000, n_quantiles=(3,), hidden=16, layers=2,
        bootstrap=0, bin_probabilities="quadrature", plots=False, progress=False, seed=3,
    ))
    a = pipeline.run_job(cfg, out=tmp_path / "w", client=client)
    b = pipeline.run_job(cfg, out=tmp_path / "p")
    with np.load(tmp_path / "w" / "results.npz") as x, np.load(tmp_path / "p" / "results.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        for k in x.files:
            np.testing.assert_array_equal(x[k], y[k])
    assert [n["quadrature"] for n in a["networks"]] == [n["quadrature"] for n in b["networks"]]
    assert a["summary"] == b["summary"]
