"""Tests of calamp.io: exact round trips, equivalence of layouts and storages, chunking, and one
test per kind of bad input, on small real files written into tmp_path."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from calamp.io import (
    NEGATIVE_TOLERANCE_GEV,
    BadValueError,
    BranchError,
    CalampError,
    CorruptFileError,
    EmptyTreeError,
    InputError,
    MissingFileError,
    NotRootError,
    OutputExistsError,
    ShowerSet,
    TreeError,
    iterate_showers,
    read_showers,
    write_showers,
)

N = 40


def make_set(n: int = N, shape=(10, 10), seed: int = 0) -> ShowerSet:
    rng = np.random.default_rng(seed)
    e = rng.exponential(1.0, (n, *shape)).astype(np.float32)
    e[e < 0.5] = 0.0  # sparse-ish images with exact zeros
    return ShowerSet(e, rng.uniform(10, 100, n), source="test")


def sparse_columns(s: ShowerSet) -> dict[str, ak.Array]:
    """The jagged layout of a set: nonzero cells as (cell_x, cell_y, cell_e) lists per entry."""
    n, ny, nx = s.energy.shape
    flat = s.energy.reshape(n, -1)
    entry, cell = np.nonzero(flat)
    counts = np.bincount(entry, minlength=n)
    return {
        "cell_x": ak.unflatten((cell % nx).astype(np.int32), counts),
        "cell_y": ak.unflatten((cell // nx).astype(np.int32), counts),
        "cell_e": ak.unflatten(flat[entry, cell], counts),
        "incident_energy": s.incident_energy,
    }


def write_ttree(path, name, columns):
    """A TTree via mktree; awkward columns become jagged branches (with counter branches)."""
    types = {}
    for key, col in columns.items():
        if isinstance(col, ak.Array):
            types[key] = col.type.content
        else:
            col = np.asarray(col)
            types[key] = (col.dtype, col.shape[1:]) if col.ndim > 1 else col.dtype
    with uproot.recreate(path) as f:
        f.mktree(name, types)
        f[name].extend(dict(columns))
        assert f[name].__class__.__name__ == "WritableTree"
    return path


def write_rntuple(path, name, columns):
    """An RNTuple: uproot >= 5.7 writes one when handed a dict."""
    with uproot.recreate(path) as f:
        f[name] = dict(columns)
    return path


def write_dense_raw(path, energy, incident=None, *, name="showers", rntuple=False):
    cols = {"energy": np.asarray(energy)}
    if incident is not None:
        cols["incident_energy"] = np.asarray(incident)
    return (write_rntuple if rntuple else write_ttree)(path, name, cols)


@pytest.fixture
def dense_file(tmp_path):
    s = make_set()
    path = tmp_path / "dense.root"
    write_showers(path, s)
    return path, s


# ---------------------------------------------------------------- round trips


def test_showerset_basics():
    s = make_set(10, shape=(4, 6))
    assert len(s) == 10 and s.shape == (4, 6) and s.n_cells == 24
    assert s.energy.dtype == np.float32 and s.incident_energy.dtype == np.float32
    assert len(s[2:5]) == 3 and len(s[np.array([0, 9])]) == 2 and len(s[3]) == 1
    np.testing.assert_array_equal(s[3].energy[0], s.energy[3])
    both = ShowerSet.concatenate([s[:4], s[4:]])
    np.testing.assert_array_equal(both.energy, s.energy)
    parts = s.split(3, seed=1)
    assert sorted(len(p) for p in parts) == [3, 3, 4]
    joined = np.sort(np.concatenate([p.incident_energy for p in parts]))
    np.testing.assert_array_equal(joined, np.sort(s.incident_energy))
    assert [len(p) for p in s.split(3)] == [4, 3, 3]
    with pytest.raises(ValueError, match="`k`"):
        s.split(11)
    with pytest.raises(ValueError, match="incident_energy"):
        ShowerSet(np.zeros((3, 2, 2)), np.zeros(2))


@pytest.mark.parametrize("rntuple", [False, True])
def test_round_trip_exact(tmp_path, rntuple):
    s = make_set(shape=(7, 5))
    path = tmp_path / "s.root"
    draw = np.arange(N, dtype=np.int32) % 3
    write_showers(path, s, extra_branches={"draw": draw}, rntuple=rntuple, chunk_size=15)
    back = read_showers(path)
    np.testing.assert_array_equal(back.energy, s.energy)
    np.testing.assert_array_equal(back.incident_energy, s.incident_energy)
    assert back.shape == (7, 5) and back.source == str(path)
    with uproot.open(path) as f:
        obj = f["showers"]
        assert obj.classname == ("ROOT::RNTuple" if rntuple else "TTree")
        np.testing.assert_array_equal(obj.arrays(["draw"], library="np")["draw"], draw)


def test_ttree_and_rntuple_and_sparse_agree(tmp_path):
    s = make_set()
    t = write_dense_raw(tmp_path / "t.root", s.energy, s.incident_energy)
    r = write_dense_raw(tmp_path / "r.root", s.energy, s.incident_energy, rntuple=True)
    j = write_ttree(tmp_path / "j.root", "jag", sparse_columns(s))
    jr = write_rntuple(tmp_path / "jr.root", "jag", sparse_columns(s))
    for path, cls in ((t, "TTree"), (r, "ROOT::RNTuple"), (j, "TTree"), (jr, "ROOT::RNTuple")):
        with uproot.open(path) as f:
            assert next(iter(f.classnames().values())) == cls
        back = read_showers(path)
        np.testing.assert_array_equal(back.energy, s.energy)
        np.testing.assert_array_equal(back.incident_energy, s.incident_energy)


def test_flat_dense_branch_and_shape(tmp_path):
    s = make_set(shape=(4, 9))
    path = write_dense_raw(tmp_path / "flat.root", s.energy.reshape(N, 36), s.incident_energy)
    np.testing.assert_array_equal(read_showers(path, shape=(4, 9)).energy, s.energy)
    assert read_showers(path).shape == (6, 6)  # default: square
    with pytest.raises(BranchError, match=r"file '.*flat.root', tree 'showers', branch 'energy'"):
        read_showers(path, shape=(5, 5))


def test_chunked_reading_equals_one_shot(dense_file):
    path, s = dense_file
    chunks = list(iterate_showers(path, step_size=7))
    assert [len(c) for c in chunks] == [7] * 5 + [5]
    np.testing.assert_array_equal(ShowerSet.concatenate(chunks).energy, s.energy)
    np.testing.assert_array_equal(read_showers(path, step_size=7).energy, s.energy)


def test_entry_range(dense_file, tmp_path):
    path, s = dense_file
    part = read_showers(path, entry_start=5, entry_stop=17, step_size=4)
    np.testing.assert_array_equal(part.energy, s.energy[5:17])
    np.testing.assert_array_equal(read_showers(path, entry_start=-3).energy, s.energy[-3:])
    with pytest.raises(EmptyTreeError, match="selects no entries"):
        read_showers(path, entry_start=30, entry_stop=30)
    # entry numbers in errors count from the start of the tree, also for later chunks
    e = s.energy.copy()
    e[23, 1, 1] = np.nan
    bad = write_dense_raw(tmp_path / "nan23.root", e, s.incident_energy)
    with pytest.raises(BadValueError, match="entry 23"):
        read_showers(bad, entry_start=10, step_size=4)


def test_named_tree_branches_and_constant_incident_energy(tmp_path):
    s = make_set()
    path = tmp_path / "named.root"
    with uproot.recreate(path) as f:
        f.mktree("calo", {"img": (np.float32, (10, 10))})
        f["calo"].extend({"img": s.energy})
        f["meta"] = {"x": np.arange(3)}
    back = read_showers(path, tree="calo", energy="img", incident_energy=50.0)
    np.testing.assert_array_equal(back.energy, s.energy)
    assert np.all(back.incident_energy == 50.0)
    with pytest.raises(BranchError, match="branch 'incident_energy'.*pass a number"):
        read_showers(path, energy="img")


def test_negative_within_tolerance_is_clipped(tmp_path):
    s = make_set()
    e = s.energy.copy()
    e[2, 0, 0] = -0.5 * NEGATIVE_TOLERANCE_GEV
    path = write_dense_raw(tmp_path / "tiny.root", e, s.incident_energy)
    back = read_showers(path)
    assert back.energy[2, 0, 0] == 0.0 and back.energy.min() >= 0


# ---------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match=r"file '.*nothere.root'.*no such file"):
        read_showers(tmp_path / "nothere.root")


def test_text_file_named_root(tmp_path):
    path = tmp_path / "text.root"
    path.write_text("energy,incident_energy\n1,2\n")
    with pytest.raises(NotRootError, match=r"text.root.*not a ROOT file"):
        read_showers(path)


def test_truncated_file(dense_file, tmp_path):
    path, _ = dense_file
    data = path.read_bytes()
    cut = tmp_path / "cut.root"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"cut.root.*truncated"):
        read_showers(cut)


def test_corrupt_payload(dense_file, tmp_path):
    # same length, but random bytes over the compressed baskets (written last, before the
    # trailing directory) or over the tree metadata: decoding must fail with a CorruptFileError
    path, _ = dense_file
    data = path.read_bytes()
    junk = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    for lo in (len(data) - 6000, 2000):
        bad = tmp_path / f"bad{lo}.root"
        bad.write_bytes(data[:lo] + junk + data[lo + 3000 :])
        with pytest.raises(CorruptFileError, match=rf"bad{lo}.root.*cannot read") as info:
            read_showers(bad)
        assert "\n" not in str(info.value)


def test_no_tree(tmp_path):
    path = tmp_path / "hist.root"
    with uproot.recreate(path) as f:
        f["h"] = np.histogram(np.arange(5.0), bins=3)
    with pytest.raises(TreeError, match=r"hist.root.*no TTree or RNTuple"):
        read_showers(path)


def test_two_candidate_trees(tmp_path):
    s = make_set()
    path = tmp_path / "two.root"
    with uproot.recreate(path) as f:
        for name in ("a", "b"):
            f.mktree(name, {"energy": (np.float32, (10, 10)), "incident_energy": np.float32})
            f[name].extend({"energy": s.energy, "incident_energy": s.incident_energy})
    with pytest.raises(TreeError, match=r"two.root.*several candidate trees \('a', 'b'\).*--tree"):
        read_showers(path)
    np.testing.assert_array_equal(read_showers(path, tree="b").energy, s.energy)
    with pytest.raises(TreeError, match=r"tree 'bb': no such tree; available: 'b', 'a'"):
        read_showers(path, tree="bb")


def test_tree_without_energy_branch(tmp_path):
    path = tmp_path / "nobranch.root"
    with uproot.recreate(path) as f:
        f.mktree("showers", {"energie": (np.float32, (10, 10)), "incident_energy": np.float32})
        f["showers"].extend(
            {"energie": np.ones((3, 10, 10), np.float32), "incident_energy": np.ones(3, np.float32)}
        )
    with pytest.raises(TreeError, match=r"no tree has the branches .*'showers' \(energie"):
        read_showers(path)
    with pytest.raises(BranchError, match=r"tree 'showers', branch 'energy'.*available: 'energie'"):
        read_showers(path, tree="showers")
    with pytest.raises(BranchError, match=r"branch 'cell_x': missing branch"):
        read_showers(path, tree="showers", cell_e="energie")


def test_wrong_shape_and_dtype(tmp_path):
    scalar = write_dense_raw(
        tmp_path / "scalar.root", np.ones(5, np.float32), np.ones(5, np.float32)
    )
    with pytest.raises(BranchError, match=r"branch 'energy'.*one number per entry"):
        read_showers(scalar)
    odd = write_dense_raw(
        tmp_path / "odd.root", np.ones((5, 37), np.float32), np.ones(5, np.float32)
    )
    with pytest.raises(BranchError, match=r"37 cells per entry is not a square"):
        read_showers(odd)
    jag = write_ttree(
        tmp_path / "jag.root",
        "showers",
        {"energy": ak.Array([[1.0] * 100, [1.0] * 100, [1.0] * 99]), "incident_energy": np.ones(3)},
    )
    with pytest.raises(BranchError, match=r"branch 'energy', entry 2: wrong shape, 99 cells"):
        read_showers(jag)
    flt = sparse_columns(make_set(5))
    flt["cell_x"] = ak.values_astype(flt["cell_x"], np.float64)
    path = write_ttree(tmp_path / "fltidx.root", "showers", flt)
    with pytest.raises(BranchError, match=r"branch 'cell_x': expected integer"):
        read_showers(path)


def test_nan_in_entry_7(tmp_path):
    s = make_set()
    e = s.energy.copy()
    e[7, 3, 4] = np.nan
    e[9, 0, 0] = np.inf
    path = write_dense_raw(tmp_path / "nan.root", e, s.incident_energy)
    with pytest.raises(
        BadValueError, match=r"nan.root', tree 'showers', branch 'energy', entry 7: value nan"
    ):
        read_showers(path)
    inc = s.incident_energy.copy()
    inc[4] = np.inf
    path = write_dense_raw(tmp_path / "inc.root", s.energy, inc)
    with pytest.raises(BadValueError, match=r"branch 'incident_energy', entry 4"):
        read_showers(path)


def test_negative_energy_in_entry_3(tmp_path):
    s = make_set()
    e = s.energy.copy()
    e[3, 5, 5] = -0.2
    path = write_dense_raw(tmp_path / "neg.root", e, s.incident_energy, rntuple=True)
    with pytest.raises(BadValueError, match=r"branch 'energy', entry 3: negative energy -0.2"):
        read_showers(path)
    cols = sparse_columns(s)
    ce = ak.to_list(cols["cell_e"])
    ce[3][0] = -0.2
    cols["cell_e"] = ak.Array(ce)
    path = write_ttree(tmp_path / "negsparse.root", "showers", cols)
    with pytest.raises(BadValueError, match=r"branch 'cell_e', entry 3: negative energy"):
        read_showers(path)


def test_empty_tree(tmp_path):
    path = write_dense_raw(
        tmp_path / "empty.root", np.zeros((0, 10, 10), np.float32), np.zeros(0, np.float32)
    )
    with pytest.raises(
        EmptyTreeError, match=r"empty.root', tree 'showers': the tree has no entries"
    ):
        read_showers(path)


def test_jagged_index_out_of_range(tmp_path):
    cols = sparse_columns(make_set())
    cx = ak.to_list(cols["cell_x"])
    cx[5][-1] = 10
    cols["cell_x"] = ak.Array(cx)
    path = write_ttree(tmp_path / "range.root", "showers", cols)
    with pytest.raises(
        BadValueError, match=r"branch 'cell_x', entry 5: cell index 10 out of range"
    ):
        read_showers(path)
    # with a wider declared image the same index is valid
    assert read_showers(path, shape=(10, 11)).shape == (10, 11)
    mism = sparse_columns(make_set())
    ce = ak.to_list(mism["cell_e"])
    ce[6].append(1.0)
    mism["cell_e"] = ak.Array(ce)
    path = write_ttree(tmp_path / "mism.root", "showers", mism)
    with pytest.raises(BranchError, match=r"branch 'cell_e', entry 6"):
        read_showers(path)


def test_error_messages_are_one_line(tmp_path):
    path = tmp_path / "text.root"
    path.write_text("a\nb\nc\n")
    with pytest.raises(InputError) as info:
        read_showers(path)
    assert "\n" not in str(info.value)
    assert issubclass(InputError, CalampError) and not issubclass(OutputExistsError, InputError)


# ---------------------------------------------------------------- writing


def test_overwrite_protection(dense_file):
    path, s = dense_file
    other = make_set(seed=5)
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_showers(path, other)
    np.testing.assert_array_equal(read_showers(path).energy, s.energy)
    write_showers(path, other, overwrite=True)
    np.testing.assert_array_equal(read_showers(path).energy, other.energy)
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(ValueError, match="extra_branches"):
        write_showers(path, s, overwrite=True, extra_branches={"draw": np.arange(3)})
