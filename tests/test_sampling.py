"""Sampling past the context, top-k, and prompts from a file."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import REPO_ROOT, TINY_SETTINGS, assert_one_line_error, microgpt_cli, train_tiny

from microgpt import cli, no_grad
from microgpt.errors import UsageError
from microgpt.nn import GPT, Value
from microgpt.sample import _picker, sample
from microgpt.train import Run, TrainConfig

NAMES = "emma olivia ava isabella sophia mia amelia harper evelyn abigail emily ella".split()
PROSE = (REPO_ROOT / "tests" / "data" / "prose.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def lines_run() -> Run:
    run = Run.start(NAMES, TrainConfig(steps=30, seed=3), **TINY_SETTINGS)
    while not run.done:
        run.train_step()
    return run


@pytest.fixture(scope="module")
def text_run() -> Run:
    run = Run.start([PROSE], TrainConfig(steps=10, data_mode="text"), **TINY_SETTINGS)
    while not run.done:
        run.train_step()
    return run


def greedy_from_scratch(
    model: GPT, context: list[int], n: int, stop: int | None, candidates: range
) -> list[int]:
    """The reference: for each new token, run the model afresh over the last
    block_size tokens (positions from 0) and take the likeliest."""
    context, new = list(context), []
    with no_grad():
        for _ in range(n):
            window = context[-model.config.block_size :]
            keys, values = model.new_cache()
            for pos, token in enumerate(window):
                logits = model(token, pos, keys, values)
            best = max(candidates, key=lambda i: logits[i].data)
            if best == stop:
                break
            context.append(best)
            new.append(best)
    return new


def test_lines_samples_past_the_context_slide_the_window(lines_run: Run) -> None:
    model, tok = lines_run.model, lines_run.tokenizer
    for prompt in ("", "em", "isabellaso"):  # the last is longer than the context
        ids = tok.encode(prompt)
        got = sample(model, tok, random.Random(0), 0.0, prompt, max_new_tokens=30)
        expected = greedy_from_scratch(model, [tok.bos, *ids], 30, tok.bos, range(tok.vocab_size))
        assert got == prompt + tok.decode(expected)
    assert len(got) == len("isabellaso") + 30  # past the context, to the end of the budget


def test_text_samples_past_the_context_slide_the_window(text_run: Run) -> None:
    model, tok = text_run.model, text_run.tokenizer
    got = sample(model, tok, random.Random(0), 0.0, "The ", max_new_tokens=25, text_mode=True)
    expected = greedy_from_scratch(model, tok.encode("The "), 25, None, range(len(tok.chars)))
    assert got == "The " + tok.decode(expected) and len(got) == 4 + 25


def test_text_samples_never_draw_the_end_token(text_run: Run) -> None:
    rng = random.Random(1)
    for _ in range(5):  # a hot temperature makes every token likely
        drawn = sample(
            text_run.model, text_run.tokenizer, rng, 5.0, max_new_tokens=20, text_mode=True
        )
        assert len(drawn) == 20  # an end token would be decoded to nothing
    no_prompt = sample(text_run.model, text_run.tokenizer, rng, 0.0, text_mode=True)
    assert len(no_prompt) == 8  # default: block_size characters, after a newline


def test_the_default_is_the_originals_and_equals_filling_the_context(lines_run: Run) -> None:
    model, tok = lines_run.model, lines_run.tokenizer
    for prompt in ("", "a", "sophi"):
        a, b = random.Random(9), random.Random(9)
        plain = [sample(model, tok, a, 0.7, prompt) for _ in range(10)]
        limit = model.config.block_size - len(prompt)
        filled = [sample(model, tok, b, 0.7, prompt, max_new_tokens=limit) for _ in range(10)]
        assert plain == filled and a.getstate() == b.getstate()


def test_top_k_1_picks_what_temperature_0_picks(lines_run: Run, text_run: Run) -> None:
    for run, text_mode in ((lines_run, False), (text_run, True)):
        for prompt in ("", "e", "a"):
            greedy = sample(
                run.model,
                run.tokenizer,
                random.Random(0),
                0.0,
                prompt,
                max_new_tokens=12,
                text_mode=text_mode,
            )
            top1 = sample(
                run.model,
                run.tokenizer,
                random.Random(5),
                0.9,
                prompt,
                max_new_tokens=12,
                top_k=1,
                text_mode=text_mode,
            )
            assert top1 == greedy


def test_top_k_draws_only_among_the_k_likeliest() -> None:
    logits = [Value(x) for x in (0.0, 5.0, 1.0, 4.0, 3.0, 4.0)]
    pick = _picker(random.Random(0), 1.0, 2, range(6))
    drawn = {pick(logits) for _ in range(300)}
    assert drawn == {1, 3}  # 3 and 5 tie for second: the first of equals is kept
    everything = _picker(random.Random(0), 1.0, 6, range(6))
    assert len({everything(logits) for _ in range(2000)}) == 6


def test_a_long_prompt_needs_the_sliding_context(lines_run: Run) -> None:
    with pytest.raises(UsageError, match="max_new_tokens N lets the context slide"):
        sample(lines_run.model, lines_run.tokenizer, random.Random(0), 0.5, "isabellaso")


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    data, path = tmp_path / "names.txt", tmp_path / "c.json"
    data.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    train_tiny(data, "--steps", 3, "--out", path)
    return path


def test_a_prompt_file_is_the_prompt(ckpt: Path, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("em\n", encoding="utf-8")  # the line end is not part of a document
    from_file = microgpt_cli("sample", ckpt, "--prompt-file", prompt, "--num", 4, "--seed", 1)
    given = microgpt_cli("sample", ckpt, "--prompt", "em", "--num", 4, "--seed", 1)
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout == given.stdout and from_file.stdout.startswith("em")


def test_bad_prompt_files_are_one_line_errors(ckpt: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.txt"
    assert_one_line_error(
        microgpt_cli("sample", ckpt, "--prompt-file", missing), f"prompt file not found: {missing}"
    )
    binary = tmp_path / "bad.txt"
    binary.write_bytes(b"em\xff")
    assert_one_line_error(
        microgpt_cli("sample", ckpt, "--prompt-file", binary), "line 1, byte 3: not valid UTF-8"
    )
    big = tmp_path / "big.txt"
    big.write_text("e" * 5000, encoding="utf-8")
    assert_one_line_error(
        microgpt_cli("sample", ckpt, "--prompt-file", big, "--max-data-size", "1k"),
        "--max-data-size",
    )
    assert_one_line_error(
        microgpt_cli("sample", ckpt, "--prompt-file", big, "--prompt", "em"),
        "argument --prompt-file: cannot be given together with --prompt",
    )


def test_new_sampling_flags_refuse_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    for flag, value, words in [
        ("--top-k", "0", "argument --top-k: must be at least 1, got 0"),
        ("--max-new-tokens", "0", "argument --max-new-tokens: must be at least 1, got 0"),
        ("--max-new-tokens", "many", "expected a whole number"),
    ]:
        assert cli.main(["sample", "nothing.json", flag, value]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.splitlines()) == 1, err
