"""The results folder owns its files: lock, input fingerprint on resume, safe --overwrite."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from calamp.folder import LOCK, MARKER, ResultsFolder, input_fingerprint
from calamp.io import OutputExistsError


def _folder(path, **kw):
    kw.setdefault("config", {"seed": 1})
    kw.setdefault("fingerprint", {"path": None})
    return ResultsFolder(path, **kw)


def test_lock_keeps_a_second_run_out_and_is_released(tmp_path):
    out = tmp_path / "res"
    with _folder(out):
        assert (out / LOCK).exists()
        with pytest.raises(OutputExistsError, match="in use by another calamp run"):
            _folder(out, resume=True).open()
        with pytest.raises(OutputExistsError, match="in use"):  # --overwrite does not break in
            _folder(out, overwrite=True).open()
        assert (out / MARKER).exists() and (out / "config.json").exists()
    assert not (out / LOCK).exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    import socket

    (out / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    with _folder(out):
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()


def test_overwrite_deletes_only_what_calamp_wrote(tmp_path):
    out = tmp_path / "res"
    with _folder(out):
        (out / "results.json").write_text("{}")
        (out / "draws").mkdir()
        (out / "draws" / "x.npz").write_text("x")
    (out / "my_notes.txt").write_text("keep me")
    with _folder(out, overwrite=True):
        pass
    assert (out / "my_notes.txt").read_text() == "keep me"
    assert not (out / "results.json").exists() and not (out / "draws").exists()


def test_overwrite_refuses_when_the_input_is_inside(tmp_path):
    out = tmp_path / "res"
    with _folder(out):
        pass
    data = out / "showers.root"
    data.write_bytes(b"root data")
    with pytest.raises(OutputExistsError, match="lies inside the output folder"):
        _folder(out, overwrite=True, protect=(data,)).open()
    assert data.read_bytes() == b"root data"
    assert not (out / LOCK).exists()  # a refused open leaves no lock behind


def test_not_a_calamp_folder_and_a_file_as_out(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.txt").write_text("a")
    with pytest.raises(OutputExistsError, match="not made by calamp"):
        _folder(foreign, overwrite=True).open()
    as_file = tmp_path / "file"
    as_file.write_text("x")
    with pytest.raises(OutputExistsError, match="is a file"):
        _folder(as_file).open()


def test_resume_refuses_another_input(tmp_path):
    a, b = tmp_path / "a.root", tmp_path / "b.root"
    a.write_bytes(os.urandom(3 << 20))
    b.write_bytes(a.read_bytes()[: 2 << 20] + os.urandom(1 << 20))  # same head, other tail
    fa, fb = input_fingerprint(a, {"tree": None}), input_fingerprint(b, {"tree": None})
    assert fa != fb and fa == input_fingerprint(a, {"tree": None})
    out = tmp_path / "res"
    with _folder(out, fingerprint=fa):
        pass
    with pytest.raises(OutputExistsError, match="was made from"):
        _folder(out, fingerprint=fb, resume=True).open()
    with pytest.raises(OutputExistsError, match="options differ"):
        _folder(out, fingerprint=fa, resume=True, config={"seed": 2}).open()
    with _folder(out, fingerprint=fa, resume=True):
        pass


def test_read_only_location_is_one_line(tmp_path):
    if os.geteuid() == 0:  # root ignores permissions: use a path below a file instead
        (tmp_path / "f").write_text("x")
        target = tmp_path / "f" / "res"
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        target = ro / "res"
    with pytest.raises(OutputExistsError, match="cannot"):
        _folder(target).open()
