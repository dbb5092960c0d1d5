"""Training: a batch of documents (or of windows of a text) per step,
forward, backward, Adam.

A `Run` is the whole state of a training run (model, optimiser moments,
shuffled documents, random stream, step counter): everything a checkpoint
holds, so that a resumed run continues bit for bit.

Two ways to read the data (`data_mode`): "lines", the original's, one
document per line, each trained on from its start (BOS, characters, BOS);
and "text", one stream of characters, trained on windows of block_size + 1
characters at offsets drawn from the run's random stream, as nanoGPT does.
"""

from __future__ import annotations

import gc
import hashlib
import math
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from microgpt import no_grad
from microgpt.data import DATA_MODES, Tokenizer, random_window, text_windows
from microgpt.errors import Name, Text, UsageError
from microgpt.nn import GPT, GPTConfig, Value, cross_entropy, vsum
from microgpt.optim import SCHEDULES, Adam, AdamConfig, clip_grad_norm, scheduled_lr
from microgpt.settings import Rule, SettingError, setting

# Beyond this many steps a run would not end in any lifetime; refusing it keeps
# every accepted value one that works to the end.
MAX_STEPS = 10**12


@dataclass(frozen=True)
class TrainConfig(AdamConfig):
    """How to train. The defaults are the original microgpt's. Adam's
    settings (lr, beta1, ...) come first, declared in `AdamConfig`."""

    what = "training"

    steps: int = setting(1000, "training steps, one batch each", Rule("int", 1, MAX_STEPS))
    lr_schedule: str = setting(
        "linear",
        "learning rate after warm-up: linear to --min-lr (the original's), cosine, constant",
        Rule("choice", choices=SCHEDULES),
    )
    warmup_steps: int = setting(
        0, "steps the learning rate rises over first (below --steps)", Rule("int", low=0)
    )
    min_lr: float = setting(
        0.0, "learning rate the schedule ends at (at most --lr)", Rule("float", low=0.0)
    )
    batch_size: int = setting(
        1, "documents (or windows) per step; the step's loss is their mean", Rule("int", low=1)
    )
    data_mode: str = setting(
        "lines",
        "lines: a document per line (the original's); text: one stream of characters, "
        "trained on windows of block_size + 1",
        Rule("choice", choices=DATA_MODES),
    )
    grad_clip: float | None = setting(
        None,
        "clip the global gradient norm to this",
        Rule("float", low=0.0, low_open=True, optional=True),
    )
    seed: int = setting(42, "random seed (shuffle, weights, samples)", Rule("int"))
    val_fraction: float = setting(
        0.0,
        "hold out this fraction of the documents (text: the end of the text) for validation "
        "(0: none, as the original)",
        Rule("float", low=0.0, high=0.5),
    )

    def check(self) -> None:
        if self.warmup_steps >= self.steps:
            raise SettingError(
                "warmup_steps",
                f"must be below steps ({self.steps}), got {self.warmup_steps}",
                "steps",
            )
        if self.min_lr > self.lr:
            raise SettingError(
                "min_lr", f"must be at most lr ({self.lr:g}), got {self.min_lr:g}", "lr"
            )

    @property
    def text_mode(self) -> bool:
        return self.data_mode == "text"

    def lr_at(self, step: int) -> float:
        """The learning rate of (0-based) `step`."""
        return scheduled_lr(
            self.lr_schedule, self.lr, step, self.steps, self.warmup_steps, self.min_lr
        )

    def extended(self, steps: int, done: int) -> TrainConfig:
        """These settings with `steps` in all, for a run with `done` steps done:
        a run can be made longer (the schedule then runs over the new total
        from the next step on), never shorter."""
        if steps < self.steps:
            raise SettingError(
                "steps",
                f"can only be raised on resuming: the run has {self.steps} steps "
                f"({done} done), got {steps}",
            )
        return replace(self, steps=steps)


class NonFiniteLoss(Exception):
    """A step's loss or gradients are NaN or infinite; the step was not applied."""

    def __init__(self, step: int, loss: float, reason: str = "") -> None:
        what = f"the loss became {loss!r}" if not reason else reason
        super().__init__(f"{what} at step {step}; training stopped")
        self.step = step
        self.loss = loss


def documents_fingerprint(docs: list[str]) -> str:
    """sha256 of the documents in file order: says whether two datasets match."""
    return hashlib.sha256("\n".join(docs).encode("utf-8")).hexdigest()


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector.

    The graph of a step has no reference cycles, so reference counting frees
    it; the collector would only rescan its tens of thousands of nodes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def in_training_order(docs: list[str], config: TrainConfig, rng: random.Random) -> list[str]:
    """The documents in the order a run trains on them: lines shuffled with
    `rng` (the original's first draw from its stream); a text is one stream,
    kept as it is (and draws nothing)."""
    docs = list(docs)
    if not config.text_mode:
        rng.shuffle(docs)
    return docs


class Run:
    """A training run: model, optimiser, data order and random stream."""

    def __init__(
        self,
        model: GPT,
        optimizer: Adam,
        tokenizer: Tokenizer,
        docs: list[str],
        rng: random.Random,
        train_config: TrainConfig,
        step: int = 0,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.tokenizer = tokenizer
        # lines: the documents in training order (shuffled); text: [the text]
        self.docs = docs
        self.rng = rng
        self.train_config = train_config
        self.step = step  # completed steps
        self.val_docs: list[str] = []  # held out (see split_validation)

    @classmethod
    def start(cls, docs: list[str], train_config: TrainConfig, **model_settings: Any) -> Run:
        """A new run, drawing from the seeded random stream in the original's
        order: shuffle the documents, then initialise the weights. In text
        mode `docs` is [the text]."""
        rng = random.Random(train_config.seed)
        docs = in_training_order(docs, train_config, rng)
        tokenizer = Tokenizer.from_documents(docs)
        config = GPTConfig(vocab_size=tokenizer.vocab_size, **model_settings)
        model = GPT(config, rng)
        optimizer = cls.make_optimizer(model, train_config)
        run = cls(model, optimizer, tokenizer, docs, rng, train_config)
        run.split_validation()
        return run

    def split_validation(self) -> None:
        """Hold out the last `val_fraction` of the shuffled documents (at least
        one, if any is asked for) for validation; train on the rest. The same
        seed holds out the same documents, and a fraction of 0 (the default)
        changes nothing. In text mode the end of the text is held out (at
        least two characters: one prediction), as nanoGPT does."""
        if self.train_config.text_mode:
            self._split_text()
            return
        fraction = self.train_config.val_fraction
        if not fraction:
            return
        held_out = max(1, int(fraction * len(self.docs)))
        if held_out >= len(self.docs):
            raise UsageError(
                Name("val_fraction"),
                f" {fraction:g} leaves no training documents (there are {len(self.docs)})",
            )
        self.docs, self.val_docs = self.docs[:-held_out], self.docs[-held_out:]

    def _split_text(self) -> None:
        text, fraction = self.docs[0], self.train_config.val_fraction
        held_out = max(2, int(fraction * len(text))) if fraction else 0
        need = self.model.config.block_size + 1
        if len(text) - held_out < need:
            kept = f" after holding out {held_out:,} for validation" if held_out else ""
            raise UsageError(
                f"text mode: the text has {len(text) - held_out:,} characters{kept}; a window "
                f"needs block_size + 1 = {need} (a smaller ",
                Name("block_size"),
                " or a longer text)",
            )
        if held_out:
            self.docs, self.val_docs = [text[:-held_out]], [text[-held_out:]]

    def val_loss(self) -> float:
        """The validation loss, computed without a graph: in lines mode the
        mean over the held-out documents of each one's loss (the quantity a
        training step reports); in text mode the mean loss per predicted
        character of the held-out text (see `mean_loss`)."""
        if self.train_config.text_mode:
            return mean_loss(self.model, self.sequences(self.val_docs))[0]
        with no_grad():
            total = sum(self.loss(doc).data for doc in self.val_docs)
        return total / len(self.val_docs)

    def sequences(self, docs: Iterable[str]) -> Iterator[list[int]]:
        """The token sequences an evaluation reads (see `evaluation_sequences`)."""
        return evaluation_sequences(
            docs, self.tokenizer, self.train_config.data_mode, self.model.config.block_size
        )

    def held_out(self) -> str:
        """What is held out, in words: "40 documents", "1,234 characters"."""
        if self.train_config.text_mode:
            return f"{sum(map(len, self.val_docs)):,} characters"
        return f"{len(self.val_docs)} documents"

    @staticmethod
    def make_optimizer(model: GPT, train_config: TrainConfig) -> Adam:
        return Adam(model.params, train_config)

    @property
    def done(self) -> bool:
        return self.step >= self.train_config.steps

    def loss(self, doc: str, rng: random.Random | None = None) -> Value:
        """Mean next-token cross-entropy over the document (a `Value`).

        Documents longer than the context are cut to its length, as in the
        original: only the first `block_size` predictions are trained on.
        """
        return self.sequence_loss(self.tokenizer.encode_document(doc), rng)

    def sequence_loss(self, tokens: list[int], rng: random.Random | None = None) -> Value:
        """Mean cross-entropy of predicting each token from those before it."""
        losses = token_losses(self.model, tokens, rng)
        return (1 / len(losses)) * vsum(losses)

    def window_loss(self, window: str, rng: random.Random | None = None) -> Value:
        """Mean cross-entropy of predicting each character of a text window
        (text mode) from those before it."""
        return self.sequence_loss(self.tokenizer.encode(window), rng)

    def batch(self, step: int) -> list[str]:
        """What (0-based) `step` trains on, in order. Lines: the next
        `batch_size` documents, cycling; text: `batch_size` windows at offsets
        drawn from the run's random stream."""
        size = self.train_config.batch_size
        if self.train_config.text_mode:
            block_size = self.model.config.block_size
            return [random_window(self.docs[0], block_size, self.rng) for _ in range(size)]
        docs = self.docs
        return [docs[(step * size + i) % len(docs)] for i in range(size)]

    def batch_loss(self, step: int, rng: random.Random | None = None) -> Value:
        """The loss of (0-based) `step`: the mean of its documents' (or
        windows') losses; a batch of one is that one's own loss."""
        loss_of = self.window_loss if self.train_config.text_mode else self.loss
        losses = [loss_of(item, rng) for item in self.batch(step)]
        return losses[0] if len(losses) == 1 else (1 / len(losses)) * vsum(losses)

    def train_step(self, inspect: Callable[[Run], None] | None = None) -> float:
        """Train on the next batch; returns the step's loss. `inspect`, if
        given, is called between backward() and the update, when every
        weight's gradient is this step's (the update resets them).

        If the loss or a gradient is NaN or infinite, raises `NonFiniteLoss`
        and changes nothing (weights, moments, random stream, step), so the
        run still holds its last good state.
        """
        t = self.train_config
        step = self.step
        dropout_rng = self.rng if self.model.config.dropout > 0.0 else None
        draws = dropout_rng is not None or t.text_mode  # windows are drawn too
        rng_state = self.rng.getstate() if draws else None

        def undo(reason: str, loss: float = math.inf) -> NonFiniteLoss:
            for p in self.model.params:
                p.grad = 0.0
            if rng_state is not None:  # dropout masks and windows were drawn for nothing
                self.rng.setstate(rng_state)
            return NonFiniteLoss(step + 1, loss, reason)

        with no_cyclic_gc():
            try:
                loss = self.batch_loss(step, dropout_rng)
            except (ArithmeticError, ValueError) as exc:
                # log(0), exp() overflowing: Python raises where the loss is infinite
                raise undo(f"the loss became infinite ({exc})") from None
            if not math.isfinite(loss.data):
                raise undo("", loss.data)
            loss.backward()
            if inspect is not None:
                inspect(self)
            if t.grad_clip is not None:
                clip_grad_norm(self.model.params, t.grad_clip)
            try:
                self.optimizer.step(step, t.lr_at(step))
            except FloatingPointError as exc:  # refused before changing anything
                raise undo(f"{exc} (the loss was {loss.data!r})", loss.data) from None
            loss_value: float = loss.data
            del loss  # free this step's graph while the collector is paused
        self.step = step + 1
        return loss_value

    def lr_at(self, step: int) -> float:
        """Learning rate used by (0-based) `step`."""
        return self.train_config.lr_at(step)


def token_losses(model: GPT, tokens: list[int], rng: random.Random | None = None) -> list[Value]:
    """The cross-entropy of predicting each of `tokens` from those before it,
    over at most the context: the first `block_size` predictions."""
    n = min(model.config.block_size, len(tokens) - 1)
    keys, values = model.new_cache()
    losses = []
    for pos_id in range(n):
        token_id, target_id = tokens[pos_id], tokens[pos_id + 1]
        logits = model(token_id, pos_id, keys, values, rng)
        losses.append(cross_entropy(logits, target_id))
    return losses


def evaluation_sequences(
    docs: Iterable[str], tokenizer: Tokenizer, mode: str, block_size: int
) -> Iterator[list[int]]:
    """What an evaluation predicts: each document from its start (lines),
    or each text cut into consecutive windows of block_size + 1 characters
    that overlap by one, so that every character after the first is
    predicted once (text)."""
    for doc in docs:
        if mode == "text":
            for window in text_windows(doc, block_size):
                yield tokenizer.encode(window)
        else:
            yield tokenizer.encode_document(doc)


def mean_loss(model: GPT, sequences: Iterable[list[int]]) -> tuple[float, int]:
    """The mean loss per predicted token over `sequences` (in nats), and how
    many tokens were predicted; computed without a graph, a sequence at a
    time."""
    total, count = 0.0, 0
    with no_grad():
        for tokens in sequences:
            for loss in token_losses(model, tokens):
                total += loss.data
                count += 1
    return (total / count if count else math.nan), count


def truncation_note(docs: list[str], block_size: int, text_mode: bool = False) -> Text:
    """A note on documents that do not fit in the context (empty if none). (A
    text is read in windows of the context: nothing is cut.)"""
    if text_mode:
        return Text()
    too_long = [d for d in docs if len(d) >= block_size]
    if not too_long:
        return Text()
    longest = max(len(d) for d in too_long)
    return Text(
        f"note: {len(too_long)} of {len(docs)} documents have {block_size} or more characters "
        f"(longest {longest}) and are truncated, as in the original: training predicts only "
        f"their first {block_size} characters, never where they end (a ",
        Name("block_size"),
        f" of {longest + 1} would fit them all)",
    )
