"""`microgpt sweep`: every combination of a grid, each run exactly a
`microgpt train` run, resumable, on this machine or a Dask cluster.

Every sweep runs in a real subprocess, as a user runs it, with the engine
this test run uses; the Dask test starts a real scheduler and two workers.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PURE_REQUESTED, TINY, microgpt_cli, ok
from conftest import assert_one_line_error as refused

from microgpt import checkpoint, sweep


def losses(log: Path) -> list[float]:
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def results(folder: Path) -> list[dict[str, str]]:
    with open(folder / "results.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def direct_train(data: Path, folder: Path, *flags: object) -> tuple[list[float], str]:
    """The losses and samples of the same run made by `microgpt train`."""
    log = folder / "direct.jsonl"
    result = ok(microgpt_cli("train", "--data", data, *TINY, *flags, "--log", log))
    return losses(log), result.stdout


def test_every_run_is_exactly_the_train_run_with_its_settings(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = ok(
        microgpt_cli("sweep", "--grid", "lr=0.01,0.02", "--grid", "seed=42,7", "--data", data,
                     *TINY, "--steps", 20, "--samples", 3, "--out", out, "--workers", 2)
    )  # fmt: skip
    runs = ["lr=0.01_seed=42", "lr=0.01_seed=7", "lr=0.02_seed=42", "lr=0.02_seed=7"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == runs
    assert result.stderr.count(": done in ") == 4  # a progress line per finished run

    expected, samples = direct_train(data, tmp_path, "--steps", 20, "--samples", 3,
                                     "--lr", "0.02", "--seed", 7)  # fmt: skip
    run = out / "lr=0.02_seed=7"
    assert losses(run / "log.jsonl") == expected  # bit for bit: floats compared exactly
    assert (run / "samples.txt").read_text(encoding="utf-8") == samples
    assert checkpoint.load(run / "checkpoint.json").step == 20

    rows = results(out)
    assert list(rows[0]) == ["run", "lr", "seed", "final_loss", "mean_loss", "val_loss", "seconds"]
    assert [row["run"] for row in rows] == runs
    row = rows[3]
    assert (row["lr"], row["seed"]) == ("0.02", "7")
    assert row["final_loss"] == repr(expected[-1])
    assert row["mean_loss"] == repr(sum(expected) / len(expected))  # fewer than 100 steps
    assert row["val_loss"] == ""
    assert float(row["seconds"]) > 0

    # the table on stdout is sorted by the mean loss
    table = [line for line in result.stdout.splitlines() if line.startswith("| 0.0")]
    means = [float(line.split("|")[4]) for line in table]
    assert len(means) == 4 and means == sorted(means)
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Long enough that a run is still training when it is interrupted.
STEPS = 300 if PURE_REQUESTED else 1000


@pytest.mark.posix_only("SIGINT to a child")
def test_an_interrupted_sweep_resumes_where_it_stopped(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    command = ["sweep", "--grid", "lr=0.01,0.02", "--data", data, *TINY, "--steps", STEPS,
               "--samples", 2, "--save-every", 50, "--out", out, "--workers", 1]  # fmt: skip
    first = subprocess.Popen(
        [sys.executable, "-m", "microgpt", *map(str, command)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ckpt = out / "lr=0.01" / "checkpoint.json"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.02)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr
    assert "stopped, saved at step" in stderr and "run the same command again" in stderr
    stopped_at = checkpoint.load(ckpt).step
    assert 0 < stopped_at < STEPS
    assert not (out / "lr=0.02" / "checkpoint.json").exists()  # never started (one worker)

    second = ok(microgpt_cli(*command))
    assert "0 finished before, 1 to resume, 1 to start" in second.stderr
    train_said = (out / "lr=0.01" / "stderr.txt").read_text(encoding="utf-8")
    assert f"steps {stopped_at + 1}..{STEPS}" in train_said  # continued, not started over
    expected, samples = direct_train(data, tmp_path, "--steps", STEPS, "--samples", 2)
    assert losses(out / "lr=0.01" / "log.jsonl") == expected
    assert (out / "lr=0.01" / "samples.txt").read_text(encoding="utf-8") == samples
    assert [row["run"] for row in results(out)] == ["lr=0.01", "lr=0.02"]

    # once finished, running it again trains nothing
    third = ok(microgpt_cli(*command))
    assert "2 finished before, 0 to resume, 0 to start" in third.stderr
    assert losses(out / "lr=0.01" / "log.jsonl") == expected


def test_a_failed_run_is_reported_and_the_others_finish(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    # 8 is not divisible by 3 heads: train refuses that run
    result = microgpt_cli("sweep", "--grid", "n-head=3,2", "--n-embd", 8, "--block-size", 8,
                          "--data", data, "--steps", 5, "--samples", 0, "--out", out)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert (
        "n-head=3: failed (exit 2): microgpt: error: argument --n-embd: must be divisible by "
        "--n-head (3), got 8" in result.stderr
    )
    assert [row["run"] for row in results(out)] == ["n-head=2"]


@pytest.mark.parametrize(
    ("grid", "words"),
    [
        ("n_embd=8,16", ["n_embd", "not a flag of microgpt train", "n-embd"]),
        ("nonsense=1", ["nonsense", "not a flag"]),
        ("lr=0.01,fast", ["lr=fast", "expected a number"]),
        ("lr=0.01,,0.02", ["lr", "empty value"]),
        ("norm=rmsnorm,batchnorm", ["norm=batchnorm", "must be one of"]),
        ("out=a,b", ["--out"]),
        ("lr", ["expected KEY=V1,V2"]),
    ],
)
def test_a_bad_grid_is_one_line_and_nothing_runs(
    grid: str, words: list[str], data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    result = microgpt_cli("sweep", "--grid", grid, "--data", data, "--out", out)
    refused(result, *words)
    assert not out.exists()


def test_a_key_given_twice_is_refused(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    refused(microgpt_cli("sweep", "--grid", "lr=0.1", "--lr", 0.2, "--out", out), "--lr")
    refused(microgpt_cli("sweep", "--grid", "lr=0.1", "--grid", "lr=0.2", "--out", out), "twice")


def test_a_folder_of_another_sweep_is_left_alone(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    command = ["sweep", "--grid", "lr=0.01", "--data", data, *TINY, "--samples", 0, "--out", out]
    ok(microgpt_cli(*command, "--steps", 3))
    before = (out / "lr=0.01" / "checkpoint.json").read_bytes()
    refused(microgpt_cli(*command, "--steps", 4), "--steps=3", "other train flags")
    assert (out / "lr=0.01" / "checkpoint.json").read_bytes() == before


def test_run_names_are_safe_and_distinct() -> None:
    assert sweep.run_name({"n-embd": "8", "lr": "0.01"}) == "n-embd=8_lr=0.01"
    a = sweep.run_name({"data": "a/b.txt"})
    b = sweep.run_name({"data": "a_b.txt"})
    assert a != b and "/" not in a and "/" not in b
    assert len(sweep.run_name({"prompt": "x" * 500})) < 200


# --- Dask ----------------------------------------------------------------------------


def _start(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A Dask scheduler and two workers on 127.0.0.1, as separate processes."""
    if not os.environ.get("CI"):  # CI installs the dask extra: there its absence fails
        pytest.importorskip("distributed")
    folder = tmp_path_factory.mktemp("dask")
    info = folder / "scheduler.json"
    scheduler = _start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                       "--no-dashboard", "--scheduler-file", str(info),
                       log=folder / "scheduler.log")  # fmt: skip
    processes = [scheduler]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(info.read_text(encoding="utf-8"))["address"]
        for i in range(2):
            processes.append(
                _start(
                    "distributed.cli.dask_worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    log=folder / f"worker{i}.log",
                )  # fmt: skip
            )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield {"address": address, "worker_pids": {p.pid for p in processes[1:]}}
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


def test_a_sweep_on_a_dask_cluster_gives_the_same_runs(
    dask_cluster: dict[str, object], data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    result = ok(
        microgpt_cli("sweep", "--grid", "lr=0.01,0.02", "--grid", "n-embd=8,16", "--data", data,
                     "--n-head", 2, "--block-size", 8, "--steps", 20, "--samples", 2,
                     "--out", out, "--dask", dask_cluster["address"], cwd=tmp_path)
    )  # fmt: skip
    assert "on the Dask cluster" in result.stderr and "(2 workers)" in result.stderr
    rows = results(out)
    assert len(rows) == 4
    ran_on = set()
    for row in rows:
        record = json.loads((out / row["run"] / "run.json").read_text(encoding="utf-8"))
        ran_on |= {int(where.rsplit(":", 1)[1]) for where in record["ran_on"]}
    assert ran_on <= dask_cluster["worker_pids"]  # type: ignore[operator]

    expected, samples = direct_train(data, tmp_path, "--steps", 20, "--samples", 2,
                                     "--lr", "0.02", "--n-embd", 16)  # fmt: skip
    run = out / "lr=0.02_n-embd=16"
    assert losses(run / "log.jsonl") == expected
    assert (run / "samples.txt").read_text(encoding="utf-8") == samples


def test_without_dask_the_error_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from microgpt.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "sweep", "--grid", "lr=0.01", "--out", "s", "--dask", "x:1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ},
    )
    refused(result, 'pip install "microgpt-exact[dask]"')
