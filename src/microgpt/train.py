"""Training: one document per step, forward, backward, Adam.

A `Run` is the whole state of a training run (model, optimiser moments,
shuffled documents, random stream, step counter): everything a checkpoint
holds, so that a resumed run continues bit for bit.
"""

from __future__ import annotations

import gc
import hashlib
import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from microgpt import no_grad
from microgpt.data import Tokenizer
from microgpt.errors import Name, Text, UsageError
from microgpt.nn import GPT, GPTConfig, Value, cross_entropy, vsum
from microgpt.optim import BETA, POSITIVE, Adam, clip_grad_norm, linear_decay
from microgpt.settings import Rule, check_settings, from_dict, setting

# Beyond this many steps a run would not end in any lifetime; refusing it keeps
# every accepted value one that works to the end.
MAX_STEPS = 10**12


@dataclass(frozen=True)
class TrainConfig:
    """How to train. The defaults are the original microgpt's."""

    steps: int = setting(1000, "training steps, one document each", Rule("int", 1, MAX_STEPS))
    lr: float = setting(0.01, "peak learning rate (decays linearly to 0)", POSITIVE)
    beta1: float = setting(0.85, "Adam beta1", BETA)
    beta2: float = setting(0.99, "Adam beta2", BETA)
    eps: float = setting(1e-8, "Adam epsilon", POSITIVE)
    grad_clip: float | None = setting(
        None,
        "clip the global gradient norm to this",
        Rule("float", low=0.0, low_open=True, optional=True),
    )
    seed: int = setting(42, "random seed (shuffle, weights, samples)", Rule("int"))
    val_fraction: float = setting(
        0.0,
        "hold out this fraction of the documents for validation (0: none, as the original)",
        Rule("float", low=0.0, high=0.5),
    )

    def __post_init__(self) -> None:
        check_settings(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        config: TrainConfig = from_dict(cls, data, "training")
        return config


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
        self.docs = docs  # in training order (shuffled)
        self.rng = rng
        self.train_config = train_config
        self.step = step  # completed steps
        self.val_docs: list[str] = []  # held out (see split_validation)

    @classmethod
    def start(cls, docs: list[str], train_config: TrainConfig, **model_settings: Any) -> Run:
        """A new run, drawing from the seeded random stream in the original's
        order: shuffle the documents, then initialise the weights."""
        rng = random.Random(train_config.seed)
        docs = list(docs)
        rng.shuffle(docs)
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
        changes nothing."""
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

    def val_loss(self) -> float:
        """The mean, over the held-out documents, of each one's loss (the
        quantity a training step reports), computed without a graph."""
        with no_grad():
            total = sum(self.loss(doc).data for doc in self.val_docs)
        return total / len(self.val_docs)

    @staticmethod
    def make_optimizer(model: GPT, train_config: TrainConfig) -> Adam:
        t = train_config
        return Adam(model.params, lr=t.lr, beta1=t.beta1, beta2=t.beta2, eps=t.eps)

    @property
    def done(self) -> bool:
        return self.step >= self.train_config.steps

    def loss(self, doc: str, rng: random.Random | None = None) -> Value:
        """Mean next-token cross-entropy over the document (a `Value`).

        Documents longer than the context are cut to its length, as in the
        original: only the first `block_size` predictions are trained on.
        """
        model = self.model
        tokens = self.tokenizer.encode_document(doc)
        n = min(model.config.block_size, len(tokens) - 1)
        keys, values = model.new_cache()
        losses = []
        for pos_id in range(n):
            token_id, target_id = tokens[pos_id], tokens[pos_id + 1]
            logits = model(token_id, pos_id, keys, values, rng)
            losses.append(cross_entropy(logits, target_id))
        return (1 / n) * vsum(losses)

    def train_step(self, inspect: Callable[[Run], None] | None = None) -> float:
        """Train on the next document; returns the step's loss. `inspect`, if
        given, is called between backward() and the update, when every
        weight's gradient is this step's (the update resets them).

        If the loss or a gradient is NaN or infinite, raises `NonFiniteLoss`
        and changes nothing (weights, moments, random stream, step), so the
        run still holds its last good state.
        """
        t = self.train_config
        step = self.step
        doc = self.docs[step % len(self.docs)]
        dropout_rng = self.rng if self.model.config.dropout > 0.0 else None
        rng_state = self.rng.getstate() if dropout_rng is not None else None

        def undo(reason: str, loss: float = math.inf) -> NonFiniteLoss:
            for p in self.model.params:
                p.grad = 0.0
            if rng_state is not None:  # dropout masks were drawn for nothing
                self.rng.setstate(rng_state)
            return NonFiniteLoss(step + 1, loss, reason)

        with no_cyclic_gc():
            try:
                loss = self.loss(doc, dropout_rng)
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
                self.optimizer.step(step, linear_decay(t.lr, step, t.steps))
            except FloatingPointError as exc:  # refused before changing anything
                raise undo(f"{exc} (the loss was {loss.data!r})", loss.data) from None
            loss_value: float = loss.data
            del loss  # free this step's graph while the collector is paused
        self.step = step + 1
        return loss_value

    def lr_at(self, step: int) -> float:
        """Learning rate used by (0-based) `step`."""
        return linear_decay(self.train_config.lr, step, self.train_config.steps)


def truncation_note(docs: list[str], block_size: int) -> Text:
    """A note on documents that do not fit in the context (empty if none)."""
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
