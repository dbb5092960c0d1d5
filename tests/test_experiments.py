"""Seeing training: the progress line's running mean and the end-of-run
summary, the log's header, validation on held-out documents, the gradient
monitor during training, and greedy sampling (temperature 0)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import microgpt_cli

from microgpt import checkpoint, driver
from microgpt.runlog import LOG_FORMAT, read_log
from microgpt.sample import sample
from microgpt.train import Run, TrainConfig, documents_fingerprint

DOCS = "emma olivia ava isabella sophia mia amelia harper evelyn abigail emily ella liam noah \
oliver elijah james lucas".split()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "names.txt"
    path.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    return path


def records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def train(data: Path, *flags: object) -> tuple[str, str]:
    result = microgpt_cli("train", "--data", data, "--n-embd", 8, "--block-size", 8, *flags)
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


# --- the progress line and the summary ------------------------------------------------


def test_progress_shows_the_mean_of_the_last_100_steps_and_a_summary(
    data: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log.jsonl"
    _, stderr = train(data, "--steps", 150, "--log-every", 50, "--samples", 0, "--log", log)
    losses = [r["loss"] for r in records(log) if "loss" in r]
    pattern = r"step +(\d+)/150 \| loss ([\d.]+) \| mean ([\d.]+) \(last (\d+)\)"
    lines = {int(m[1]): m for m in re.finditer(pattern, stderr)}
    assert sorted(lines) == [1, 50, 100, 150]
    for step, match in lines.items():
        window = losses[max(0, step - 100) : step]
        assert int(match[4]) == len(window)
        assert float(match[3]) == pytest.approx(sum(window) / len(window), abs=6e-5)
        assert float(match[2]) == pytest.approx(losses[step - 1], abs=6e-5)
    summary = re.search(r"done: 150 steps in \S+ \(([\d.]+) steps/s\); mean loss of the "
                        r"last 100 steps ([\d.]+)$", stderr.strip())  # fmt: skip
    assert summary is not None, stderr
    assert float(summary[2]) == pytest.approx(sum(losses[-100:]) / 100, abs=6e-5)
    assert float(summary[1]) > 0


# --- the log's header -----------------------------------------------------------------------


def test_the_log_starts_with_the_runs_settings_and_keeps_them_on_resume(
    data: Path, tmp_path: Path
) -> None:
    log, ckpt = tmp_path / "log.jsonl", tmp_path / "run.json"
    train(data, "--steps", 6, "--lr", 0.02, "--samples", 0, "--log", log, "--out", ckpt)
    first = records(log)[0]
    assert first["format"] == LOG_FORMAT
    header = first["header"]
    assert header["settings"]["lr"] == 0.02 and header["settings"]["n_embd"] == 8
    assert header["settings"]["steps"] == 6 and header["settings"]["seed"] == 42
    assert len(header["data"]["sha256"]) == 64
    assert header["engine"] in ("compiled", "pure Python") and header["version"]
    # Steps keep their format, one record each, after the header.
    assert [set(r) for r in records(log)[1:]] == [{"step", "loss", "lr"}] * 6
    # A resumed run continues the same log: one header, every step once.
    train(data, "--steps", 9, "--samples", 0, "--log", log, "--out", ckpt)  # a fresh run
    microgpt_cli("train", "--resume", ckpt, "--steps", 9)  # settings must agree: refused
    resumed = records(log)
    assert sum("header" in r for r in resumed) == 1
    assert [r["step"] for r in resumed if "loss" in r] == list(range(1, 10))
    assert read_log(log).settings()["steps"] == 9


# --- validation --------------------------------------------------------------------------


def test_held_out_documents_are_deterministic_and_never_trained_on() -> None:
    config = TrainConfig(steps=5, val_fraction=0.25, seed=3)
    a, b = Run.start(DOCS, config, n_embd=8, n_head=2), Run.start(DOCS, config, n_embd=8, n_head=2)
    assert a.val_docs == b.val_docs and len(a.val_docs) == 4
    assert not set(a.val_docs) & set(a.docs) and sorted(a.docs + a.val_docs) == sorted(DOCS)
    # The default holds nothing out: the original's training order, unchanged.
    plain = Run.start(DOCS, TrainConfig(steps=5, seed=3), n_embd=8, n_head=2)
    assert plain.val_docs == [] and plain.docs == a.docs + a.val_docs
    with pytest.raises(Exception, match="leaves no training documents"):
        Run.start(DOCS[:1], config)


def test_val_loss_is_the_mean_of_the_held_out_documents_losses() -> None:
    run = Run.start(DOCS, TrainConfig(steps=5, val_fraction=0.25), n_embd=8, n_head=2)
    expected = sum(run.loss(doc).data for doc in run.val_docs) / len(run.val_docs)
    assert run.val_loss() == expected
    weights = [p.data for p in run.model.params]
    run.val_loss()
    assert [p.data for p in run.model.params] == weights  # evaluation trains nothing
    assert all(p.grad == 0.0 for p in run.model.params)


def test_eval_every_logs_val_loss_records_and_the_summary_reports_it(
    data: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log.jsonl"
    _, stderr = train(data, "--steps", 30, "--val-fraction", 0.25, "--eval-every", 10,
                      "--samples", 0, "--log", log)  # fmt: skip
    vals = [r for r in records(log) if "val_loss" in r]
    assert [r["step"] for r in vals] == [10, 20, 30]
    assert all(set(r) == {"step", "val_loss"} for r in vals)
    assert f"val loss {vals[-1]['val_loss']:.4f}" in stderr.strip().splitlines()[-1]
    assert read_log(log).final_val_loss() == vals[-1]["val_loss"]


def test_eval_every_without_held_out_documents_is_refused(data: Path) -> None:
    result = microgpt_cli("train", "--data", data, "--steps", 3, "--eval-every", 1)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "microgpt: error: --eval-every needs held-out documents: pass --val-fraction too"
    ]


def test_a_resumed_run_holds_out_the_same_documents_and_continues_bit_for_bit(
    tmp_path: Path,
) -> None:
    config = TrainConfig(steps=12, val_fraction=0.2, seed=7)
    whole = Run.start(DOCS, config, n_embd=8, n_head=2)
    expected = [whole.train_step() for _ in range(12)]
    part = Run.start(DOCS, config, n_embd=8, n_head=2)
    losses = [part.train_step() for _ in range(6)]
    path = tmp_path / "run.json"
    checkpoint.save(part, path, "names", documents_fingerprint(DOCS))
    resumed = checkpoint.load(path).run(DOCS)
    assert (resumed.docs, resumed.val_docs) == (part.docs, part.val_docs)
    losses += [resumed.train_step() for _ in range(6)]
    assert losses == expected
    assert resumed.val_loss() == whole.val_loss()


# --- the gradient monitor ---------------------------------------------------------------


def test_monitor_every_prints_this_steps_gradients_before_the_update(data: Path) -> None:
    _, stderr = train(data, "--steps", 4, "--monitor-every", 2, "--samples", 0)
    reports = re.findall(r"step (\d+) gradients:\n((?:  .*\n)+)", stderr)
    assert [int(step) for step, _ in reports] == [2, 4]
    for _, table in reports:
        norms = [float(line.split()[2]) for line in table.splitlines()[1:-1]]
        assert len(norms) == 9  # wte, wpe, lm_head and one block's six matrices
        assert all(norm > 0 for norm in norms)  # read before Adam resets them to 0


def test_monitoring_changes_no_number(data: Path, tmp_path: Path) -> None:
    plain, watched = tmp_path / "plain.jsonl", tmp_path / "watched.jsonl"
    train(data, "--steps", 5, "--samples", 0, "--log", plain)
    train(data, "--steps", 5, "--samples", 0, "--log", watched, "--monitor-every", 1)
    assert records(plain)[1:] == records(watched)[1:]


# --- sampling: what the temperature does -----------------------------------------------


@pytest.fixture(scope="module")
def trained() -> Run:
    run = Run.start(DOCS, TrainConfig(steps=60, seed=1), n_embd=8, n_head=2, block_size=8)
    for _ in range(60):
        run.train_step()
    return run


def test_temperature_zero_picks_the_likeliest_character_and_draws_nothing(trained: Run) -> None:
    rng = random.Random(5)
    state = rng.getstate()
    names = {sample(trained.model, trained.tokenizer, rng, 0.0) for _ in range(3)}
    assert len(names) == 1 and rng.getstate() == state
    # Each character is the argmax of the model's logits at its position.
    model, tok = trained.model, trained.tokenizer
    keys, values = model.new_cache()
    token, expected = tok.bos, []
    for pos in range(model.config.block_size):
        logits = [v.data for v in model(token, pos, keys, values)]
        token = logits.index(max(logits))
        if token == tok.bos:
            break
        expected.append(token)
    assert names == {tok.decode(expected)}


def test_a_lower_temperature_draws_likelier_names(trained: Run) -> None:
    def mean_log_likelihood(temperature: float) -> float:
        rng = random.Random(11)
        names = [sample(trained.model, trained.tokenizer, rng, temperature) for _ in range(40)]
        return sum(-trained.loss(name).data for name in names) / len(names)

    cold, warm, hot = (mean_log_likelihood(t) for t in (0.2, 1.0, 3.0))
    assert cold > warm > hot


def test_a_sample_can_fill_the_whole_context() -> None:
    # Trained on names longer than its context, the model never learns to end
    # one there: greedy samples stop because the context is full, after
    # exactly block_size characters.
    run = Run.start(["abcdefgh", "bcdefgha"], TrainConfig(steps=80, seed=0),
                    n_embd=8, n_head=2, block_size=4)  # fmt: skip
    for _ in range(80):
        run.train_step()
    rng = random.Random(0)
    assert sample(run.model, run.tokenizer, rng, 0.0, prompt="a") == "abcd"
    assert sample(run.model, run.tokenizer, rng, 0.0, prompt="bc") == "bcde"
    drawn = [sample(run.model, run.tokenizer, rng, 0.5) for _ in range(10)]
    assert all(len(name) == 4 for name in drawn), drawn


def test_greedy_sampling_through_the_cli(data: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.json"
    train(data, "--steps", 20, "--samples", 0, "--out", ckpt)
    first = microgpt_cli("sample", ckpt, "--temperature", 0, "--num", 3, "--seed", 1)
    second = microgpt_cli("sample", ckpt, "--temperature", 0, "--num", 3, "--seed", 2)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and len(set(first.stdout.split())) == 1


def test_log_header_names_the_data_and_all_settings() -> None:
    run = Run.start(DOCS, TrainConfig(steps=3), n_embd=8, n_head=2)
    header = driver.log_header(run, "names.txt", "ab" * 32)["header"]
    assert header["data"] == {"source": "names.txt", "sha256": "ab" * 32}
    assert set(run.model.config.to_dict()) | set(run.train_config.to_dict()) == set(
        header["settings"]
    )
