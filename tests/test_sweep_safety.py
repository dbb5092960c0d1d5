"""A sweep at its edges: its folder is its own, its runs stop with it, its
checks come before any run, and nothing it writes or prints holds a secret.

Every sweep runs in a real subprocess; the processes a sweep starts are
found by their command lines (Linux /proc), and any left over is killed.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import DOCS, PURE_REQUESTED, TINY, HTTPTestServer, logged_losses, microgpt_cli, ok
from conftest import assert_one_line_error as refused

from microgpt import checkpoint
from microgpt.errors import UsageError
from microgpt.limits import Limits
from microgpt.settings import flag_of
from microgpt.sweep import folder as sweep_folder
from microgpt.sweep import plan, record

# A run that is still training a few seconds after it starts.
LONG = 400 if PURE_REQUESTED else 8000
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds processes in /proc")
# Runs long enough (a few seconds) for a kill or a look at /proc to find them mid-way.
CHAOS_STEPS = 100 if PURE_REQUESTED else 1500


def results(folder: Path) -> list[dict[str, str]]:
    with open(folder / "results.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def sweep(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return microgpt_cli("sweep", *args, cwd=cwd)


def start(*args: object) -> subprocess.Popen[str]:
    """A sweep in the background (stdout and stderr to pipes)."""
    command = [sys.executable, "-m", "microgpt", "sweep", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def processes_of(folder: Path) -> set[int]:
    """The processes whose command line names `folder` (a sweep and its runs)."""
    return set(command_lines_of(folder))


def command_lines_of(folder: Path) -> dict[int, bytes]:
    """The command lines that name `folder`, by process id (zombies left out)."""
    found = {}
    needle = str(folder).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except OSError:
            continue
        if needle in cmdline and not zombie:
            found[int(entry)] = cmdline
    return found


def wait_gone(folder: Path, seconds: float = 60) -> set[int]:
    """Wait for every process of `folder` to end; those still there after `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := processes_of(folder)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def cleanup() -> Iterator[list[Path]]:
    """Folders whose processes are killed at the end of the test, whatever happened."""
    folders: list[Path] = []
    yield folders
    for folder in folders:
        for pid in processes_of(folder):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def wait_for(predicate: object, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.02)
    assert predicate(), "timed out"  # type: ignore[operator]


def logged_steps(log: Path) -> int:
    try:
        return log.read_text(encoding="utf-8").count('"loss"')
    except OSError:
        return 0


# --- the folder is the sweep's ------------------------------------------------------------


def test_a_folder_that_is_not_a_sweeps_is_refused_and_left_as_it_was(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.csv").write_text("my own results\n", encoding="utf-8")
    (out / "loss.png").write_bytes(b"\x89PNG\r\n\x1a\nmine")
    command = ["--grid", "lr=0.01", "--data", data, *TINY, "--steps", 3, "--samples", 0]
    refused(sweep(*command, "--out", out), "not empty", "holds no sweep")
    assert (out / "results.csv").read_text(encoding="utf-8") == "my own results\n"
    assert (out / "loss.png").read_bytes() == b"\x89PNG\r\n\x1a\nmine"
    assert sorted(os.listdir(out)) == ["loss.png", "results.csv"]

    # a folder named like a run, holding someone's log
    other = tmp_path / "other"
    (other / "lr=0.01").mkdir(parents=True)
    (other / "lr=0.01" / "log.jsonl").write_text('{"step": 1, "loss": 9.0}\n', encoding="utf-8")
    refused(sweep(*command, "--out", other), "holds no sweep")
    assert logged_losses(other / "lr=0.01" / "log.jsonl") == [9.0]


def test_a_sweep_of_another_grid_is_refused_and_the_same_grid_continues(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    common = ["--data", data, *TINY, "--steps", 3, "--samples", 0, "--out", out]
    ok(sweep("--grid", "lr=0.01,0.02", *common))
    refused(sweep("--grid", "lr=0.01,0.03", *common), "another grid", "lr=0.01,0.02")
    again = ok(sweep("--grid", "lr=0.01,0.02", *common))
    assert "2 finished before, 0 to resume, 0 to start" in again.stderr
    assert json.loads((out / "sweep.json").read_text(encoding="utf-8"))["grid"] == {
        "lr": ["0.01", "0.02"]
    }


@pytest.mark.posix_only("symbolic links")
def test_nothing_in_the_folder_is_followed_through_a_link(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    command = ["--grid", "lr=0.01,0.02", "--data", data, *TINY, "--steps", 3, "--samples", 0,
               "--out", out]  # fmt: skip
    ok(sweep(*command))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    # the fixed temporary name of results.csv, pointing outside the sweep
    (out / ".results.csv.tmp").symlink_to(victim)
    ok(sweep(*command))
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert [row["run"] for row in results(out)] == ["lr=0.01", "lr=0.02"]

    # results.csv itself a link to a file outside
    (out / "results.csv").unlink()
    (out / "results.csv").symlink_to(victim)
    refused(sweep(*command), "results.csv", "symbolic link")
    assert victim.read_text(encoding="utf-8") == "precious\n"
    (out / "results.csv").unlink()

    # a run folder that is a link to a folder elsewhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in os.listdir(out / "lr=0.02"):
        os.unlink(out / "lr=0.02" / name)
    os.rmdir(out / "lr=0.02")
    (out / "lr=0.02").symlink_to(elsewhere, target_is_directory=True)
    refused(sweep(*command), "lr=0.02", "symbolic link")
    assert os.listdir(elsewhere) == []

    # a run's file that is a link
    (out / "lr=0.02").unlink()
    os.unlink(out / "lr=0.01" / "samples.txt")
    (out / "lr=0.01" / "samples.txt").symlink_to(victim)
    refused(sweep(*command), "samples.txt", "symbolic link")
    assert victim.read_text(encoding="utf-8") == "precious\n"

    # a file the sweep did not make, in a run folder
    (out / "lr=0.01" / "samples.txt").unlink()
    (out / "lr=0.01" / "notes.txt").write_text("mine\n", encoding="utf-8")
    refused(sweep(*command), "notes.txt", "not made by the sweep")


@pytest.mark.posix_only("SIGTERM to a child that saves")
@needs_proc
def test_one_sweep_at_a_time_on_a_folder(data: Path, tmp_path: Path, cleanup: list[Path]) -> None:
    out = tmp_path / "sweep"
    cleanup.append(out)
    command = ["--grid", "lr=0.01", "--data", data, *TINY, "--steps", LONG, "--samples", 0,
               "--out", out]  # fmt: skip
    first = start(*command)
    log = out / "lr=0.01" / "log.jsonl"
    wait_for(lambda: logged_steps(log) > 5 or first.poll() is not None)
    refused(sweep(*command), "another microgpt run", str(first.pid))
    assert logged_steps(log) > 5  # the second sweep deleted nothing
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, stderr
    assert wait_gone(out) == set()


# --- the runs are the sweep's children ---------------------------------------------------


def in_a_terminal(*args: object) -> tuple[subprocess.Popen[bytes], int]:
    """A sweep whose controlling terminal is a new pseudo-terminal; closing
    the returned descriptor (its master side) closes the terminal."""
    # POSIX only: imported here, so that the module collects on Windows
    import fcntl
    import pty
    import termios

    master, child_side = pty.openpty()

    def take_terminal() -> None:  # in the child, after setsid
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [sys.executable, "-m", "microgpt", "sweep", *map(str, args)],
        stdin=child_side, stdout=child_side, stderr=child_side,
        start_new_session=True, preexec_fn=take_terminal,
    )  # fmt: skip
    os.close(child_side)
    return process, master


@pytest.mark.posix_only("SIGKILL, SIGHUP, pseudo-terminals")
@needs_proc
@pytest.mark.parametrize("how", ["SIGKILL", "SIGHUP", "terminal closed"])
def test_a_killed_or_hung_up_sweep_stops_its_runs_and_they_save(
    how: str, data: Path, tmp_path: Path, cleanup: list[Path]
) -> None:
    out = tmp_path / "sweep"
    cleanup.append(out)
    command = ["--grid", "lr=0.01,0.02", "--data", data, *TINY, "--steps", LONG,
               "--samples", 0, "--save-every", 100000, "--out", out, "--workers", 2]  # fmt: skip
    if how == "terminal closed":
        first, terminal = in_a_terminal(*command)
    else:
        first = start(*command)  # type: ignore[assignment]
    logs = [out / "lr=0.01" / "log.jsonl", out / "lr=0.02" / "log.jsonl"]
    wait_for(lambda: all(logged_steps(log) > 5 for log in logs) or first.poll() is not None)
    if how == "terminal closed":
        os.close(terminal)
    elif how == "SIGHUP":
        assert first.stderr is not None
        first.stderr.close()  # as a closed terminal: stderr is gone too
        first.send_signal(signal.SIGHUP)
    else:
        first.send_signal(signal.SIGKILL)
    first.wait(timeout=120)
    assert wait_gone(out) == set()  # no run goes on training
    for log in logs:
        saved = checkpoint.load(log.with_name("checkpoint.json")).step
        assert 5 < saved < LONG  # stopped, and saved where it stopped (no periodic save)
        assert logged_steps(log) >= saved
    if how != "SIGKILL":
        assert [row["run"] for row in results(out)] == []  # unfinished runs are never listed
    if how == "SIGHUP":
        assert first.returncode == 128 + signal.SIGHUP


@pytest.mark.posix_only("fcntl locks, SIGKILL")
def test_a_run_still_saving_from_a_killed_sweep_is_waited_for(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    command = ["--grid", "lr=0.01", "--data", data, *TINY, "--steps", 5, "--samples", 0,
               "--out", out]  # fmt: skip
    ok(sweep(*command, "--max-runs", 1))  # the grid cap is not part of the sweep's identity
    (out / "lr=0.01" / "checkpoint.json").unlink()  # as if killed before its first save
    # a process that still holds the run's checkpoint, as train does while it saves
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; "
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(2)",
         str(out / "lr=0.01" / ".checkpoint.json.lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    again = ok(sweep(*command))
    holder.wait(timeout=60)
    assert "waiting for 1 run(s) of an earlier sweep" in again.stderr
    assert "1 to start" in again.stderr and [row["run"] for row in results(out)] == ["lr=0.01"]


def test_runs_start_the_installed_package_not_a_file_of_the_current_folder(
    data: Path, tmp_path: Path
) -> None:
    # The original single-file microgpt is named exactly this.
    work = tmp_path / "work"
    work.mkdir()
    hijacked = tmp_path / "hijacked"
    (work / "microgpt.py").write_text(
        f"open({str(hijacked)!r}, 'w').close()\n", encoding="utf-8"
    )  # fmt: skip
    code = "import sys; del sys.path[0]; from microgpt.cli import main; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", code, "sweep", "--grid", "lr=0.01,0.02", "--data", str(data),
         *TINY, "--steps", "3", "--samples", "0", "--out", "sweep"],
        capture_output=True, text=True, timeout=300, cwd=work,
    )  # fmt: skip
    ok(result)
    assert not hijacked.exists()
    assert [row["run"] for row in results(work / "sweep")] == ["lr=0.01", "lr=0.02"]


# --- checked before the first run ---------------------------------------------------------


def test_bad_data_is_found_before_any_folder_is_made(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    refused(sweep("--grid", "lr=0.01", "--data", tmp_path / "missing.txt", "--out", out),
            "missing.txt", "not found")  # fmt: skip
    assert not out.exists()
    (tmp_path / "a.txt").write_text("ann\n", encoding="utf-8")
    refused(sweep("--grid", f"data={tmp_path / 'a.txt'},{tmp_path / 'b.txt'}", "--out", out),
            "b.txt", "not found")  # fmt: skip
    assert not out.exists()


@pytest.mark.skipif(PURE_REQUESTED, reason="no training: once is enough (the wait is 10 s)")
def test_an_unreachable_scheduler_is_found_before_any_folder_is_made(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    out = tmp_path / "sweep"
    refused(sweep("--grid", "lr=0.01", "--out", out, "--dask", "tcp://127.0.0.1:9"),
            "cannot reach the scheduler")  # fmt: skip
    assert not out.exists()


def test_a_grid_has_a_size_limit(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    refused(sweep("--grid", "seed=1,2,3", "--grid", "lr=0.1,0.2", "--max-runs", 5, "--out", out),
            "6 runs (3 x 2)", "limit of 5")  # fmt: skip
    seeds = ",".join(str(i) for i in range(1001))
    refused(sweep("--grid", f"seed={seeds}", "--out", out), "1,001 runs", "--max-runs")
    assert not out.exists()


def test_values_that_begin_with_a_dash_reach_train(tmp_path: Path) -> None:
    data = tmp_path / "names.txt"
    data.write_text("-ann\n-bo\nann-bo\n", encoding="utf-8")
    out = tmp_path / "sweep"
    result = ok(sweep("--grid", "prompt=-a,-b", "--data", data, *TINY, "--steps", 3,
                      "--samples", 2, "--out", out))  # fmt: skip
    assert result.stderr.count(": done in ") == 2
    for run, prompt in (("prompt=-a", "-a"), ("prompt=-b", "-b")):
        samples = (out / run / "samples.txt").read_text(encoding="utf-8").splitlines()
        assert len(samples) == 2 and all(s.startswith(prompt) for s in samples)


def test_run_names_never_collide() -> None:
    assert plan.run_name({"n-embd": "8", "lr": "0.01"}) == "n-embd=8_lr=0.01"
    # names that differ only in case are one file on some filesystems
    upper, lower = plan.run_name({"lr": "1E-3"}), plan.run_name({"lr": "1e-3"})
    assert upper.lower() != lower.lower()
    # a replaced character never makes the name of another value
    assert plan.run_name({"data": "a/b"}) != plan.run_name({"data": "a-b"})
    assert "~" in plan.run_name({"data": "a/b"}) and "~" not in plan.run_name({"data": "a-b"})
    assert len(plan.run_name({"prompt": "x" * 500}).encode()) < 200


def test_values_that_are_one_run_are_refused(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    refused(sweep("--grid", "lr=0.01,0.010", "--data", data, "--out", out), "listed twice")
    assert not out.exists()


def test_no_secret_is_written_or_printed(server: HTTPTestServer, tmp_path: Path) -> None:
    server.files["a.txt"] = "\n".join(DOCS).encode()
    server.files["b.txt"] = "\n".join(reversed(DOCS)).encode()
    secret = "hunter2secret"
    base = server.base.replace("http://", f"http://ann:{secret}@")
    out = tmp_path / "sweep"
    result = ok(sweep("--grid", f"data={base}/a.txt?v=1,{base}/b.txt", "--grid", "lr=0.01,0.02",
                      *TINY, "--steps", 3, "--samples", 1, "--out", out))  # fmt: skip
    assert len(results(out)) == 4
    assert secret not in result.stdout + result.stderr
    for root, dirs, files in os.walk(out):
        for name in dirs + files:
            assert secret not in name
            path = Path(root) / name
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    assert "***@" in (out / "results.csv").read_text(encoding="utf-8")


@needs_proc
def test_no_secret_is_on_a_runs_command_line(server: HTTPTestServer, tmp_path: Path) -> None:
    # Any user of the machine can read a process's command line (ps).
    server.files["a.txt"] = "\n".join(DOCS).encode()
    secret = "hunter2secret"
    url = server.base.replace("http://", f"http://ann:{secret}@") + "/a.txt"
    out = tmp_path / "sweep"
    running = start("--grid", "lr=0.01,0.02", "--data", url, *TINY, "--steps", CHAOS_STEPS,
                    "--samples", 0, "--out", out, "--workers", 2)  # fmt: skip
    runs_seen = set()
    while running.poll() is None:
        for pid, line in command_lines_of(out).items():
            if b"microgpt.sweep.child" in line:
                runs_seen.add(pid)
                assert secret.encode() not in line
        time.sleep(0.005)
    assert running.wait() == 0, running.communicate()[1]
    assert len(runs_seen) == 2 and len(results(out)) == 2  # each run was looked at


def test_non_ascii_values_under_the_c_locale(tmp_path: Path) -> None:
    data = tmp_path / "nämen.txt"
    data.write_text("zoé\nbéa\nanna\n", encoding="utf-8")
    out = tmp_path / "sweep"
    data2 = tmp_path / "ändere.txt"
    data2.write_bytes(data.read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "microgpt", "sweep", "--grid", f"data={data},{data2}",
         "--grid", "prompt=é,a", *TINY, "--steps", "3", "--samples", "1", "--out", str(out)],
        capture_output=True, timeout=300, env={**os.environ, "LC_ALL": "C", "LANG": "C"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = results(out)
    assert len(rows) == 4 and {row["prompt"] for row in rows} == {"é", "a"}
    assert all(name.isascii() for name in os.listdir(out))


# --- results -----------------------------------------------------------------------------


def test_a_run_redone_by_hand_is_not_reported_with_stale_results(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    command = ["--grid", "lr=0.01", "--data", data, *TINY, "--steps", 10, "--samples", 0,
               "--out", out]  # fmt: skip
    ok(sweep(*command))
    run = out / "lr=0.01"
    before = results(out)[0]["final_loss"]
    # train the run again by hand with another rate, without its log
    ok(microgpt_cli("train", "--data", data, *TINY, "--steps", 10, "--samples", 0,
                    "--lr", 0.05, "--out", run / "checkpoint.json"))  # fmt: skip
    again = sweep(*command)
    assert again.returncode == 1, again.stderr
    assert "lr=0.01 is not listed" in again.stderr and "other settings" in again.stderr
    assert results(out) == []  # the old losses are not shown for the new checkpoint
    assert before  # they were listed before


def test_the_table_says_what_it_ranks_by(data: Path, tmp_path: Path) -> None:
    common = ["--grid", "lr=0.01,0.02", "--data", data, *TINY, "--steps", 10, "--samples", 0]
    noisy = ok(sweep(*common, "--out", tmp_path / "a"))
    assert "runs sorted by mean_loss" in noisy.stdout and "--val-fraction" in noisy.stdout
    held_out = ok(sweep(*common, "--val-fraction", 0.2, "--out", tmp_path / "b"))
    assert "runs sorted by val_loss" in held_out.stdout
    assert "--val-fraction" not in held_out.stdout


def test_checkpoints_are_read_with_the_sweeps_limits(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    ok(sweep("--grid", "lr=0.01", "--data", data, *TINY, "--steps", 3, "--samples", 0,
             "--out", out))  # fmt: skip
    spec = plan.plan({"lr": ["0.01"]}, [], out)[0]
    assert record.progress(spec, Limits()) == (3, 3)
    with pytest.raises(UsageError, match="max_checkpoint_size SIZE reads more") as info:
        record.progress(spec, Limits(max_checkpoint_size=100))
    assert "--max-checkpoint-size SIZE reads more" in info.value.worded(flag_of)


# --- killed at random moments ------------------------------------------------------------


def kill_once_a_run_trains(sweep: subprocess.Popen[str], out: Path) -> int:
    """SIGTERM `sweep` as soon as one of its runs has logged a training step;
    how many runs it left stopped mid-way."""
    deadline = time.monotonic() + 60
    while sweep.poll() is None and time.monotonic() < deadline:
        if any('"loss"' in log.read_text(encoding="utf-8") for log in out.glob("*/log.jsonl")):
            break
        time.sleep(0.005)
    sweep.send_signal(signal.SIGTERM)
    sweep.communicate(timeout=120)
    assert wait_gone(out) == set()
    ckpts = out.glob("*/checkpoint.json")
    return sum(0 < checkpoint.load(c).step < CHAOS_STEPS for c in ckpts)


@pytest.mark.posix_only("SIGKILL and SIGHUP")
@needs_proc
def test_a_sweep_killed_at_random_moments_ends_exactly_as_an_uninterrupted_one(
    data: Path, tmp_path: Path, cleanup: list[Path]
) -> None:
    def command(out: Path) -> list[object]:
        return ["--grid", "lr=0.01,0.02", "--grid", "seed=1,2", "--data", data, *TINY,
                "--steps", CHAOS_STEPS, "--save-every", 37, "--samples", 0, "--out", out,
                "--workers", 2]  # fmt: skip

    calm = tmp_path / "calm"
    ok(sweep(*command(calm)))
    out = tmp_path / "chaos"
    cleanup.append(out)
    # One kill is timed to land mid-run, so resuming is always tested whatever
    # the machine's load; the random ones after it may land anywhere.
    assert kill_once_a_run_trains(start(*command(out)), out) > 0
    rng = random.Random(16)
    for signum in [signal.SIGKILL, signal.SIGHUP, signal.SIGTERM] * 2:
        first = start(*command(out))
        time.sleep(rng.uniform(0.2, 2.5))
        first.send_signal(signum)
        first.communicate(timeout=120)
        assert wait_gone(out) == set(), f"runs left after {signal.Signals(signum).name}"
    ok(sweep(*command(out)))
    assert wait_gone(out) == set()
    rows, expected = results(out), results(calm)
    assert [row["run"] for row in rows] == [row["run"] for row in expected]  # each once
    for row, calm_row in zip(rows, expected):
        for key in ("final_loss", "mean_loss"):
            assert row[key] == calm_row[key]  # repr of the float64: bit for bit
        run = row["run"]
        assert logged_losses(out / run / "log.jsonl") == logged_losses(calm / run / "log.jsonl")


def test_a_run_record_reads_back_and_a_foreign_one_is_refused(tmp_path: Path) -> None:
    result = record.RunResult(7, "c" * 64, "l" * 64, 2.5, 2.75, None)
    made = record.RunRecord(("--steps=7",), 1.5, ("host:1",), result)
    record.write(tmp_path, made)
    assert record.read(tmp_path) == made
    assert record.read(tmp_path / "nothing") is None
    head = '{"format": "microgpt-sweep-run", "version": 1'
    foreign = ['{"step": 1}', "[]", "not json", head + "}",
               head + ', "train_flags": [1], "seconds": 0, "ran_on": []}',
               head + ', "train_flags": [], "seconds": NaN, "ran_on": []}']  # fmt: skip
    for text in foreign:
        (tmp_path / "run.json").write_text(text, encoding="utf-8")
        with pytest.raises(UsageError, match="not a sweep's run record"):
            record.read(tmp_path)


def test_a_python_caller_reads_settings_and_the_command_line_flags(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("mine", encoding="utf-8")
    with ExitStack() as stack, pytest.raises(UsageError) as info:
        sweep_folder.claim(str(not_a_folder), {"lr": ["0.01"]}, [], stack)
    assert str(info.value).startswith("sweep folder ") and "--" not in str(info.value)
    assert info.value.worded(flag_of).startswith("--out ")
    with pytest.raises(UsageError) as info:
        plan.check_distinct("lr", ["0.01", "0.01"])
    assert str(info.value) == "grid lr: the value 0.01 is listed twice"
    assert info.value.worded(flag_of) == "--grid lr: the value 0.01 is listed twice"


def test_a_run_whose_sweep_died_before_handing_over_its_flags_ends_in_one_line(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-m", "microgpt.sweep.child", str(os.getpid()), tmp_path / ".stop"]
    for given in ["", "not json", '["--steps", 1]']:
        ended = subprocess.run(command, input=given, capture_output=True, text=True, timeout=60)
        assert ended.returncode == 2 and ended.stdout == ""
        assert ended.stderr == (
            "microgpt sweep run: no train arguments on standard input (a JSON list of strings)\n"
        )
