"""`python -m microgpt` end to end: what a user sees on stdout and stderr.

Every command runs in a real subprocess with the engine this test run uses.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DOCS, TINY, TINY_SETTINGS, microgpt_cli, ok

import microgpt
from microgpt import checkpoint, lessons
from microgpt.cli import main
from microgpt.data import load_documents
from microgpt.sample import sample_many
from microgpt.train import Run, TrainConfig

# A model small enough to train in a blink with either engine.


@pytest.fixture
def data_file(data: Path) -> Path:
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A tiny run trained to the end with --out: its checkpoint and stdout."""
    folder = tmp_path_factory.mktemp("trained")
    data = folder / "names.txt"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    ckpt = folder / "ckpt.json"
    result = ok(
        microgpt_cli("train", "--data", data, "--steps", 4, *TINY, "--samples", 6, "--out", ckpt)
    )
    return {"ckpt": ckpt, "stdout": result.stdout, "data": data}


def vocabulary() -> set[str]:
    return set("".join(DOCS))


def test_train_prints_exactly_the_samples_on_stdout(data_file: Path) -> None:
    result = ok(
        microgpt_cli(
            "train", "--data", data_file, "--steps", 3, *TINY, "--samples", 5, "--log-every", 1
        )
    )
    names = result.stdout.split("\n")
    assert names[-1] == ""  # every name ends its line, nothing follows
    names = names[:-1]
    assert len(names) == 5
    for name in names:
        assert set(name) <= vocabulary(), name
    # Progress goes to stderr, one line per step here, with rate and ETA.
    progress = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert [line.split("|")[0].split()[1] for line in progress] == ["1/3", "2/3", "3/3"]
    for line in progress:
        assert "loss " in line and "steps/s" in line and "ETA" in line


def test_zero_samples_prints_nothing(data_file: Path) -> None:
    result = ok(microgpt_cli("train", "--data", data_file, "--steps", 2, *TINY, "--samples", 0))
    assert result.stdout == ""
    assert "step 2/2" in result.stderr


def test_log_holds_every_step_loss_exactly(data_file: Path, tmp_path: Path) -> None:
    log = tmp_path / "losses.jsonl"
    ok(microgpt_cli("train", "--data", data_file, "--steps", 4, *TINY, "--log", log))
    header, *lines = log.read_text(encoding="utf-8").splitlines()
    assert json.loads(header)["header"]["settings"]["steps"] == 4  # what made the run
    entries = [json.loads(line) for line in lines]

    run = Run.start(load_documents(str(data_file)), TrainConfig(steps=4), **TINY_SETTINGS)
    expected = [run.train_step() for _ in range(4)]

    assert [e["step"] for e in entries] == [1, 2, 3, 4]
    assert [e["lr"] for e in entries] == [0.01 * (1 - i / 4) for i in range(4)]  # linear decay
    # The float64 loss itself, not a rounded copy: compare bit patterns.
    assert [e["loss"].hex() for e in entries] == [loss.hex() for loss in expected]
    for line, loss in zip(lines, expected):
        assert f'"loss": {loss!r}' in line


def test_version() -> None:
    result = ok(microgpt_cli("--version"))
    assert result.stdout.startswith(f"microgpt {microgpt.__version__} (engine: ")
    assert result.stderr == ""


def test_prompt_starts_every_sample(data_file: Path) -> None:
    result = ok(
        microgpt_cli(
            "train", "--data", data_file, "--steps", 2, *TINY, "--samples", 6, "--prompt", "an"
        )
    )
    names = result.stdout.splitlines()
    assert len(names) == 6
    assert all(name.startswith("an") for name in names), names


def test_sample_without_seed_repeats_what_train_printed(trained: dict[str, object]) -> None:
    # The checkpoint saved at the end keeps the random stream where training
    # left it, so sampling it continues exactly as `train` did.
    result = ok(microgpt_cli("sample", trained["ckpt"], "--num", 6))
    assert result.stdout == trained["stdout"]
    assert result.stdout.count("\n") == 6


def test_sample_with_seed_is_reproducible(trained: dict[str, object]) -> None:
    first = ok(microgpt_cli("sample", trained["ckpt"], "--num", 5, "--seed", 7))
    again = ok(microgpt_cli("sample", trained["ckpt"], "--num", 5, "--seed", 7))
    assert first.stdout == again.stdout
    ckpt = checkpoint.load(trained["ckpt"])  # type: ignore[arg-type]
    expected = sample_many(ckpt.model(), ckpt.tokenizer, random.Random(7), 5, 0.5)
    assert first.stdout.splitlines() == expected


def test_sample_prompt_and_num(trained: dict[str, object]) -> None:
    result = ok(microgpt_cli("sample", trained["ckpt"], "--num", 4, "--prompt", "da"))
    names = result.stdout.splitlines()
    assert len(names) == 4 and all(name.startswith("da") for name in names), names
    assert ok(microgpt_cli("sample", trained["ckpt"], "--num", 0)).stdout == ""


def test_bundled_dataset_when_data_is_omitted() -> None:
    result = ok(microgpt_cli("train", "--steps", 2, *TINY, "--samples", 3))
    assert "data: the bundled names dataset (32000 documents" in result.stderr
    names = result.stdout.splitlines()
    assert len(names) == 3
    assert all(set(name) <= set("abcdefghijklmnopqrstuvwxyz") for name in names), names


def test_progress_lines_follow_log_every(data_file: Path) -> None:
    result = ok(microgpt_cli("train", "--data", data_file, "--steps", 6, *TINY, "--log-every", 4))
    steps = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("step ")]
    assert steps == ["1/6", "4/6", "6/6"]  # the first, every 4th, and the last


def test_long_documents_are_a_note_not_an_error(tmp_path: Path) -> None:
    data = tmp_path / "long.txt"
    data.write_text("ab\nabcdefghijkl\nabcdefghij\n", encoding="utf-8")
    result = ok(microgpt_cli("train", "--data", data, "--steps", 2, *TINY, "--samples", 1))
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1
    note = notes[0]
    # Says how many, the limit, that they are truncated like the original, and the fix.
    assert "2 of 3 documents" in note
    assert "8 or more characters" in note
    assert "truncated, as in the original" in note
    assert "--block-size of 13" in note
    assert result.stdout.count("\n") == 1


def test_help_goes_to_stdout() -> None:
    result = ok(microgpt_cli("train", "--help"))
    assert "--resume" in result.stdout and "--save-every" in result.stdout


def test_the_console_script_is_the_same_command(tmp_path: Path) -> None:
    script = shutil.which("microgpt", path=os.path.dirname(sys.executable))
    assert script is not None, "pip did not install the microgpt command beside this Python"
    version = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert version.returncode == 0
    assert version.stdout == microgpt_cli("--version").stdout
    bad = subprocess.run([script, "train", "--steps", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1


def test_defaults_are_the_original_microgpts(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.json"
    result = ok(microgpt_cli("train", "--steps", 1, "--out", ckpt))
    assert len(result.stdout.splitlines()) == 20
    raw = json.loads(ckpt.read_text())
    assert {k: raw["model"][k] for k in ("n_layer", "n_embd", "n_head", "block_size")} == {
        "n_layer": 1,
        "n_embd": 16,
        "n_head": 4,
        "block_size": 16,
    }
    assert (raw["model"]["norm"], raw["model"]["activation"], raw["model"]["dropout"]) == (
        "rmsnorm",
        "relu",
        0.0,
    )
    training = raw["training"]
    assert (training["lr"], training["beta1"], training["beta2"], training["eps"]) == (
        0.01,
        0.85,
        0.99,
        1e-8,
    )
    assert (training["seed"], training["grad_clip"]) == (42, None)
    assert len(ok(microgpt_cli("sample", ckpt)).stdout.splitlines()) == 20


# --- help ------------------------------------------------------------------------------


def test_lesson_help_lists_every_lesson_from_the_lessons_package(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["lesson", "--help"]) == 0
    out = capsys.readouterr().out
    listed = [
        line.split(None, 1)
        for line in out.split("lessons (run: microgpt lesson NAME):\n")[1].splitlines()
    ]
    assert {name: about for name, about in listed} == lessons.LESSONS


def test_sample_help_says_what_ckpt_is_and_speaks_of_samples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["sample", "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  CKPT +a checkpoint saved by `microgpt train`$", out, re.MULTILINE)
    assert re.search(r"^  --num N +how many samples to print", out, re.MULTILINE)
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  --samples N +how many samples to print", out, re.MULTILINE)
    # no help text assumes the data are names (the default data are)
    for command in (["train"], ["sample"], ["sweep"], []):
        main([*command, "--help"])
        out = capsys.readouterr().out.replace("(bundled names)", "")
        assert not re.search(r"\bnames\b", out), (command, out)


@pytest.mark.parametrize(
    ("command", "prog"),
    [
        (["sample", "x.json"], "microgpt sample"),
        (["train"], "microgpt train"),
        (["plot", "loss", "x.jsonl", "-o", "x.png"], "microgpt plot loss"),
        (["gradcheck"], "microgpt gradcheck"),
    ],
)
def test_a_commands_usage_error_points_to_its_own_help(
    command: list[str], prog: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--no-such-flag"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"{prog}: error: unrecognized arguments: --no-such-flag (see {prog} --help)\n"
    )
    assert captured.out == ""
