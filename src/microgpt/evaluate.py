"""`microgpt eval`: how well a checkpoint predicts a file.

The measure is the mean loss per predicted character (cross-entropy, in
nats) and the same in bits per character (loss / ln 2), over a file's
documents (lines mode: each from its start, its end token included, cut to
the context as training cuts it) or over a text cut into consecutive
windows of the context (text mode). By default the data is the run's own
validation split. The model runs without a graph (`no_grad`), one document
or window at a time; the file is read within the same cap as training data.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from microgpt import checkpoint
from microgpt import settings as st
from microgpt.console import Console
from microgpt.data import Tokenizer, describe_source, load_data
from microgpt.errors import Name, UsageError
from microgpt.files import show
from microgpt.limits import Limits
from microgpt.train import TrainConfig, documents_fingerprint, evaluation_sequences, mean_loss

EVAL_LIMITS = ("max_checkpoint_size", "max_data_size", "download_timeout")


@dataclass(frozen=True)
class Evaluation:
    """A checkpoint's loss on some data."""

    checkpoint: str
    data: str  # the file, or the run's validation split
    data_mode: str
    loss: float  # mean nats per predicted character
    bits_per_character: float  # loss / ln 2
    predicted: int  # characters (and, in lines mode, document ends) predicted
    sequences: int  # documents or windows read

    def line(self) -> str:
        unit = "windows" if self.data_mode == "text" else "documents"
        return (
            f"{show(self.checkpoint)} on {self.data} ({self.data_mode} mode, {self.sequences:,} "
            f"{unit}, {self.predicted:,} characters predicted): loss {self.loss:.4f} nats "
            f"per character, {self.bits_per_character:.4f} bits per character"
        )


def evaluate(ckpt: checkpoint.Checkpoint, docs: list[str], data_mode: str, data: str) -> Evaluation:
    """The checkpoint's model on `docs` (lines mode) or [a text] (text mode);
    `data` names them in the result."""
    tokenizer, block_size = ckpt.tokenizer, ckpt.model_config.block_size
    check_vocabulary(docs, tokenizer, data, data_mode)
    sequences = evaluation_sequences(docs, tokenizer, data_mode, block_size)
    loss, predicted = mean_loss(ckpt.model(), sequences)
    if data_mode == "text":
        count = sum(len(range(0, len(text) - 1, block_size)) for text in docs)
    else:
        count = len(docs)
    return Evaluation(ckpt.path, data, data_mode, loss, loss / math.log(2), predicted, count)


def check_vocabulary(docs: list[str], tokenizer: Tokenizer, data: str, data_mode: str) -> None:
    """Refuse data with a character the model has no token for, naming where."""
    known = set(tokenizer.chars)
    for number, doc in enumerate(docs, start=1):
        unknown = set(doc) - known
        if not unknown:
            continue
        index = min(doc.index(ch) for ch in unknown)
        if data_mode == "text":
            line = doc.count("\n", 0, index) + 1
            where = f"line {line}, character {index - (doc.rfind(chr(10), 0, index) + 1) + 1}"
        else:
            # blank lines are no documents: the document itself says which it is
            where = f"document {number} ({st.shorten(doc, 40)!r}), character {index + 1}"
        raise UsageError(
            f"{data}: {where}: {doc[index]!r} is not in the model's vocabulary "
            f"({st.shorten(tokenizer.chars)!r}); the model cannot predict it"
        )
    if data_mode == "text" and not any(len(text) > 1 for text in docs):
        raise UsageError(f"{data}: a text needs at least two characters to predict one")


DATA = Name("data")  # where the data to measure comes from


def validation_split(ckpt: checkpoint.Checkpoint, limits: Limits) -> tuple[list[str], str]:
    """The run's held-out documents (or end of text), re-read from its data."""
    config: TrainConfig = ckpt.train_config
    where = show(ckpt.path)
    if not config.val_fraction:
        raise UsageError(
            f"{where}: the run held out nothing for validation (trained without ",
            Name("val_fraction"),
            "); give the data to measure with ",
            DATA,
            " FILE",
        )
    source = ckpt.data["source"]
    try:
        docs = load_data(source, limits, config.data_mode)
    except UsageError as exc:
        raise UsageError(
            f"{where}: cannot read the run's data ({exc}); give it with ", DATA, " FILE"
        ) from None
    if documents_fingerprint(docs) != ckpt.data["sha256"]:
        raise UsageError(
            f"{where}: the run's data ({describe_source(source)}) has changed since it was "
            "trained, so its validation split is gone; give the data with ",
            DATA,
            " FILE",
        )
    held_out = ckpt.run(docs).val_docs
    return held_out, f"the validation split of {describe_source(source)}"


# --- the command line ---------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    """Add `microgpt eval` to the `microgpt` parser."""
    e = subparsers.add_parser(
        "eval",
        help="a checkpoint's loss and bits per character on a file",
        description="The mean loss per predicted character (nats) and bits per character "
        "(loss / ln 2) of a checkpoint's model over a file's documents or windows "
        "(default: the run's own validation split).",
    )
    e.add_argument("checkpoint", metavar="CKPT", help="a checkpoint saved by `microgpt train`")
    e.add_argument("--data", help="a file or http(s) URL (default: the run's validation split)")
    st.add_flags(e, TrainConfig, only=["data_mode"], unset_default=True)
    e.add_argument("--json", action="store_true", help="print the result as a JSON object")
    st.add_flags(e.add_argument_group("limits"), Limits, only=EVAL_LIMITS)
    e.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace, console: Console) -> int:
    limits = Limits(**{name: getattr(args, name) for name in EVAL_LIMITS})
    ckpt = checkpoint.load(args.checkpoint, limits)
    mode = args.data_mode or ckpt.train_config.data_mode
    if args.data is None:
        if args.data_mode not in (None, ckpt.train_config.data_mode):
            raise UsageError(
                f"--data-mode {args.data_mode}: the run's validation split is read in the "
                f"run's mode ({ckpt.train_config.data_mode}); give a file with --data"
            )
        docs, data = validation_split(ckpt, limits)
    else:
        docs, data = load_data(args.data, limits, mode), describe_source(args.data)
    result = evaluate(ckpt, docs, mode, data)
    console.result(json.dumps(asdict(result)) if args.json else result.line())
    return 0
