"""What happens when things go wrong: bad input, a diverging loss, Ctrl-C, a
killed process. Bad input is one line and exit status 2, before anything is
trained or written; an interrupted or crashed run resumes bit for bit."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DOCS,
    PURE_REQUESTED,
    TINY,
    assert_one_line_error,
    lines_of,
    microgpt_cli,
)

from microgpt import checkpoint


def start_cli(*args: object, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "microgpt", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def wait_for_progress(lines: queue.Queue[str], at_least: int, seen: list[str]) -> int:
    """Read stderr lines until a progress line reports step >= `at_least`."""
    while True:
        line = lines.get(timeout=120)
        assert line, "the run ended before reaching the expected step:\n" + "".join(seen)
        seen.append(line)
        match = re.match(r"step +(\d+)/", line)
        if match and int(match.group(1)) >= at_least:
            return int(match.group(1))


def drain(lines: queue.Queue[str], seen: list[str]) -> str:
    while (line := lines.get(timeout=120)) != "":
        seen.append(line)
    return "".join(seen)


def final_state(path: Path) -> dict[str, Any]:
    """Everything in a checkpoint that the training computed."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {key: raw[key] for key in ("step", "weights", "adam", "rng_state", "vocab")}


# --- bad input ---------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A folder with a good data file, a checkpoint and a log that no failing
    command may change, and some bad inputs."""
    folder = tmp_path_factory.mktemp("workspace")
    data = folder / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    ckpt, log = folder / "existing.json", folder / "existing.jsonl"
    made = microgpt_cli(
        "train", "--data", data, "--steps", 3, *TINY, "--samples", 0, "--out", ckpt, "--log", log
    )
    assert made.returncode == 0, made.stderr
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.txt").write_bytes(b"\n   \n\t\r\n\n")
    (folder / "latin1.txt").write_bytes("anna\nzoë\n".encode("latin-1"))
    (folder / "other.txt").write_text("xavier\nyves\n", encoding="utf-8")
    (folder / "afile").write_text("a regular file\n", encoding="utf-8")
    # A TCP port that is bound but not listening refuses connections at once.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    (folder / "port").write_text(str(closed.getsockname()[1]), encoding="utf-8")
    yield {"dir": folder, "data": data, "ckpt": ckpt, "log": log}
    closed.close()


TRAIN_CASES: dict[str, tuple[Callable[[Path], list[object]], list[str]]] = {
    "missing data file": (
        lambda w: ["--data", w / "nope.txt"],
        ["data file not found:", "nope.txt"],
    ),
    "directory as data": (lambda w: ["--data", w], ["is a directory", "workspace"]),
    "empty data file": (lambda w: ["--data", w / "empty.txt"], ["empty.txt: no documents"]),
    "only blank lines": (lambda w: ["--data", w / "blank.txt"], ["blank.txt: no documents"]),
    "not UTF-8": (
        lambda w: ["--data", w / "latin1.txt"],
        ["latin1.txt: line 2, byte 3: not valid UTF-8 (byte 0xeb)"],
    ),
    "URL that cannot be fetched": (
        lambda w: ["--data", f"http://127.0.0.1:{(w / 'port').read_text()}/x.txt"],
        ["cannot download http://127.0.0.1:", "/x.txt"],
    ),
    "heads do not divide the width": (
        lambda w: ["--n-embd", 10, "--n-head", 3],
        ["argument --n-embd: must be divisible by --n-head (3), got 10"],
    ),
    "zero steps": (
        lambda w: ["--steps", 0],
        ["argument --steps: must be at least 1 and at most 1,000,000,000,000, got 0"],
    ),
    "negative steps": (lambda w: ["--steps", -5], ["argument --steps: must be at least 1"]),
    "steps not a number": (
        lambda w: ["--steps", "abc"],
        ["argument --steps: expected a whole number, got 'abc'"],
    ),
    "zero layers": (lambda w: ["--n-layer", 0], ["argument --n-layer: must be at least 1"]),
    "zero width": (lambda w: ["--n-embd", 0], ["argument --n-embd: must be at least 1"]),
    "zero heads": (lambda w: ["--n-head", 0], ["argument --n-head: must be at least 1"]),
    "negative block size": (
        lambda w: ["--block-size", -1],
        ["argument --block-size: must be at least 1"],
    ),
    "zero learning rate": (lambda w: ["--lr", 0], ["argument --lr: must be positive, got 0"]),
    "negative learning rate": (lambda w: ["--lr", -0.1], ["argument --lr: must be positive"]),
    "NaN learning rate": (lambda w: ["--lr", "nan"], ["argument --lr: must be a finite number"]),
    "temperature between greedy (0) and the least": (
        lambda w: ["--temperature", "1e-7"],
        ["argument --temperature: must be 0 or at least 1e-06, got 1e-07"],
    ),
    "negative temperature": (
        lambda w: ["--temperature", -1],
        ["argument --temperature: must be 0 or at least 1e-06, got -1"],
    ),
    "temperature so small that logits / temperature overflow": (
        lambda w: ["--temperature", "1e-310"],
        ["argument --temperature: must be 0 or at least 1e-06"],
    ),
    "steps beyond any lifetime": (
        lambda w: ["--steps", 10**13],
        ["argument --steps: must be at least 1 and at most"],
    ),
    "steps with more digits than Python converts": (
        lambda w: ["--steps", "9" * 5000],
        ["argument --steps: expected a whole number, got '999", "[...]"],
    ),
    "negative samples": (lambda w: ["--samples", -1], ["argument --samples: must be 0 or more"]),
    "zero save interval": (
        lambda w: ["--save-every", 0],
        ["argument --save-every: must be at least 1"],
    ),
    "dropout of one": (lambda w: ["--dropout", 1], ["argument --dropout: must be at least 0"]),
    "unknown norm": (
        lambda w: ["--norm", "batchnorm"],
        ["argument --norm: must be one of rmsnorm, layernorm, got 'batchnorm'"],
    ),
    "prompt outside the vocabulary": (
        lambda w: ["--prompt", "aZ"],
        ["prompt 'aZ': character 'Z' (position 2) never occurs in the training data"],
    ),
    "prompt longer than the context": (
        lambda w: ["--prompt", "annaanna"],
        ["prompt 'annaanna' has 8 characters but at most 7 fit (block_size 8"],
    ),
    "output in a missing folder": (
        lambda w: ["--out", w / "nofolder" / "c.json"],
        ["--out", "folder", "nofolder", "does not exist"],
    ),
    "output under a regular file": (
        lambda w: ["--out", w / "afile" / "c.json"],
        ["--out", "afile is a file, not a folder"],
    ),
    "output is a folder": (lambda w: ["--out", w], ["--out", "is a directory"]),
    "output over the data file": (
        lambda w: ["--out", w / "names.txt"],
        ["names.txt exists and is not a microgpt checkpoint; refusing to overwrite it"],
    ),
    "log over the data file": (
        lambda w: ["--log", w / "names.txt"],
        ["names.txt is the same file as", "give the log its own file"],
    ),
    "log over the checkpoint": (
        lambda w: ["--log", w / "existing.json"],
        ["existing.json is the same file as"],
    ),
    "log under a regular file": (
        lambda w: ["--log", w / "afile" / "log.jsonl"],
        ["--log", "afile is a file, not a folder"],
    ),
    "log in a missing folder": (
        lambda w: ["--log", w / "nofolder" / "log.jsonl"],
        ["--log", "nofolder does not exist"],
    ),
    "resume a missing checkpoint": (
        lambda w: ["--resume", w / "nope.json"],
        ["checkpoint not found:", "nope.json"],
    ),
    "resume with a wider model": (
        lambda w: ["--resume", w / "existing.json", "--n-embd", 32],
        ["--n-embd 32 contradicts the checkpoint (--n-embd 8)"],
    ),
    "resume with fewer steps": (
        lambda w: ["--resume", w / "existing.json", "--steps", 2],
        ["argument --steps: can only be raised on resuming: the run has 3 steps (3 done), got 2"],
    ),
    "resume with another learning rate": (
        lambda w: ["--resume", w / "existing.json", "--lr", 0.5],
        ["--lr 0.5 contradicts the checkpoint"],
    ),
    "resume with other data": (
        lambda w: ["--resume", w / "existing.json", "--data", w / "other.txt"],
        ["other.txt) is not the data this run was trained on; pass the original with --data"],
    ),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_bad_train_input_is_one_line_and_changes_nothing(
    workspace: dict[str, Path], case: str, tmp_path: Path
) -> None:
    make_args, fragments = TRAIN_CASES[case]
    ckpt, log, data = workspace["ckpt"], workspace["log"], workspace["data"]
    before = ckpt.read_bytes(), log.read_bytes(), data.read_bytes()
    # The case's own flags come last, so they win over these defaults.
    args = ["--data", workspace["data"], "--steps", 3, *TINY, "--out", ckpt, "--log", log]
    env = {**os.environ, "MICROGPT_CACHE": str(tmp_path / "cache")}
    result = microgpt_cli("train", *args, *make_args(workspace["dir"]), env=env)
    assert_one_line_error(result, *fragments)
    assert (ckpt.read_bytes(), log.read_bytes(), data.read_bytes()) == before
    assert not (tmp_path / "cache").exists()  # nothing was downloaded or cached


SAMPLE_CASES: dict[str, tuple[Callable[[Path], list[object]], list[str]]] = {
    "missing checkpoint": (lambda w: [w / "nope.json"], ["checkpoint not found:", "nope.json"]),
    "data file as checkpoint": (
        lambda w: [w / "names.txt"],
        ["names.txt: not a valid checkpoint (not JSON: Expecting value at line 1, column 1)"],
    ),
    "prompt outside the vocabulary": (
        lambda w: [w / "existing.json", "--prompt", "Q"],
        ["prompt 'Q': character 'Q' (position 1) never occurs in the training data"],
    ),
    "prompt longer than the context": (
        lambda w: [w / "existing.json", "--prompt", "annaboba"],
        ["prompt 'annaboba' has 8 characters but at most 7 fit"],
    ),
    "negative temperature": (
        lambda w: [w / "existing.json", "--temperature", -0.5],
        ["argument --temperature: must be 0 or at least 1e-06, got -0.5"],
    ),
    "negative number of names": (
        lambda w: [w / "existing.json", "--num", -2],
        ["argument --num: must be 0 or more"],
    ),
    "seed not a number": (
        lambda w: [w / "existing.json", "--seed", "x"],
        ["argument --seed: expected a whole number, got 'x'"],
    ),
}


@pytest.mark.parametrize("case", list(SAMPLE_CASES))
def test_bad_sample_input_is_one_line(workspace: dict[str, Path], case: str) -> None:
    make_args, fragments = SAMPLE_CASES[case]
    before = workspace["ckpt"].read_bytes()
    assert_one_line_error(microgpt_cli("sample", *make_args(workspace["dir"])), *fragments)
    assert workspace["ckpt"].read_bytes() == before


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--steps", "abc"], "microgpt train: error: argument --steps"),
        (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        ([], "microgpt: error: the following arguments are required: COMMAND"),
        (["sample"], "the following arguments are required: CKPT"),
        (["fly"], "argument COMMAND: invalid choice: 'fly'"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], fragment: str) -> None:
    assert_one_line_error(microgpt_cli(*args), fragment)


# --- a loss that stops being a number -------------------------------------------


def test_diverging_loss_saves_the_last_good_step_and_exits_1(tmp_path: Path) -> None:
    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    ckpt, log = tmp_path / "ckpt.json", tmp_path / "losses.jsonl"
    # A huge learning rate throws the weights so far that a probability
    # underflows to 0 and its log, the loss, is infinite.
    result = microgpt_cli(
        "train", "--data", data, "--steps", 20, *TINY, "--lr", "1e6", "--out", ckpt, "--log", log
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no samples from a broken model
    error = result.stderr.splitlines()[-1]
    match = re.fullmatch(r"microgpt: error: the loss .* at step (\d+); training stopped.*", error)
    assert match, error
    failed_step = int(match.group(1))
    assert failed_step > 1

    saved = checkpoint.load(ckpt)  # loads: only finite numbers were saved
    assert saved.step == failed_step - 1
    assert f"saved {ckpt} at step {saved.step} (last good step)" in result.stderr
    logged = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()[1:]]
    assert [e["step"] for e in logged] == list(range(1, failed_step))


# Runs `microgpt` with a training step 3 that finds the loss NaN because the
# update of step 2 already turned a weight into NaN.
BROKEN_BEFORE_STEP_3 = """
import math, sys
from microgpt import cli
from microgpt.train import NonFiniteLoss, Run

train_step = Run.train_step

def train_step_that_diverges(run):
    if run.step == 2:
        run.model.params[0].data = math.nan
        raise NonFiniteLoss(3, math.nan)
    return train_step(run)

Run.train_step = train_step_that_diverges
sys.exit(cli.main(sys.argv[1:]))
"""


def test_broken_weights_are_never_saved_over_a_good_checkpoint(tmp_path: Path) -> None:
    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    ckpt = tmp_path / "ckpt.json"
    args = ["train", "--data", data, "--steps", 6, *TINY, "--save-every", 1, "--out", ckpt]
    result = subprocess.run(
        [sys.executable, "-c", BROKEN_BEFORE_STEP_3, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    error = result.stderr.splitlines()[-1]
    assert error.startswith("microgpt: error: the loss became nan at step 3; training stopped; ")
    assert f"--out {ckpt}: cannot save the checkpoint at step 2: the run diverged" in error
    assert "it is left as it was" in error
    assert checkpoint.load(ckpt).step == 2  # the good one from --save-every


# --- resuming a run that crashed ---------------------------------------------------

# Runs `microgpt` but dies by SIGKILL (no clean-up of any kind) just before the
# step given as the first argument.
CRASH_BEFORE_STEP = """
import os, signal, sys
from microgpt import cli
from microgpt.train import Run

crash_before = int(sys.argv[1])
train_step = Run.train_step

def train_step_or_die(run):
    if run.step + 1 == crash_before:
        os.kill(os.getpid(), signal.SIGKILL)
    return train_step(run)

Run.train_step = train_step_or_die
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.posix_only("SIGKILL")
def test_crashed_run_resumes_bit_for_bit(tmp_path: Path) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "names.txt").write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    common = ["train", "--data", "names.txt", "--steps", 7, *TINY, "--samples", 5]

    whole = microgpt_cli(*common, "--out", "whole.json", "--log", "whole.jsonl", cwd=work)
    assert whole.returncode == 0, whole.stderr

    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_BEFORE_STEP, "6"]
        + [*map(str, common), "--save-every", "2", "--out", "part.json", "--log", "part.jsonl"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=work,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert checkpoint.load(work / "part.json").step == 4
    # A log can run ahead of the last checkpoint (and end in a torn line);
    # resuming must drop what the checkpoint does not have.
    with open(work / "part.jsonl", "a", encoding="utf-8") as log:
        log.write('{"step": 5, "loss": 1.5, "lr": 0.001}\n{"step": 6, "lo')

    # From another folder, without --data: the checkpoint knows its data, and
    # without --out the resumed run saves back to the checkpoint it came from.
    resumed = microgpt_cli(
        "train", "--resume", work / "part.json", "--log", work / "part.jsonl", "--samples", 5,
        cwd=elsewhere,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "steps 5..7" in resumed.stderr
    assert resumed.stdout == whole.stdout
    assert (work / "part.jsonl").read_text() == (work / "whole.jsonl").read_text()
    assert final_state(work / "part.json") == final_state(work / "whole.json")
    assert final_state(work / "whole.json")["step"] == 7


def test_resume_without_data_names_the_missing_file(tmp_path: Path) -> None:
    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    ckpt = tmp_path / "ckpt.json"
    made = microgpt_cli("train", "--data", data, "--steps", 2, *TINY, "--out", ckpt)
    assert made.returncode == 0, made.stderr
    data.rename(tmp_path / "moved.txt")
    assert_one_line_error(
        microgpt_cli("train", "--resume", ckpt),
        f"--resume {ckpt}: cannot read the run's data (data file not found: {data})",
        "pass it with --data",
    )
    moved = microgpt_cli(
        "train", "--resume", ckpt, "--data", tmp_path / "moved.txt", "--samples", 1
    )
    assert moved.returncode == 0, moved.stderr


# --- Ctrl-C and kill -9 during training ------------------------------------------

# Long enough that the run is still going when the signal arrives (the pure
# engine is slower per step), short enough to finish quickly when resumed.
LONG_STEPS = 60 if PURE_REQUESTED else 600


@pytest.mark.posix_only("SIGINT to a child")
def test_ctrl_c_saves_and_the_resumed_run_matches_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    common = ["train", "--data", data, "--steps", LONG_STEPS, *TINY, "--samples", 4]
    ckpt, log = tmp_path / "ckpt.json", tmp_path / "losses.jsonl"

    child = start_cli(*common, "--log-every", 1, "--out", ckpt, "--log", log)
    stderr = lines_of(child.stderr)
    seen: list[str] = []
    try:
        progress = wait_for_progress(stderr, 1, seen)
        child.send_signal(signal.SIGINT)
        stdout = child.stdout.read()  # type: ignore[union-attr]
        child.wait(timeout=120)
    finally:
        child.kill()
        child.wait()
    messages = drain(stderr, seen)
    assert child.returncode == 130, messages
    assert "Traceback" not in messages
    assert stdout == ""  # no samples from an unfinished run

    stopped = checkpoint.load(ckpt).step
    assert progress <= stopped < LONG_STEPS
    assert f"saved {ckpt} at step {stopped} (interrupted)" in messages
    hint = f"interrupted after step {stopped}/{LONG_STEPS}; resume with: "
    assert hint in messages
    command = shlex.split(messages.split(hint, 1)[1].splitlines()[0])
    assert command[:4] == ["microgpt", "train", "--resume", str(ckpt)]
    assert "--log" in command and "--samples" in command

    resumed = microgpt_cli(*command[1:])
    assert resumed.returncode == 0, resumed.stderr
    whole = microgpt_cli(*common, "--out", tmp_path / "whole.json", "--log", tmp_path / "w.jsonl")
    assert whole.returncode == 0, whole.stderr
    assert resumed.stdout == whole.stdout and resumed.stdout.count("\n") == 4
    assert log.read_text() == (tmp_path / "w.jsonl").read_text()
    assert final_state(ckpt) == final_state(tmp_path / "whole.json")


@pytest.mark.posix_only("SIGINT and SIGKILL to a child")
def test_save_every_bounds_the_work_lost_to_a_kill(tmp_path: Path) -> None:
    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    ckpt, log = tmp_path / "ckpt.json", tmp_path / "losses.jsonl"
    every = 3
    child = start_cli(
        "train", "--data", data, "--steps", LONG_STEPS, *TINY, "--log-every", 1,
        "--save-every", every, "--out", ckpt, "--log", log,
    )  # fmt: skip
    stderr = lines_of(child.stderr)
    seen: list[str] = []
    try:
        progress = wait_for_progress(stderr, 2 * every + 1, seen)
        child.send_signal(signal.SIGKILL)  # no chance to save anything more
        child.wait(timeout=120)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    saved = checkpoint.load(ckpt).step
    assert saved % every == 0
    # At most `every` steps behind what the run had reported (it may have
    # done a few more steps after that report, and saved them).
    assert progress - every < saved < LONG_STEPS
    # The log already holds every step the checkpoint holds.
    logged = [json.loads(line)["step"] for line in log.read_text().splitlines()[1 : saved + 1]]
    assert logged == list(range(1, saved + 1))


@pytest.mark.posix_only("SIGINT, SIGTERM and SIGHUP to a child that saves")
@pytest.mark.parametrize(
    "name, with_out",
    # SIGHUP (the terminal closed) as SIGTERM
    [("SIGTERM", True), ("SIGINT", False), ("SIGHUP", True)],
)
def test_stop_signal_between_steps(tmp_path: Path, name: str, with_out: bool) -> None:
    signum = getattr(signal, name)
    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    ckpt = tmp_path / "ckpt.json"
    out = ["--out", ckpt] if with_out else []
    child = start_cli("train", "--data", data, "--steps", LONG_STEPS, *TINY, "--log-every", 1, *out)
    stderr = lines_of(child.stderr)
    seen: list[str] = []
    try:
        progress = wait_for_progress(stderr, 1, seen)
        child.send_signal(signum)
        child.wait(timeout=120)
    finally:
        child.kill()
        child.wait()
    messages = drain(stderr, seen)
    assert child.returncode == 128 + signum, messages
    assert "Traceback" not in messages
    if with_out:
        stopped = checkpoint.load(ckpt).step
        assert progress <= stopped < LONG_STEPS
        # The same output settings: --log-every 1 was given, so it is repeated.
        assert f"resume with: microgpt train --resume {ckpt} --log-every 1\n" in messages
    else:
        assert "; nothing saved (no --out given)" in messages
        assert sorted(p.name for p in tmp_path.iterdir()) == ["names.txt"]


@pytest.mark.posix_only("file modes (chmod), user ids")
def test_read_only_output_folder_fails_before_training(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # asked when run, never at collection (Windows has no geteuid)
        pytest.skip("root may write in a read-only folder")
    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = microgpt_cli("train", "--data", data, *TINY, "--out", locked / "c.json")
    finally:
        locked.chmod(0o700)
    assert_one_line_error(result, f"--out {locked / 'c.json'}: cannot write in {locked}")


def test_an_output_folder_that_refuses_writes_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Like a read-only folder, for any user (root may write in read-only folders).
    from microgpt import cli, files

    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files, "open_no_follow", refuse)
    out = tmp_path / "c.json"
    assert cli.main(["train", "--data", str(data), *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"microgpt: error: --out {out}: cannot write in {tmp_path}: Permission denied"
    ]
    assert not out.exists()
