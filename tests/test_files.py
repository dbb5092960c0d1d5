"""Writing an output, the one way every output is written (`files.write_atomic`):
its descriptor is always closed, its temporary file is never made through a
link or over another file, its name is checked before any work, and one
permissions rule holds for every file microgpt makes."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import pytest
from conftest import DOCS, TINY, assert_one_line_error, microgpt_cli

from microgpt import checkpoint, files
from microgpt.errors import UsageError

FD_LIMIT = 64
QUIET = [*TINY, "--samples", "0"]

SAVE_MANY = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))
os.fsync = lambda fd: None  # descriptors are tested, not the disk: 3,000 syncs take a minute
from microgpt import checkpoint
from microgpt.train import Run, TrainConfig
run = Run.start({docs!r}, TrainConfig(steps=10), n_embd=4, n_head=1, n_layer=1, block_size=8)
for _ in range({saves}):
    checkpoint.save(run, sys.argv[1], "names.txt", "0" * 64)
print(len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1)
"""


def lower_fd_limit() -> None:
    import resource  # POSIX only: imported in the child, never at collection

    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- descriptors ----------------------------------------------------------------------------


@pytest.mark.posix_only("resource limits (ulimit -n)")
def test_three_thousand_saves_under_a_limit_of_64_descriptors(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.json"
    script = SAVE_MANY.format(limit=FD_LIMIT, docs=DOCS, saves=3000)
    result = subprocess.run(
        [sys.executable, "-c", script, str(ckpt)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert checkpoint.load(ckpt).step == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]  # no temporary file left
    if int(result.stdout) > 0:  # where /proc tells: as few open as at the start
        assert int(result.stdout) < 10


@pytest.mark.posix_only("resource limits (ulimit -n)")
def test_a_run_saving_every_step_under_a_limit_of_64_descriptors(
    data: Path, tmp_path: Path
) -> None:
    # (ulimit -n 64; microgpt train --steps 120 --save-every 1 --out c.json)
    ckpt, log = tmp_path / "c.json", tmp_path / "l.jsonl"
    command = [sys.executable, "-m", "microgpt", "train", "--data", str(data), *QUIET]
    command += ["--steps", "120", "--save-every", "1", "--out", str(ckpt), "--log", str(log)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, preexec_fn=lower_fd_limit
    )
    assert result.returncode == 0, result.stderr
    assert checkpoint.load(ckpt).step == 120


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_the_descriptor_is_closed_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fails(f: BinaryIO) -> None:
        f.write(b"half")
        raise RuntimeError("disk on fire")

    before = open_descriptors()
    for _ in range(20):
        with pytest.raises(RuntimeError):
            files.write_atomic(target, fails)
    assert open_descriptors() == before
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


# --- the temporary file -------------------------------------------------------------------


@pytest.mark.posix_only("symbolic links")
def test_the_temporary_file_is_never_made_through_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Someone who guesses the next temporary name and puts a link there
    # gets nothing written through it: that name is skipped.
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    target = tmp_path / "out.txt"
    names = iter(["aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: next(names))
    trap = tmp_path / ".out.txt.aaaaaaaa.tmp"
    trap.symlink_to(victim)
    files.write_text_atomic(target, "mine")
    assert target.read_text(encoding="utf-8") == "mine"
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert trap.is_symlink()


def test_a_file_that_is_no_longer_ours_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "c.json"
    target.write_text("someone's notes", encoding="utf-8")
    with pytest.raises(OSError, match="no longer a file microgpt wrote"):
        files.write_json_atomic(target, {"x": 1}, checkpoint.looks_like_checkpoint)
    assert target.read_text(encoding="utf-8") == "someone's notes"
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


def test_a_name_too_long_for_the_temporary_file_is_refused_before_training(
    data: Path, tmp_path: Path
) -> None:
    # 245 bytes fit in a name, and its lock file's 251; the temporary file's 259 do not.
    for option in ("--out", "--log"):
        long = tmp_path / ("n" * 240 + ".json")
        result = microgpt_cli("train", "--data", data, *QUIET, "--steps", 1, option, long)
        line = assert_one_line_error(result, f"{option} ", "File name too long (245 bytes)")
        assert "temporary file" in line
        assert sorted(p.name for p in tmp_path.iterdir()) == ["names.txt"]


def test_check_output_names_the_setting_from_python(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="^output .*: folder .* does not exist$"):
        files.check_output(tmp_path / "no" / "x.json", files.OUTPUT, "a file")


# --- permissions ----------------------------------------------------------------------------


@pytest.mark.posix_only("file modes (umask)")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_new_outputs_get_what_open_gives(data: Path, tmp_path: Path, umask: int) -> None:
    ckpt, log = tmp_path / "c.json", tmp_path / "l.jsonl"
    previous = os.umask(umask)
    try:
        result = microgpt_cli(
            "train", "--data", data, *QUIET, "--steps", 2, "--out", ckpt, "--log", log
        )
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stderr
    for path in (ckpt, log):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


@pytest.mark.posix_only("file modes (chmod)")
def test_a_replaced_output_keeps_its_permissions(data: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "c.json"
    assert (
        microgpt_cli("train", "--data", data, *QUIET, "--steps", 2, "--out", ckpt).returncode == 0
    )
    ckpt.chmod(0o640)
    assert (
        microgpt_cli("train", "--data", data, *QUIET, "--steps", 3, "--out", ckpt).returncode == 0
    )
    assert checkpoint.load(ckpt).step == 3
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o640


@pytest.mark.posix_only("symbolic links")
@pytest.mark.parametrize("nofollow", [files.O_NOFOLLOW, 0], ids=["O_NOFOLLOW", "checked"])
def test_an_output_is_never_opened_through_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nofollow: int
) -> None:
    # Where O_NOFOLLOW is missing (Windows), the name is checked instead.
    monkeypatch.setattr(files, "O_NOFOLLOW", nofollow)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(OSError) as info:
        files.open_no_follow(link, os.O_RDWR | os.O_CREAT)
    assert info.value.errno == errno.ELOOP
    assert victim.read_text(encoding="utf-8") == "keep me"
    fd = files.open_no_follow(tmp_path / "plain", os.O_RDWR | os.O_CREAT)
    os.close(fd)
