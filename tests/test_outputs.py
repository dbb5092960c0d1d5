"""Outputs: microgpt writes only regular files that are its own, one run at a
time, never over one of its inputs; symbolic links are followed to the file
they name. Real subprocesses and real special files (made in a temporary
folder, never the system's own), run as whatever user the suite runs as
(root included, where permission bits do not protect anything)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PURE_REQUESTED, TINY, lines_of, microgpt_cli
from conftest import assert_one_line_error as one_line_error

from microgpt import checkpoint, files
from microgpt.errors import UsageError
from microgpt.runlog import LossLog

LONG_STEPS = 60 if PURE_REQUESTED else 600


def train(data: Path, *args: object, steps: int = 2) -> subprocess.CompletedProcess[str]:
    return microgpt_cli("train", "--data", data, "--steps", steps, *TINY, "--samples", 0, *args)


# --- special files ------------------------------------------------------------------------


def make_fifo(path: Path) -> Callable[[], bool]:
    os.mkfifo(path)
    return lambda: stat.S_ISFIFO(os.lstat(path).st_mode)


def make_char_device(path: Path) -> Callable[[], bool]:
    # The null device's numbers, on a node of our own (never /dev/null itself).
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return lambda: stat.S_ISCHR(os.lstat(path).st_mode)


def make_socket(path: Path) -> Callable[[], bool]:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the file stays
    return lambda: stat.S_ISSOCK(os.lstat(path).st_mode)


def make_directory(path: Path) -> Callable[[], bool]:
    path.mkdir()
    return lambda: path.is_dir() and not any(path.iterdir())


SPECIAL: dict[str, tuple[Callable[[Path], Callable[[], bool]], str]] = {
    "FIFO": (make_fifo, "is a FIFO (named pipe); microgpt writes only regular files"),
    "character device": (make_char_device, "is a character device; microgpt writes only"),
    "socket": (make_socket, "is a socket; microgpt writes only regular files"),
    "directory": (make_directory, "is a directory; give a file name"),
}


@pytest.mark.posix_only("FIFOs, device nodes, Unix sockets, symbolic links")
@pytest.mark.parametrize("option", ["--out", "--log"])
@pytest.mark.parametrize("kind", list(SPECIAL))
def test_special_files_are_never_written_or_replaced(
    data: Path, tmp_path: Path, option: str, kind: str
) -> None:
    make, fragment = SPECIAL[kind]
    target = tmp_path / "special"
    still_there = make(target)
    result = train(data, option, target)
    one_line_error(result, f"{option} {target} {fragment}")
    assert still_there()
    # Through a symbolic link too: the link is followed to the special file.
    link = tmp_path / "link"
    link.symlink_to(target)
    one_line_error(train(data, option, link), f"{option} {link} {fragment}")
    assert still_there() and link.is_symlink()


@pytest.mark.posix_only("device nodes (mknod)")
def test_a_file_swapped_for_a_device_mid_run_is_not_replaced(tmp_path: Path) -> None:
    # Checked again right before the rename: a target that has become a
    # device since the run started is left alone (and the save fails).
    target = tmp_path / "c.json"
    make_char_device(target)
    with pytest.raises(OSError, match="character device"):
        checkpoint.write_json_atomic(target, {"x": 1})
    assert stat.S_ISCHR(os.lstat(target).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]  # no temporary file left


@pytest.mark.posix_only("FIFOs")
def test_a_log_swapped_for_a_fifo_is_not_opened(tmp_path: Path) -> None:
    target = tmp_path / "log.jsonl"
    make_fifo(target)
    # A FIFO would block a plain open() for writing until a reader comes.
    with pytest.raises(UsageError, match="FIFO"):
        LossLog.open(target)


# --- only our own files -----------------------------------------------------------------------


def test_log_refuses_a_file_that_is_not_a_microgpt_log(data: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n", encoding="utf-8")
    other_ckpt = tmp_path / "other.json"
    assert train(data, "--out", other_ckpt).returncode == 0
    for victim in (notes, other_ckpt):
        before = victim.read_bytes()
        one_line_error(
            train(data, "--log", victim),
            f"--log {victim} exists and is not a microgpt loss log; refusing to overwrite it",
        )
        assert victim.read_bytes() == before
        # ...and on --resume, when it would be cut back and appended to.
        one_line_error(train(data, "--resume", other_ckpt, "--log", victim, steps=2))
        assert victim.read_bytes() == before


def test_log_replaces_an_older_log_of_microgpt(data: Path, tmp_path: Path) -> None:
    log = tmp_path / "losses.jsonl"
    assert train(data, "--log", log, steps=3).returncode == 0
    assert train(data, "--log", log, steps=2).returncode == 0
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()[1:]] == [1, 2]
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert train(data, "--log", empty).returncode == 0


# --- inputs are never outputs ---------------------------------------------------------------


@pytest.mark.posix_only("symbolic links")
def test_an_output_that_is_an_input_is_refused(data: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "c.json"
    assert train(data, "--out", ckpt).returncode == 0
    hard = tmp_path / "hard.txt"
    os.link(data, hard)
    soft = tmp_path / "soft.json"
    soft.symlink_to(ckpt)
    before = data.read_bytes(), ckpt.read_bytes()
    # The data through another name (a hard link) is still the data.
    one_line_error(train(data, "--log", hard), f"--log {hard} is the same file as --data {data}")
    one_line_error(
        train(data, "--out", ckpt, "--log", soft),
        f"--log {soft} is the same file as --out {ckpt}",
    )
    one_line_error(
        microgpt_cli("train", "--resume", ckpt, "--log", soft),
        f"--log {soft} is the same file as --resume {ckpt}",
    )
    assert (data.read_bytes(), ckpt.read_bytes()) == before


# --- symbolic links ----------------------------------------------------------------------


@pytest.mark.posix_only("symbolic links")
def test_a_symlinked_checkpoint_is_written_through_and_the_link_kept(
    data: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    real = runs / "today.json"
    latest = tmp_path / "latest.json"
    latest.symlink_to(real)
    # A link to nothing is refused (it would create a file the user never named).
    one_line_error(train(data, "--out", latest), "is a symbolic link to", "which does not exist")
    assert not real.exists()

    assert train(data, "--out", real, "--save-every", 1, steps=4).returncode == 0
    first = real.read_bytes()
    # Resuming through the link saves back through it: the link stays a link.
    resumed = microgpt_cli("train", "--resume", latest, "--samples", 0)
    assert resumed.returncode == 0, resumed.stderr
    assert latest.is_symlink() and os.readlink(latest) == str(real)
    assert checkpoint.load(real).step == 4 and real.read_bytes() == first  # already done
    # A new run through the link replaces the file it names.
    assert train(data, "--out", latest, steps=3).returncode == 0
    assert latest.is_symlink() and checkpoint.load(real).step == 3
    assert sorted(p.name for p in runs.iterdir()) == ["today.json"]  # no temporary or lock file


# --- one writer per output ----------------------------------------------------------------


@pytest.fixture
def running(data: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A long training run, underway, writing c.json and losses.jsonl."""
    ckpt, log = tmp_path / "c.json", tmp_path / "losses.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-m", "microgpt", "train", "--data", str(data), *TINY]
        + ["--steps", str(LONG_STEPS), "--save-every", "1", "--out", str(ckpt), "--log", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = lines_of(child.stderr)
    try:
        while not (line := stderr.get(timeout=120)).startswith("saved "):
            assert line, "the run ended early"
        yield ckpt, log
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=120) == 130
    finally:
        child.kill()
        child.wait()


@pytest.mark.posix_only("SIGINT to a child; symbolic links")
def test_a_second_run_on_the_same_outputs_is_refused(
    running: tuple[Path, Path], data: Path, tmp_path: Path
) -> None:
    ckpt, log = running
    pid = re.compile(r"\(process \d+\)")
    line = one_line_error(train(data, "--out", ckpt), f"--out {ckpt} is being written by another")
    assert pid.search(line)
    one_line_error(
        train(data, "--log", log, "--out", tmp_path / "mine.json"),
        f"--log {log} is being written by another microgpt run",
    )
    assert not (tmp_path / "mine.json").exists()
    # Through a symbolic link it is the same output.
    link = tmp_path / "link.json"
    link.symlink_to(ckpt)
    one_line_error(train(data, "--out", link), "is being written by another microgpt run")


def test_locks_are_released_when_the_run_ends(data: Path, tmp_path: Path) -> None:
    ckpt, log = tmp_path / "c.json", tmp_path / "l.jsonl"
    assert train(data, "--out", ckpt, "--log", log).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "l.jsonl", "names.txt"]
    assert train(data, "--out", ckpt, "--log", log).returncode == 0  # a later run may write


def test_a_stale_lock_file_does_not_block(data: Path, tmp_path: Path) -> None:
    # A run killed with SIGKILL leaves its (unlocked) lock file behind.
    ckpt = tmp_path / "c.json"
    (tmp_path / ".c.json.lock").write_text("12345\n")
    assert train(data, "--out", ckpt).returncode == 0
    assert checkpoint.load(ckpt).step == 2


def test_output_lock_in_process(tmp_path: Path) -> None:
    target = tmp_path / "c.json"
    first = files.OutputLock(target).acquire()
    with pytest.raises(UsageError, match=f"(process {os.getpid()})"):
        files.OutputLock(target).acquire()
    first.release()
    files.OutputLock(target).acquire().release()
    assert list(tmp_path.iterdir()) == []
