"""Streams: a closed or broken stdout/stderr never ends in exit status 0 with
output lost or a run silently stopped. What can be saved is saved, the status
says what happened (141: the reader went away; 1: the stream failed
otherwise; 2: refused before starting), samples appear as they are drawn, and
a terminal that cannot show a character gets an escape, not a traceback."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PURE_REQUESTED, TINY, microgpt_cli

from microgpt import checkpoint

DOCS = ["anna", "bob", "carl", "dora", "eve", "frank", "gus", "hana", "ivo", "jan", "zoë"]
LONG_STEPS = 60 if PURE_REQUESTED else 600
# Fewer bytes of names than a pipe's buffer holds, so that without a flush per
# line nothing would arrive before the end; enough to take a second or more.
MANY_NAMES = 100 if PURE_REQUESTED else 700
BROKEN_PIPE = 141


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "names.txt"
    path.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def ckpt(data: Path, tmp_path: Path) -> Path:
    path = tmp_path / "trained.json"
    made = microgpt_cli("train", "--data", data, "--steps", 3, *TINY, "--out", path)
    assert made.returncode == 0, made.stderr
    return path


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "microgpt", *map(str, args)]


def test_train_piped_into_head_stops_saves_and_says_so_by_its_status(
    data: Path, tmp_path: Path
) -> None:
    # `microgpt train ... 2>&1 | head -3`
    out = tmp_path / "c.json"
    child = subprocess.Popen(
        command("train", "--data", data, "--steps", LONG_STEPS, *TINY, "--log-every", 1)
        + ["--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert child.stdout is not None
    head = [child.stdout.readline() for _ in range(3)]
    child.stdout.close()  # head exits
    try:
        status = child.wait(timeout=120)
    finally:
        child.kill()
        child.wait()
    assert head[2].startswith(b"step ")
    assert status == BROKEN_PIPE  # not 0: the run did not finish
    saved = checkpoint.load(out)
    assert 1 <= saved.step < LONG_STEPS  # what was trained is kept, and resumes
    resumed = microgpt_cli("train", "--resume", out, "--samples", 0)
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint.load(out).step == LONG_STEPS


def test_a_broken_stderr_alone_stops_the_run_after_saving(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    child = subprocess.Popen(
        command("train", "--data", data, "--steps", LONG_STEPS, *TINY, "--log-every", 1)
        + ["--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None and child.stdout is not None
    while not child.stderr.readline().startswith("step "):
        pass
    child.stderr.close()
    try:
        stdout = child.stdout.read()
        status = child.wait(timeout=120)
    finally:
        child.kill()
        child.wait()
    assert status == BROKEN_PIPE
    assert stdout == ""  # no samples from an unfinished run
    assert 1 <= checkpoint.load(out).step < LONG_STEPS


def test_samples_appear_as_they_are_drawn(data: Path, tmp_path: Path) -> None:
    # `microgpt sample CKPT --num MANY | head -1`, on a model of the default size
    ckpt = tmp_path / "default.json"
    made = microgpt_cli("train", "--data", data, "--steps", 2, "--samples", 0, "--out", ckpt)
    assert made.returncode == 0, made.stderr
    # As a user's shell runs it: stdout to a pipe is block-buffered by Python.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    child = subprocess.Popen(
        command("sample", ckpt, "--num", MANY_NAMES),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    try:
        first = child.stdout.readline()
        time.sleep(0.3)  # far less than drawing them all takes
        still_drawing = child.poll() is None
        child.stdout.close()
        status = child.wait(timeout=120)
    finally:
        child.kill()
        child.wait()
    assert first.endswith("\n") and first.strip()
    assert still_drawing  # the first name came long before the last was drawn
    assert status == BROKEN_PIPE
    assert child.stderr is not None and "Traceback" not in child.stderr.read()


@pytest.mark.parametrize("which", ["sample", "train"])
def test_a_closed_stdout_is_refused_before_anything_is_done(
    which: str, ckpt: Path, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "new.json"
    args = ["sample", ckpt] if which == "sample" else ["train", "--data", data, "--out", out]
    result = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *command(*args)],
        capture_output=False,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("microgpt: error: stdout is closed, so the samples would be")
    assert len(result.stderr.splitlines()) == 1
    assert not out.exists()
    if which == "train":  # with nothing to print, stdout is not needed
        quiet = subprocess.run(
            ["sh", "-c", 'exec "$@" >&-', "sh"]
            + command("train", "--data", data, "--steps", 2, *TINY, "--samples", 0),
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        assert quiet.returncode == 0, quiet.stderr


@pytest.mark.posix_only("device nodes (mknod)")
def test_a_full_disk_on_stdout_is_exit_1_with_the_run_saved(
    ckpt: Path, data: Path, tmp_path: Path
) -> None:
    full = tmp_path / "full"
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # like /dev/full, our own node
    with open(full, "w") as stdout:
        sampled = subprocess.run(
            command("sample", ckpt), stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120
        )
    assert sampled.returncode == 1
    assert sampled.stderr == ("microgpt: error: cannot write to stdout: No space left on device\n")
    out = tmp_path / "c.json"
    with open(full, "w") as stdout:
        trained = subprocess.run(
            command("train", "--data", data, "--steps", 3, *TINY, "--out", out),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert trained.returncode == 1
    assert trained.stderr.splitlines()[-1] == (
        "microgpt: error: cannot write to stdout: No space left on device"
    )
    assert checkpoint.load(out).step == 3  # the training itself is kept


def test_a_closed_stderr_is_exit_1_not_a_silent_run(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    result = subprocess.run(
        ["sh", "-c", 'exec "$@" 2>&-', "sh"]
        + command("train", "--data", data, "--steps", 3, *TINY, "--out", out),
        stdout=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stdout == ""  # the messages did not leak onto stdout
    assert not out.exists()  # it stopped at its first message, before training


@pytest.mark.parametrize(
    "env",
    [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}],
)
def test_a_terminal_that_cannot_show_a_character_gets_an_escape(
    env: dict[str, str], ckpt: Path, data: Path
) -> None:
    environment = {**os.environ, **env}
    sampled = subprocess.run(
        command("sample", ckpt, "--num", 30, "--prompt", "zo"),
        capture_output=True,
        env=environment,
        timeout=120,
    )
    assert sampled.returncode == 0, sampled.stderr
    names = sampled.stdout.decode("ascii").splitlines()
    assert len(names) == 30 and all(name.startswith("zo") for name in names)
    # A character outside the terminal's encoding is written as an escape.
    accented = subprocess.run(
        command("sample", ckpt, "--num", 3, "--prompt", "zoë"),
        capture_output=True,
        env=environment,
        timeout=120,
    )
    assert accented.returncode == 0, accented.stderr
    lines = accented.stdout.decode("ascii").splitlines()
    assert len(lines) == 3 and all(line.startswith("zo\\xeb") for line in lines), lines
    refused = subprocess.run(
        command("sample", ckpt, "--prompt", "é" * 3),
        capture_output=True,
        env=environment,
        timeout=120,
    )
    assert refused.returncode == 2
    assert b"Traceback" not in refused.stderr
    line = refused.stderr.decode("ascii")
    assert line.startswith("microgpt: error: prompt '\\xe9\\xe9\\xe9': character '\\xe9'"), line
    assert len(line.splitlines()) == 1
