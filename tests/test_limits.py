"""Sizes, numbers and the OS: a model is sized before it is built, every
accepted flag value works to the end of the run (or is refused up front), and
OS errors on the paths a user named are one line naming the option and path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from conftest import DOCS, TINY, microgpt_cli
from conftest import assert_one_line_error as one_line

from microgpt import Value, cli, limits
from microgpt.errors import MAX_MESSAGE, UsageError
from microgpt.limits import BASELINE_BYTES, NODE_BYTES, Limits, check_fits, estimated_memory
from microgpt.nn import GPTConfig
from microgpt.settings import flag_of
from microgpt.train import Run, TrainConfig

# --- sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ["--n-embd", "4096"],
        ["--n-layer", "1000000000"],
        ["--block-size", "1000000000000"],
        ["--n-embd", "65536", "--n-head", "1", "--n-layer", "99"],
    ],
)
def test_a_model_too_big_for_the_machine_is_refused_at_once(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        status = cli.main(["train", *flags, "--steps", "1"])
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert status == 2
    assert seconds < 1.0 and peak < 20_000_000  # refused before anything was built
    assert len(err.splitlines()) == 1
    assert "of memory to train, more than the" in err and "GiB" in err
    assert "(this machine's memory; --max-memory raises it)" in err


def test_max_memory_sets_the_cap(data: Path) -> None:
    line = one_line(microgpt_cli("train", "--data", data, *TINY, "--max-memory", "1M"))
    assert line.startswith("microgpt: error: the model settings: a model with n_layer 1, n_embd 8")
    assert "more than the 1.0 MiB allowed (--max-memory)" in line
    assert re.search(r"needs at least \d+\.\d MiB of memory", line)  # the estimate
    ok = microgpt_cli(
        "train", "--data", data, *TINY, "--max-memory", "1G", "--steps", 1, "--samples", 0
    )
    assert ok.returncode == 0, ok.stderr


def test_a_checkpoint_is_sized_before_its_model_is_built(data: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "c.json"
    assert microgpt_cli("train", "--data", data, *TINY, "--steps", 1, "--out", ckpt).returncode == 0
    for command in (["sample", ckpt], ["train", "--resume", ckpt]):
        line = one_line(microgpt_cli(*command, "--max-memory", "64M"))
        assert f"microgpt: error: {ckpt}: a model with n_layer 1, n_embd 8" in line
        assert re.search(
            r"needs about \d+\.\d MiB of memory to train, more than the 64.0 MiB", line
        )


@pytest.mark.parametrize(
    "shape",
    [
        {"n_embd": 16, "n_head": 4, "block_size": 16, "n_layer": 2},
        {"n_embd": 8, "n_head": 8, "block_size": 64, "n_layer": 2},  # attention-heavy
    ],
    ids=["width", "attention"],
)
def test_the_estimate_is_above_what_training_really_takes(shape: dict[str, int]) -> None:
    # Measured: the peak of a real training step on a document that fills the
    # context, against the estimate (less its fixed allowance for the interpreter).
    docs = ["abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 2]
    run = Run.start(docs, TrainConfig(steps=2), **shape)
    tracemalloc.start()
    try:
        run.train_step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = estimated_memory(run.model.config) - BASELINE_BYTES
    assert peak <= estimate, (peak, estimate)
    assert estimate < 6 * peak  # an upper bound, not a gross one (2.5-3.8x measured)


def test_the_node_size_is_what_a_value_takes() -> None:
    # the estimate's unit: a Value's size as CPython's allocator rounds it (16 bytes)
    size = sys.getsizeof(Value(1.0))
    assert NODE_BYTES == -(-size // 16) * 16, size


def test_check_fits_from_python() -> None:
    config = GPTConfig(vocab_size=27)
    check_fits(config, Limits(), "here")
    with pytest.raises(Exception, match="here: a model with n_layer 1, n_embd 16"):
        check_fits(config, Limits(max_memory=1024), "here")


def test_a_machine_that_will_not_say_its_memory_is_not_given_a_made_up_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on Windows without its API: no sysconf. There is no cap to compare
    # with (not a guess of 16 TiB), and the note says so, naming the setting.
    monkeypatch.delattr(os, "sysconf", raising=False)
    monkeypatch.setattr(limits, "_windows_memory", lambda: None)
    assert Limits().memory_limit()[0] is None
    check_fits(GPTConfig(vocab_size=27, n_embd=4096, n_head=4), Limits(), "here")
    note = Limits().memory_note()
    assert "this machine's memory is unknown" in str(note)
    assert note.worded(flag_of).endswith("; --max-memory SIZE sets a cap")
    assert not Limits(max_memory=2**30).memory_note()  # a cap given: nothing to say
    with pytest.raises(UsageError, match=r"allowed \(max_memory\)$"):
        check_fits(GPTConfig(vocab_size=27), Limits(max_memory=1024), "here")


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--prompt", "a" * 100_000],
        ["train", "--data", "/nowhere/" + "x" * 100_000],
        ["train", "--steps", "1" * 5000],
        ["train", "--norm", "n" * 100_000],
        ["sample", "q" * 100_000],
        ["train", "--bogus-" + "y" * 100_000],
    ],
)
def test_error_lines_are_bounded(args: list[str], data: Path) -> None:
    result = microgpt_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert len(result.stderr) <= MAX_MESSAGE + 1


# --- every accepted value works to the end -------------------------------------------------------


EXTREMES = [
    ["--lr", "1e-300"],
    ["--eps", "1e300"],
    ["--eps", "5e-324"],
    ["--grad-clip", "5e-324"],
    ["--grad-clip", "1e300"],
    ["--dropout", "0.9999999999"],
    ["--beta1", "0.99999999999"],
    ["--seed", str(-(10**30))],
    ["--temperature", "1e-6"],
    ["--temperature", "1e300"],
    ["--save-every", str(10**18), "--log-every", str(10**18)],
    ["--max-data-size", "1", "--data", "bundled:names"],  # the bundled data is no read
    ["--download-timeout", "86400"],
    ["--max-memory", str(2**62)],
]


@pytest.mark.parametrize("flags", EXTREMES, ids=lambda flags: " ".join(flags)[:40])
def test_extreme_accepted_values_work_to_the_end(flags: list[str], tmp_path: Path) -> None:
    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    out = tmp_path / "c.json"
    result = microgpt_cli(
        "train", "--data", data, "--steps", 3, *TINY, "--samples", 3, "--out", out, *flags
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    if flags[0] == "--temperature":  # sampling a checkpoint takes it as well
        resampled = microgpt_cli("sample", out, "--num", 2, *flags)
        assert resampled.returncode == 0 and len(resampled.stdout.splitlines()) == 2


@pytest.mark.parametrize("flags", [["--lr", "1e300"], ["--beta2", "0"]])
def test_settings_that_make_training_diverge_are_a_clean_failure(
    data: Path, flags: list[str]
) -> None:
    # Accepted values whose Adam steps throw the weights out of range: the run
    # stops at the first bad step with status 1 and the advice, as any diverging run.
    result = microgpt_cli("train", "--data", data, "--steps", 5, *TINY, *flags)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith("(try a smaller --lr or --grad-clip)")


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--temperature", "1e-310"], "argument --temperature: must be 0 or at least 1e-06"),
        (["--download-timeout", "1e300"], "argument --download-timeout: must be above 0 and"),
        (["--max-data-size", "9e30"], "argument --max-data-size: expected a size"),
        (["--steps", str(10**13)], "argument --steps: must be at least 1 and at most"),
        (["--seed", "1.5"], "argument --seed: expected a whole number, got '1.5'"),
        (["--lr", "inf"], "argument --lr: must be a finite number"),
    ],
)
def test_values_that_could_not_work_are_refused_up_front(
    flags: list[str], fragment: str, data: Path
) -> None:
    line = one_line(microgpt_cli("train", "--data", data, *flags))
    assert fragment in line


def test_sampling_absurd_weights_is_a_clean_failure(tmp_path: Path) -> None:
    # A checkpoint may hold any finite weights; ones so large that the logits
    # overflow make sampling fail with one line and status 1, not a traceback.
    from microgpt import checkpoint

    data = tmp_path / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    ckpt = tmp_path / "c.json"
    assert microgpt_cli("train", "--data", data, *TINY, "--steps", 1, "--out", ckpt).returncode == 0
    raw = checkpoint.json.loads(ckpt.read_text())
    # Every logit is a sum of such weights times numbers near 1: it overflows.
    raw["weights"]["lm_head"] = [[1.7e308 for _ in row] for row in raw["weights"]["lm_head"]]
    huge = tmp_path / "huge.json"
    huge.write_text(checkpoint.json.dumps(raw))
    line = one_line(microgpt_cli("sample", huge), status=1)
    assert line.startswith("microgpt: error: sampling failed: the model's probabilities are not")


# --- OS errors on the user's paths ---------------------------------------------------------------


@pytest.mark.parametrize("option", ["--out", "--log", "--data", "--resume"])
def test_a_name_too_long_names_the_option(option: str, data: Path, tmp_path: Path) -> None:
    long = tmp_path / ("n" * 300)
    result = microgpt_cli("train", "--data", data, *TINY, "--steps", 1, option, long)
    line = one_line(result)
    assert "File name too long" in line and "nnnn" in line
    if option in ("--out", "--log"):
        assert line.startswith(f"microgpt: error: {option} ")


# Runs `microgpt` in a process that may not write files larger than 1 KiB,
# so that a save or a log write fails with a real EFBIG from the kernel.
SMALL_FILES = """
import resource, signal, sys
from microgpt import Value, cli
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.posix_only("file size limits (resource.RLIMIT_FSIZE, SIGXFSZ)")
def test_a_checkpoint_that_cannot_be_written_is_one_line_naming_out(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "c.json"
    result = subprocess.run(
        [sys.executable, "-c", SMALL_FILES, "1024", "train", "--data", str(data), *TINY]
        + ["--steps", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"microgpt: error: --out {out}: cannot save the checkpoint at step 2: File too large"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["names.txt"]  # no partial file


@pytest.mark.posix_only("file size limits (resource.RLIMIT_FSIZE, SIGXFSZ)")
def test_a_log_that_cannot_be_written_is_one_line_naming_log(data: Path, tmp_path: Path) -> None:
    log, out = tmp_path / "l.jsonl", tmp_path / "c.json"
    result = subprocess.run(
        [sys.executable, "-c", SMALL_FILES, "60000", "train", "--data", str(data)]
        + ["--n-embd", "4", "--n-head", "1", "--block-size", "4", "--steps", "5000"]
        + ["--log", str(log), "--out", str(out), "--samples", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"microgpt: error: --log {log}: cannot write at step ")
    assert "File too large" in last and f"saved {out}" in last


# Makes the log's folder refuse new files, as a folder the user may not write would.
NO_PERMISSION = """
import errno, os, sys
from microgpt import Value, cli
real_open = os.open
def refusing_open(path, flags, *args, **kwargs):
    if str(path).endswith(".jsonl") and flags & os.O_CREAT:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    return real_open(path, flags, *args, **kwargs)
os.open = refusing_open
sys.exit(cli.main(sys.argv[1:]))
"""


def test_permission_denied_names_the_option_and_path(data: Path, tmp_path: Path) -> None:
    log = tmp_path / "l.jsonl"
    result = subprocess.run(
        [sys.executable, "-c", NO_PERMISSION, "train", "--data", str(data), *TINY]
        + ["--steps", "2", "--log", str(log)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = one_line(result)
    assert line == f"microgpt: error: --log {log}: cannot open: Permission denied"
