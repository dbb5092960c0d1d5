"""Batches: a step's loss is the mean of `batch_size` documents' (or
windows') losses in a fixed order; a batch of one is today's step; the
memory estimate counts the batch's graph."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from conftest import DOCS, REPO_ROOT, TINY_SETTINGS, microgpt_cli, train_tiny

from microgpt import cli
from microgpt.limits import BASELINE_BYTES, estimated_memory
from microgpt.nn import GPTConfig
from microgpt.train import Run, TrainConfig


def test_a_batch_is_the_next_documents_in_order_cycling() -> None:
    run = Run.start(DOCS, TrainConfig(batch_size=3), **TINY_SETTINGS)
    docs = run.docs
    assert run.batch(0) == docs[0:3] and run.batch(2) == docs[6:9]
    assert run.batch(3) == [docs[9], docs[0], docs[1]]  # on past the end, from the start


def test_a_batch_loss_and_gradients_are_the_mean_of_its_documents() -> None:
    run = Run.start(DOCS, TrainConfig(batch_size=3), **TINY_SETTINGS)
    params = run.model.params
    singles = []
    for doc in run.batch(1):
        loss = run.loss(doc)
        loss.backward()
        singles.append((loss.data, [p.grad for p in params]))
        for p in params:
            p.grad = 0.0
    batch = run.batch_loss(1)
    batch.backward()
    assert batch.data == pytest.approx(sum(s[0] for s in singles) / 3, rel=1e-12)
    for i, p in enumerate(params):
        assert p.grad == pytest.approx(sum(s[1][i] for s in singles) / 3, rel=1e-9, abs=1e-15)


def test_a_batch_of_one_is_the_original_step_bit_for_bit() -> None:
    plain = Run.start(DOCS, TrainConfig(steps=5), **TINY_SETTINGS)
    one = Run.start(DOCS, TrainConfig(steps=5, batch_size=1), **TINY_SETTINGS)
    assert [plain.train_step() for _ in range(5)] == [one.train_step() for _ in range(5)]
    assert [p.data for p in plain.model.params] == [p.data for p in one.model.params]


def test_batches_train(tmp_path: Path) -> None:
    run = Run.start(DOCS * 3, TrainConfig(steps=30, batch_size=4, lr=0.02), **TINY_SETTINGS)
    first = run.train_step()
    while not run.done:
        last = run.train_step()
    assert last < first


def peak_of_a_step(run: Run) -> int:
    tracemalloc.start()
    try:
        run.train_step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_memory_estimate_counts_a_batch_of_full_windows() -> None:
    # A text-mode step with a batch of three windows, measured, against the
    # estimate for three sequences of the whole context: the batch's graphs
    # are all held until backward(), so the peak grows with the batch.
    text = (REPO_ROOT / "tests" / "data" / "prose.txt").read_text(encoding="utf-8")
    peaks = {
        size: peak_of_a_step(
            Run.start(
                [text], TrainConfig(steps=2, data_mode="text", batch_size=size), **TINY_SETTINGS
            )
        )
        for size in (1, 3)
    }
    config = GPTConfig(vocab_size=len(set(text)) + 1, **TINY_SETTINGS)
    assert peaks[3] > 2 * peaks[1]
    assert peaks[3] <= estimated_memory(config, batch=3) - BASELINE_BYTES
    graph = estimated_memory(config) - estimated_memory(config, positions=0)
    assert estimated_memory(config, batch=4) - estimated_memory(config, positions=0) == 4 * graph


def test_a_batch_too_big_for_memory_is_refused_before_reading(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["train", "--data", "/nowhere/at/all.txt", "--batch-size", "4096", "--max-memory", "1G"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "a batch of 4096" in err and "--max-memory" in err and len(err.splitlines()) == 1


def test_the_batch_size_reaches_the_checkpoint_and_log(tmp_path: Path) -> None:
    data, ckpt, log = tmp_path / "d.txt", tmp_path / "c.json", tmp_path / "l.jsonl"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    train_tiny(data, "--steps", 2, "--batch-size", 2, "--weight-decay", 0.1, "--out", ckpt,
               "--log", log)  # fmt: skip
    assert '"batch_size":2' in ckpt.read_text() and '"weight_decay":0.1' in ckpt.read_text()
    assert '"batch_size": 2' in log.read_text().splitlines()[0]
    # ...and the command that resumes it needs none of them (the checkpoint has them)
    again = microgpt_cli("train", "--resume", ckpt, "--batch-size", 3)
    assert "--batch-size 3 contradicts the checkpoint (--batch-size 2)" in again.stderr
