"""The golden test: the original microgpt's losses and samples, bit for bit.

Seed 42, the original's names file, the default config, 1000 steps; the
expected float64 losses (steps 1-50 and 1000) and the 20 names sampled right
after training are in ../shared/parity/default_seed42.txt. The fixtures skip,
with the reason, when those files are absent.

One training run serves every test here: `first_50` trains the first 50 steps
(so a mismatch shows within seconds), `trained` continues the same run to 1000.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import PURE_REQUESTED, microgpt_cli

from microgpt.data import load_documents
from microgpt.sample import sample_many
from microgpt.train import Run, TrainConfig

STEPS = 1000
FAST_STEPS = 50


class Training:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.losses: dict[int, float] = {}  # 1-based step -> loss

    def train_to(self, step: int) -> None:
        while self.run.step < step:
            loss = self.run.train_step()
            self.losses[self.run.step] = loss


@pytest.fixture(scope="module")
def training(parity_dir: Path) -> Training:
    docs = load_documents(str(parity_dir / "names.txt"))
    assert (TrainConfig().steps, TrainConfig().seed) == (STEPS, 42)  # the original's
    return Training(Run.start(docs, TrainConfig()))


@pytest.fixture(scope="module")
def first_50(training: Training) -> dict[int, float]:
    training.train_to(FAST_STEPS)
    return {step: training.losses[step] for step in range(1, FAST_STEPS + 1)}


@pytest.fixture(scope="module")
def trained(training: Training, first_50: dict[int, float]) -> Training:
    training.train_to(STEPS)
    return training


def mismatches(got: dict[int, float], want: dict[int, float]) -> list[str]:
    return [
        f"step {step}: got {got[step].hex()} ({got[step]!r}), "
        f"want {want[step].hex()} ({want[step]!r})"
        for step in sorted(want)
        if got[step] != want[step]
    ]


def test_the_golden_file_is_complete(golden: dict[str, Any]) -> None:
    assert sorted(golden["losses"]) == [*range(1, FAST_STEPS + 1), STEPS]
    assert len(golden["samples"]) == 20


def test_first_50_losses_are_the_originals(
    first_50: dict[int, float], golden: dict[str, Any]
) -> None:
    want = {s: loss for s, loss in golden["losses"].items() if s <= FAST_STEPS}
    bad = mismatches(first_50, want)
    assert not bad, f"{len(bad)} of {len(want)} losses differ:\n" + "\n".join(bad[:10])


def test_every_listed_loss_of_1000_steps_is_the_originals(
    trained: Training, golden: dict[str, Any]
) -> None:
    assert trained.run.step == STEPS and sorted(trained.losses) == list(range(1, STEPS + 1))
    bad = mismatches(trained.losses, golden["losses"])
    assert not bad, f"{len(bad)} of {len(golden['losses'])} losses differ:\n" + "\n".join(bad[:10])


def test_the_samples_after_training_are_the_originals(
    trained: Training, golden: dict[str, Any]
) -> None:
    # drawn right after training, from the run's own random stream
    run = trained.run
    samples = sample_many(run.model, run.tokenizer, run.rng, 20, temperature=0.5)
    assert samples == golden["samples"]


@pytest.mark.skipif(PURE_REQUESTED, reason="the pure engine's run is checked in-process above")
def test_the_readme_command_reproduces_the_original(
    parity_dir: Path, golden: dict[str, Any], tmp_path: Path
) -> None:
    # docs/reproducing.md: no flags but --data and --log.
    log = tmp_path / "losses.jsonl"
    result = microgpt_cli("train", "--data", parity_dir / "names.txt", "--log", log)
    assert result.returncode == 0, result.stderr
    records = list(map(json.loads, log.read_text().splitlines()))
    logged = {e["step"]: e["loss"] for e in records if "loss" in e}
    assert len(logged) == STEPS
    for step, loss in golden["losses"].items():
        assert logged[step].hex() == loss.hex(), f"step {step}"
    assert result.stdout.splitlines() == golden["samples"]
