"""Sampling: generate documents from a trained model, one character at a time."""

from __future__ import annotations

import random

from microgpt.backend import engine
from microgpt.data import Tokenizer
from microgpt.errors import UsageError
from microgpt.nn import GPT, softmax

no_grad = engine.no_grad


def check_temperature(temperature: float) -> None:
    if not temperature > 0.0:
        raise UsageError(f"temperature must be positive, got {temperature!r}")


def check_prompt(prompt: str, tokenizer: Tokenizer, block_size: int) -> list[int]:
    """The prompt's token ids; it must fit in the context after BOS."""
    for position, ch in enumerate(prompt, start=1):
        if ch not in tokenizer.chars:
            raise UsageError(
                f"prompt {prompt!r}: character {ch!r} (position {position}) never occurs in "
                f"the training data, whose characters are {_shorten(tokenizer.chars)!r}"
            )
    if len(prompt) > block_size - 1:
        raise UsageError(
            f"prompt {prompt!r} has {len(prompt)} characters but at most {block_size - 1} fit "
            f"(block_size {block_size}, one position is taken by the start token)"
        )
    return tokenizer.encode(prompt)


def _shorten(text: str, limit: int = 80) -> str:
    """`text`, cut with an ellipsis if long, so an error message stays one line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sample(
    model: GPT,
    tokenizer: Tokenizer,
    rng: random.Random,
    temperature: float = 0.5,
    prompt: str = "",
) -> str:
    """One document: starts after BOS (and the prompt, if any), draws each next
    character from softmax(logits / temperature), and stops at BOS or when the
    context is full. The prompt is part of the returned text."""
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
            probs = softmax([logit / temperature for logit in logits])
            token_id = rng.choices(choices, weights=[p.data for p in probs])[0]
            if token_id == tokenizer.bos:
                break
            out.append(token_id)
    return tokenizer.decode(out)


def sample_many(
    model: GPT,
    tokenizer: Tokenizer,
    rng: random.Random,
    num: int,
    temperature: float = 0.5,
    prompt: str = "",
) -> list[str]:
    return [sample(model, tokenizer, rng, temperature, prompt) for _ in range(num)]
