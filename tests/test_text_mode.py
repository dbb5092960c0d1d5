"""Text mode: a file is one stream of characters, trained on windows of
block_size + 1 characters at offsets drawn from the run's random stream; the
end of the text is held out for validation; a run resumes exactly."""

from __future__ import annotations

import collections
import json
import math
import random
from pathlib import Path

import pytest
from conftest import (
    REPO_ROOT,
    TINY,
    TINY_SETTINGS,
    assert_one_line_error,
    logged_losses,
    microgpt_cli,
    train_tiny,
)

from microgpt import checkpoint
from microgpt.data import random_window, text_windows
from microgpt.nn import Value, cross_entropy
from microgpt.train import NonFiniteLoss, Run, TrainConfig

PROSE = REPO_ROOT / "tests" / "data" / "prose.txt"
TEXT = PROSE.read_text(encoding="utf-8")


def text_run(steps: int = 4, **training: object) -> Run:
    config = TrainConfig(steps=steps, data_mode="text", **training)  # type: ignore[arg-type]
    return Run.start([TEXT], config, **TINY_SETTINGS)


def unigram_entropy(text: str) -> float:
    """The loss (nats per character) of predicting each character by its frequency."""
    counts, n = collections.Counter(text), len(text)
    return -sum(c / n * math.log(c / n) for c in counts.values())


def test_a_window_is_block_size_plus_one_characters_at_a_drawn_offset() -> None:
    rng, again = random.Random(5), random.Random(5)
    for _ in range(50):
        window = random_window(TEXT, 8, rng)
        start = again.randrange(len(TEXT) - 8)  # one draw per window, from the same stream
        assert window == TEXT[start : start + 9]
    # the offsets reach both ends of a text
    assert {random_window("abcdefghij", 8, rng) for _ in range(200)} == {"abcdefghi", "bcdefghij"}


def test_evaluation_windows_predict_every_character_once() -> None:
    windows = list(text_windows("abcdefghijklmnopqrst", 8))
    assert windows == ["abcdefghi", "ijklmnopq", "qrst"]
    predicted = "".join(w[1:] for w in windows)
    assert predicted == "bcdefghijklmnopqrst"
    assert list(text_windows("ab", 8)) == ["ab"] and list(text_windows("a", 8)) == []


def test_a_step_predicts_every_next_character_of_its_window() -> None:
    run = text_run()
    state = run.rng.getstate()
    loss = run.batch_loss(0)
    run.rng.setstate(state)
    window = random_window(run.docs[0], 8, run.rng)
    ids = run.tokenizer.encode(window)
    keys, values = run.model.new_cache()
    losses = [cross_entropy(run.model(ids[i], i, keys, values), ids[i + 1]).data for i in range(8)]
    assert loss.data == pytest.approx(sum(losses) / 8, rel=1e-12)
    assert "\n" in run.tokenizer.chars  # newlines are characters of the stream


def test_the_end_of_the_text_is_held_out() -> None:
    run = text_run(val_fraction=0.1)
    held = int(0.1 * len(TEXT))
    assert run.val_docs == [TEXT[-held:]] and run.docs == [TEXT[:-held]]
    assert run.docs[0] + run.val_docs[0] == TEXT  # contiguous, nothing shuffled
    # the val loss is the mean loss per character over the held-out text
    assert math.isfinite(run.val_loss())


def test_text_mode_learns_below_the_character_frequencies() -> None:
    config = TrainConfig(steps=60, lr=0.02, data_mode="text", val_fraction=0.1)
    run = Run.start([TEXT], config, n_embd=16, block_size=16)
    before = run.val_loss()
    while not run.done:
        run.train_step()
    after = run.val_loss()
    baseline = unigram_entropy(TEXT)  # about 2.90 nats
    assert after < baseline < before, (before, baseline, after)


def test_a_batch_of_windows_is_their_mean_loss_and_draws_in_order() -> None:
    run = text_run(batch_size=3)
    state = run.rng.getstate()
    loss = run.batch_loss(0).data
    run.rng.setstate(state)
    windows = [random_window(run.docs[0], 8, run.rng) for _ in range(3)]
    assert loss == pytest.approx(sum(run.window_loss(w).data for w in windows) / 3, rel=1e-12)


def test_a_text_too_short_for_a_window_is_refused() -> None:
    with pytest.raises(Exception, match="needs block_size \\+ 1 = 9"):
        Run.start(["short"], TrainConfig(data_mode="text"), **TINY_SETTINGS)
    with pytest.raises(Exception, match="after holding out"):
        Run.start(
            ["0123456789ab"], TrainConfig(data_mode="text", val_fraction=0.5), **TINY_SETTINGS
        )


def test_a_text_run_saved_midway_resumes_bit_for_bit(tmp_path: Path) -> None:
    config = TrainConfig(steps=6, data_mode="text", batch_size=2, val_fraction=0.1)
    whole = Run.start([TEXT], config, **TINY_SETTINGS)
    expected = [whole.train_step() for _ in range(6)]
    part = Run.start([TEXT], config, **TINY_SETTINGS)
    losses = [part.train_step() for _ in range(3)]
    path = tmp_path / "c.json"
    checkpoint.save(part, path, str(PROSE), "fingerprint")
    saved = json.loads(path.read_text())
    assert saved["training"]["data_mode"] == "text"  # the checkpoint records the mode
    resumed = checkpoint.load(path).run([TEXT])
    assert (resumed.docs, resumed.val_docs) == (part.docs, part.val_docs)
    losses += [resumed.train_step() for _ in range(3)]
    assert losses == expected  # the windows drawn and the weights alike
    assert resumed.rng.getstate() == whole.rng.getstate()


def test_an_extended_text_run_at_a_constant_rate_is_the_longer_run(tmp_path: Path) -> None:
    # Three steps, then the run extended to six: with a constant learning
    # rate (the schedule is the only thing an extension changes) it is the
    # six-step run, bit for bit.
    common = ["--data", PROSE, "--data-mode", "text", *TINY, "--samples", 3]
    const = ["--lr-schedule", "constant"]
    full = microgpt_cli("train", *common, *const, "--steps", 6, "--log", tmp_path / "a.jsonl")
    ckpt, log = tmp_path / "c.json", tmp_path / "b.jsonl"
    part = microgpt_cli("train", *common, *const, "--steps", 3, "--out", ckpt, "--log", log)
    rest = microgpt_cli("train", "--resume", ckpt, "--steps", 6, "--log", log, "--samples", 3)
    assert (full.returncode, part.returncode, rest.returncode) == (0, 0, 0), rest.stderr
    assert logged_losses(log) == logged_losses(tmp_path / "a.jsonl")  # windows and weights alike
    assert rest.stdout == full.stdout  # and the random stream after them


def test_resuming_in_another_mode_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.json"
    train_tiny(PROSE, "--data-mode", "text", "--steps", 2, "--out", ckpt)
    assert_one_line_error(
        microgpt_cli("train", "--resume", ckpt, "--data-mode", "lines", "--steps", 4),
        "--data-mode lines contradicts the checkpoint (--data-mode text)",
    )


def test_text_mode_samples_continue_for_max_new_tokens(tmp_path: Path) -> None:
    result = train_tiny(PROSE, "--data-mode", "text", "--steps", 3, "--samples", 2,
                        "--max-new-tokens", 20, "--prompt", "The ferry")  # fmt: skip
    samples = result.stdout.removesuffix("\n").split("\n---\n")  # a separator between them
    assert len(samples) == 2
    for sample in samples:
        assert sample.startswith("The ferry") and len(sample) == len("The ferry") + 20


def test_describe_says_text_mode_reads_characters(tmp_path: Path) -> None:
    result = train_tiny(PROSE, "--data-mode", "text", "--steps", 1, "--val-fraction", 0.1)
    assert f"text of {len(TEXT):,} characters" in result.stderr
    assert "val loss" in result.stderr and f"({int(0.1 * len(TEXT)):,} characters)" in result.stderr


def test_a_text_step_that_fails_gives_back_its_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    # The windows of a step whose loss is not a number were drawn for
    # nothing: the random stream is put back, so a resumed run draws them again.
    run = text_run()
    state = run.rng.getstate()
    monkeypatch.setattr(run, "window_loss", lambda window, rng=None: Value(math.inf))
    with pytest.raises(NonFiniteLoss):
        run.train_step()
    assert run.rng.getstate() == state and run.step == 0
