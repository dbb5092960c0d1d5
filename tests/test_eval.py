"""`microgpt eval`: the mean loss per predicted character and bits per
character of a checkpoint on a file, or on its run's validation split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import DOCS, REPO_ROOT, TINY, assert_one_line_error, microgpt_cli, train_tiny

from microgpt import checkpoint
from microgpt.evaluate import evaluate
from microgpt.train import token_losses

PROSE = REPO_ROOT / "tests" / "data" / "prose.txt"


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A text-mode run with a validation split, and its final val-loss line."""
    path = tmp_path_factory.mktemp("eval") / "text.json"
    made = train_tiny(PROSE, "--data-mode", "text", "--steps", 20, "--val-fraction", 0.1,
                      "--out", path)  # fmt: skip
    return path, made.stderr


def test_eval_of_the_validation_split_is_the_runs_val_loss(text_ckpt: tuple[Path, str]) -> None:
    path, trained = text_ckpt
    result = microgpt_cli("eval", path, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["data_mode"] == "text" and "validation split" in report["data"]
    assert f"val loss {report['loss']:.4f}" in trained  # what training printed
    assert report["bits_per_character"] == report["loss"] / math.log(2)
    held_out = int(0.1 * len(PROSE.read_text(encoding="utf-8")))
    assert report["predicted"] == held_out - 1  # every character after the first, once
    plain = microgpt_cli("eval", path)
    assert f"loss {report['loss']:.4f} nats per character" in plain.stdout
    assert f"{report['bits_per_character']:.4f} bits per character" in plain.stdout


def test_eval_of_a_file_in_lines_mode_is_the_mean_per_predicted_character(
    tmp_path: Path,
) -> None:
    data, path = tmp_path / "names.txt", tmp_path / "c.json"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    made = microgpt_cli("train", "--data", data, *TINY, "--steps", 5, "--out", path, "--samples", 0)
    assert made.returncode == 0, made.stderr
    other = tmp_path / "other.txt"
    other.write_text("bonnie\nclara\n\nivan\n", encoding="utf-8")
    ckpt = checkpoint.load(path)
    model, tok = ckpt.model(), ckpt.tokenizer
    losses = [
        x.data
        for doc in ("bonnie", "clara", "ivan")
        for x in token_losses(model, tok.encode_document(doc))
    ]
    result = evaluate(ckpt, ["bonnie", "clara", "ivan"], "lines", "other")
    assert result.predicted == len(losses) == 7 + 6 + 5  # the end token counts
    assert result.loss == pytest.approx(sum(losses) / len(losses), rel=1e-12)
    cli = json.loads(microgpt_cli("eval", path, "--data", other, "--json").stdout)
    assert cli["loss"] == result.loss and cli["sequences"] == 3


def test_eval_refusals_are_one_line(text_ckpt: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = text_ckpt
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("The ferry\nleaves at 7 o'clock\n", encoding="utf-8")
    assert_one_line_error(
        microgpt_cli("eval", path, "--data", foreign),
        "foreign.txt: line 2, character 11: '7' is not in the model's vocabulary",
    )
    names = tmp_path / "names.txt"
    names.write_text("The\n\nferry 7\n", encoding="utf-8")  # the blank line is no document
    assert_one_line_error(
        microgpt_cli("eval", path, "--data", names, "--data-mode", "lines"),
        "names.txt: document 2 ('ferry 7'), character 7: '7' is not in the model's vocabulary",
    )
    assert_one_line_error(
        microgpt_cli("eval", path, "--data-mode", "lines"),
        "--data-mode lines: the run's validation split is read in the run's mode (text)",
    )
    assert_one_line_error(
        microgpt_cli("eval", path, "--data-mode", "words"),
        "argument --data-mode: must be one of lines, text, got 'words'",
    )
    assert_one_line_error(microgpt_cli("eval", tmp_path / "none.json"), "checkpoint not found")


def test_eval_needs_a_split_or_a_file(tmp_path: Path) -> None:
    data, path = tmp_path / "names.txt", tmp_path / "c.json"
    data.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    train_tiny(data, "--steps", 2, "--out", path, "--val-fraction", 0.2)
    assert microgpt_cli("eval", path).returncode == 0
    data.write_text("\n".join(DOCS[:-1]) + "\n", encoding="utf-8")  # the data changed since
    assert_one_line_error(microgpt_cli("eval", path), "has changed since it was trained")
    plain = tmp_path / "plain.json"
    train_tiny(data, "--steps", 2, "--out", plain)
    assert_one_line_error(microgpt_cli("eval", plain), "the run held out nothing for validation")
