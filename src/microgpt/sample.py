"""Sampling: generate documents from a trained model, one character at a time."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from microgpt import no_grad
from microgpt.data import Tokenizer
from microgpt.errors import UsageError
from microgpt.nn import GPT, softmax
from microgpt.settings import Rule, check_settings, setting, shorten

# Below this, a lower temperature only rounds harder to the likeliest character,
# and logits / temperature heads for overflow.
MIN_TEMPERATURE = 1e-6


@dataclass(frozen=True)
class SampleConfig:
    """How to draw samples. The defaults are the original microgpt's."""

    num: int = setting(20, "how many samples to print, one a line", Rule("int", low=0))
    temperature: float = setting(
        0.5,
        f"sampling temperature: 0 picks the likeliest character; else at least {MIN_TEMPERATURE:g}",
        Rule("float", low=MIN_TEMPERATURE, or_zero=True),
    )
    prompt: str = setting("", "start every sample with this text", Rule("text"))

    def __post_init__(self) -> None:
        check_settings(self)


class SamplingFailed(Exception):
    """The model's probabilities are not finite numbers (its weights are out of range)."""


def check_temperature(temperature: float) -> None:
    SampleConfig(temperature=temperature)


def check_prompt(prompt: str, tokenizer: Tokenizer, block_size: int) -> list[int]:
    """The prompt's token ids; it must fit in the context after BOS."""
    for position, ch in enumerate(prompt, start=1):
        if ch not in tokenizer.chars:
            raise UsageError(
                f"prompt {shorten(prompt)!r}: character {ch!r} (position {position}) never "
                f"occurs in the training data, whose characters are {shorten(tokenizer.chars)!r}"
            )
    if len(prompt) > block_size - 1:
        raise UsageError(
            f"prompt {shorten(prompt)!r} has {len(prompt)} characters but at most "
            f"{block_size - 1} fit (block_size {block_size}, one position is taken by the "
            f"start token)"
        )
    return tokenizer.encode(prompt)


def sample(
    model: GPT,
    tokenizer: Tokenizer,
    rng: random.Random,
    temperature: float = 0.5,
    prompt: str = "",
) -> str:
    """One document: starts after BOS (and the prompt, if any), draws each next
    character from softmax(logits / temperature), and stops at BOS or when the
    context is full. The prompt is part of the returned text.

    Temperature 0 is greedy: each next character is the likeliest one (the
    first of equals), and nothing is drawn from `rng`."""
    check_temperature(temperature)
    prompt_ids = check_prompt(prompt, tokenizer, model.config.block_size)
    keys, values = model.new_cache()
    token_id = tokenizer.bos
    out = list(prompt_ids)
    choices = range(tokenizer.vocab_size)
    with no_grad():  # nothing is backpropagated: build no graph
        for pos_id in range(model.config.block_size):
            logits = model(token_id, pos_id, keys, values)
            if pos_id < len(prompt_ids):  # still reading the prompt: no draw
                token_id = prompt_ids[pos_id]
                continue
            if temperature == 0:
                token_id = max(choices, key=lambda i: logits[i].data)
            else:
                probs = softmax([logit / temperature for logit in logits])
                token_id = rng.choices(choices, weights=[p.data for p in probs])[0]
            if token_id == tokenizer.bos:
                break
            out.append(token_id)
    return tokenizer.decode(out)


def samples(
    model: GPT,
    tokenizer: Tokenizer,
    rng: random.Random,
    num: int,
    temperature: float = 0.5,
    prompt: str = "",
) -> Iterator[str]:
    """`num` documents, each yielded as soon as it is drawn.

    Raises SamplingFailed if the model's numbers overflow (only a model with
    absurd weights does that)."""
    for _ in range(num):
        try:
            yield sample(model, tokenizer, rng, temperature, prompt)
        except (ArithmeticError, ValueError) as exc:
            raise SamplingFailed(
                f"sampling failed: the model's probabilities are not finite numbers ({exc}); "
                f"its weights are out of range"
            ) from None


def sample_many(
    model: GPT,
    tokenizer: Tokenizer,
    rng: random.Random,
    num: int,
    temperature: float = 0.5,
    prompt: str = "",
) -> list[str]:
    return list(samples(model, tokenizer, rng, num, temperature, prompt))
