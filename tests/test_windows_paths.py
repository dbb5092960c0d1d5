"""The command line's main paths where POSIX-only names do not exist.

Windows has no `fcntl`, no `os.O_NOFOLLOW`, `os.O_NONBLOCK` or `os.sysconf`,
and no SIGPIPE, SIGHUP or SIGKILL. Each command here runs in a Python whose
`sitecustomize` (conftest's `simulated_windows`) removes those names (and
blocks `import fcntl` and the other POSIX-only modules) before anything
imports microgpt; the processes a sweep starts inherit it. So the code
paths microgpt takes on Windows run on any CI machine: train with a
checkpoint and a log, resume, sample, plot, a sweep with two workers, one
writer per output, and the stop signals.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    PURE_REQUESTED,
    SIMULATED_WINDOWS,
    TINY,
    assert_one_line_error,
    lines_of,
    microgpt_cli,
    ok,
)

from microgpt import checkpoint

# Windows simulated on POSIX: where Windows is real, the other tests run there.
pytestmark = pytest.mark.posix_only("a simulation of Windows on POSIX")
LONG_STEPS = 100 if PURE_REQUESTED else 1000
QUIET = [*TINY, "--samples", "0"]


@pytest.fixture(scope="module")
def windows(simulated_windows: dict[str, str]) -> dict[str, str]:
    """The environment of the simulated platform (conftest's SIMULATED_WINDOWS)."""
    return simulated_windows


def run(
    env: dict[str, str] | None, *args: object, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m microgpt ARGS` in the environment `env` (None: this one)."""
    return microgpt_cli(*args, cwd=cwd, env=env)


def test_the_simulation_hides_the_posix_names(windows: dict[str, str]) -> None:
    # Without this, every other test here could pass on plain Linux.
    probe = (
        "import os, signal, importlib.util\n"
        "try:\n    import fcntl\nexcept ImportError:\n    fcntl = None\n"
        "names = [hasattr(os, n) for n in ('O_NOFOLLOW', 'O_NONBLOCK', 'sysconf')]\n"
        "names += [hasattr(signal, n) for n in ('SIGPIPE', 'SIGHUP', 'SIGKILL')]\n"
        "print(fcntl is None, any(names))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=windows, check=True
    )
    assert result.stdout.split() == ["True", "False"]


def test_train_resume_sample_and_plot(windows: dict[str, str], data: Path, tmp_path: Path) -> None:
    ckpt, log = tmp_path / "c.json", tmp_path / "l.jsonl"
    train = ["train", "--data", data, *QUIET, "--out", ckpt, "--log", log, "--save-every", 5]
    first = ok(run(windows, *train, "--steps", 20))
    # No sysconf: the memory cap is not a made-up number; the user is told.
    assert "this machine's memory is unknown" in first.stderr
    assert "--max-memory SIZE sets a cap" in first.stderr
    assert checkpoint.load(ckpt).step == 20
    # The same bits as on this platform's own code paths.
    ckpt2, log2 = tmp_path / "c2.json", tmp_path / "l2.jsonl"
    ok(run(None, "train", "--data", data, *QUIET, "--out", ckpt2, "--log", log2, "--steps", 20))
    assert ckpt.read_bytes() == ckpt2.read_bytes()

    resumed = ok(run(windows, "train", "--resume", ckpt, "--log", log))
    assert "all 20 steps done" in resumed.stderr
    steps = [line for line in log.read_text(encoding="utf-8").splitlines() if '"loss"' in line]
    assert len(steps) == 20
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no lock left

    sampled = ok(run(windows, "sample", ckpt, "--num", 3))
    assert len(sampled.stdout.splitlines()) == 3

    pytest.importorskip("matplotlib")
    picture = tmp_path / "loss.png"
    ok(run(windows, "plot", "loss", log, "-o", picture))
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_sweep_with_two_workers(windows: dict[str, str], data: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    sweep = ["sweep", "--grid", "lr=0.01,0.02", "--workers", 2, "--out", out]
    result = ok(run(windows, *sweep, "--data", data, "--steps", 10, *QUIET))
    rows = (out / "results.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 3, rows  # the header and both runs
    assert "2 at a time on this machine" in result.stderr


def test_one_writer_per_output_and_a_clean_stop(
    windows: dict[str, str], data: Path, tmp_path: Path
) -> None:
    # Without fcntl and msvcrt, the lock is the lock file's existence.
    ckpt = tmp_path / "c.json"
    command = [sys.executable, "-m", "microgpt", "train", "--data", str(data), *QUIET]
    command += ["--steps", str(LONG_STEPS), "--save-every", "1", "--out", str(ckpt)]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=windows)
    stderr = lines_of(child.stderr)
    try:
        while not (line := stderr.get(timeout=120)).startswith("saved "):
            assert line, "the run ended early"
        second = run(windows, "train", "--data", data, *QUIET, "--steps", 2, "--out", ckpt)
        line = assert_one_line_error(second, f"--out {ckpt} is being written by another")
        assert f"(process {child.pid})" in line
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=120) == 130
    finally:
        child.kill()
        child.wait()
    assert not (tmp_path / ".c.json.lock").exists()
    stopped_at = checkpoint.load(ckpt).step
    assert 1 <= stopped_at < LONG_STEPS
    ok(run(windows, "train", "--resume", ckpt, "--samples", 0))
    assert checkpoint.load(ckpt).step == LONG_STEPS


def test_a_lock_left_by_a_killed_run_is_taken_over(
    windows: dict[str, str], data: Path, tmp_path: Path
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (tmp_path / ".c.json.lock").write_text(gone.stdout)
    ckpt = tmp_path / "c.json"
    ok(run(windows, "train", "--data", data, *QUIET, "--steps", 2, "--out", ckpt))
    assert checkpoint.load(ckpt).step == 2


def test_a_name_too_long_for_the_temporary_file_is_refused_up_front(
    windows: dict[str, str], data: Path, tmp_path: Path
) -> None:
    long = tmp_path / ("n" * 240 + ".json")  # fits, but its temporary file would not
    result = run(windows, "train", "--data", data, *QUIET, "--steps", 2, "--out", long)
    assert_one_line_error(result, "--out", "File name too long", "temporary file")
    assert list(tmp_path.iterdir()) == [data]


# On Windows os.kill (and so Popen.send_signal and terminate) with SIGTERM is
# TerminateProcess: the process ends at once, without its save. Simulated
# here with SIGKILL, taken before the simulation removes its name.
TERMINATE_PROCESS = """
import os as _os
_kill, _SIGKILL = _os.kill, 9
_os.kill = lambda pid, signum: _kill(pid, _SIGKILL)
"""


def test_a_stopped_sweep_s_runs_save_where_a_signal_would_kill_them(
    windows: dict[str, str], data: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "terminate-process"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(SIMULATED_WINDOWS + TERMINATE_PROCESS, "utf-8")
    env = {**windows, "PYTHONPATH": str(folder)}
    out = tmp_path / "sweep"
    command = ["sweep", "--grid", "lr=0.01,0.02", "--data", data, *QUIET, "--steps", LONG_STEPS,
               "--save-every", 10, "--out", out, "--workers", 2]  # fmt: skip
    sweep = subprocess.Popen(
        [sys.executable, "-m", "microgpt", *map(str, command)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    ckpts = [out / run / "checkpoint.json" for run in ("lr=0.01", "lr=0.02")]
    deadline = time.monotonic() + 120
    while not all(c.exists() for c in ckpts) and time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()
        time.sleep(0.02)
    sweep.send_signal(signal.SIGINT)  # the console's Ctrl-C reaches the sweep alone
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, stderr
    for ckpt in ckpts:  # each run saved as it stopped: none was terminated
        said = (ckpt.parent / "stderr.txt").read_text(encoding="utf-8")
        step = checkpoint.load(ckpt).step
        assert 0 < step < LONG_STEPS
        assert f"at step {step} (interrupted)" in said and "interrupted after step" in said
    again = ok(run(env, *command))
    assert "0 finished before, 2 to resume, 0 to start" in again.stderr
    assert all(checkpoint.load(c).step == LONG_STEPS for c in ckpts)
