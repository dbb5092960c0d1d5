"""Extending a run: `train --resume CKPT --steps N` with N above the run's
total trains on to N, the schedule running over the new total from the next
step; a smaller N is refused; a finished run resumed as it is changes
nothing and says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import DOCS, TINY, TINY_SETTINGS, assert_one_line_error, microgpt_cli

from microgpt import checkpoint
from microgpt.driver import Trainer
from microgpt.runlog import read_log
from microgpt.train import Run, TrainConfig, documents_fingerprint


def records(log: Path) -> list[dict[str, float]]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if "step" in r]


def headers(log: Path) -> list[dict[str, Any]]:
    return [r["header"] for r in map(json.loads, log.read_text().splitlines()) if "header" in r]


def test_an_extended_run_keeps_its_first_steps_and_follows_the_new_schedule(
    data: Path, tmp_path: Path
) -> None:
    ckpt, log = tmp_path / "c.json", tmp_path / "log.jsonl"
    original = microgpt_cli(
        "train", "--data", data, *TINY, "--steps", 4, "--out", ckpt, "--log", log, "--samples", 0
    )
    assert original.returncode == 0, original.stderr
    first = records(log)
    longer = microgpt_cli("train", "--resume", ckpt, "--steps", 9, "--log", log, "--samples", 0)
    assert longer.returncode == 0, longer.stderr
    assert "steps 5..9" in longer.stderr
    extended = records(log)
    assert extended[:4] == first  # the first steps are the original run's, bit for bit
    assert [r["step"] for r in extended] == list(range(1, 10))
    schedule = TrainConfig(steps=9)
    assert [r["lr"] for r in extended[4:]] == [schedule.lr_at(s) for s in range(4, 9)]
    assert checkpoint.load(ckpt).step == 9 and checkpoint.load(ckpt).train_config.steps == 9
    # The log says what made its steps: the extension's header follows step 4.
    assert [h["settings"]["steps"] for h in headers(log)] == [4, 9]
    assert read_log(log).settings()["steps"] == 9


def test_an_extension_at_a_constant_rate_is_the_longer_run(data: Path, tmp_path: Path) -> None:
    const = ["--data", data, *TINY, "--lr-schedule", "constant", "--samples", 3]
    whole = microgpt_cli("train", *const, "--steps", 8, "--log", tmp_path / "whole.jsonl")
    ckpt, log = tmp_path / "c.json", tmp_path / "log.jsonl"
    part = microgpt_cli("train", *const, "--steps", 5, "--out", ckpt, "--log", log)
    rest = microgpt_cli("train", "--resume", ckpt, "--steps", 8, "--log", log, "--samples", 3)
    assert (whole.returncode, part.returncode, rest.returncode) == (0, 0, 0), rest.stderr
    assert records(log) == records(tmp_path / "whole.jsonl")
    assert rest.stdout == whole.stdout


def test_a_finished_run_resumed_as_it_is_changes_nothing(data: Path, tmp_path: Path) -> None:
    ckpt, log = tmp_path / "c.json", tmp_path / "log.jsonl"
    made = microgpt_cli(
        "train", "--data", data, *TINY, "--steps", 3, "--out", ckpt, "--log", log, "--samples", 2
    )
    assert made.returncode == 0, made.stderr
    before = (ckpt.read_bytes(), log.read_bytes())
    for extra in ([], ["--steps", "3"]):
        again = microgpt_cli("train", "--resume", ckpt, "--log", log, "--samples", 2, *extra)
        assert again.returncode == 0, again.stderr
        assert "the run is finished (all 3 steps done)" in again.stderr
        assert "nan" not in again.stderr and "saved" not in again.stderr.replace("or saved", "")
        assert (ckpt.read_bytes(), log.read_bytes()) == before
        assert again.stdout == made.stdout  # the samples its training printed


def test_a_shorter_total_is_refused(data: Path, tmp_path: Path) -> None:
    # a run of 6 steps saved after 3
    run = Run.start(DOCS, TrainConfig(steps=6), **TINY_SETTINGS)
    for _ in range(3):
        run.train_step()
    ckpt = tmp_path / "c.json"
    checkpoint.save(run, ckpt, str(data), documents_fingerprint(DOCS))
    before = ckpt.read_bytes()
    for steps in (5, 2):  # below the total; below the steps done
        assert_one_line_error(
            microgpt_cli("train", "--resume", ckpt, "--steps", steps),
            f"argument --steps: can only be raised on resuming: the run has 6 steps (3 done), "
            f"got {steps}",
        )
        assert ckpt.read_bytes() == before


def test_a_finished_run_trained_again_from_python_says_so_without_a_nan() -> None:
    run = Run.start(DOCS, TrainConfig(steps=2), **TINY_SETTINGS)
    said: list[str] = []
    assert Trainer(run, say=said.append).train().status == "done"
    assert said[-1].startswith("done: 2 steps")
    said.clear()
    assert Trainer(run, say=said.append).train().status == "done"
    assert said == ["done: nothing to train (all 2 steps were done)"]
    assert run.step == 2
