"""Sampling: generate text from a trained model, one character at a time.

In lines mode (the original's) a sample is a document: it starts after BOS
(and the prompt) and ends at BOS or when the context is full. In text mode
it continues the prompt (or a newline) for a number of characters. Past
the context, the context slides: the model sees the last `block_size`
tokens, as nanoGPT's generate does.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from microgpt import checkpoint, no_grad
from microgpt import settings as st
from microgpt.console import Console
from microgpt.data import Tokenizer, decode_text
from microgpt.errors import Name, UsageError
from microgpt.files import read_capped, show
from microgpt.limits import Limits
from microgpt.nn import GPT, Vector, softmax
from microgpt.settings import Rule, SettingError, Settings, setting, shorten
from microgpt.train import TrainConfig

# Below this, a lower temperature only rounds harder to the likeliest character,
# and logits / temperature heads for overflow.
MIN_TEMPERATURE = 1e-6
TEXT_SEPARATOR = "---"  # printed between samples in text mode (they span lines)


@dataclass(frozen=True)
class SampleConfig(Settings):
    """How to draw samples. The defaults are the original microgpt's."""

    what = "sampling"

    num: int = setting(20, "how many samples to print", Rule("int", low=0))
    temperature: float = setting(
        0.5,
        f"sampling temperature: 0 picks the likeliest character; else at least {MIN_TEMPERATURE:g}",
        Rule("float", low=MIN_TEMPERATURE, or_zero=True),
    )
    prompt: str = setting("", "start every sample with this text", Rule("text"))
    prompt_file: str = setting("", "start every sample with the text of this file", Rule("text"))
    max_new_tokens: int | None = setting(
        None,
        "characters to draw (off: lines mode until the end token or a full context, text "
        "mode block_size); past the context it slides",
        Rule("int", low=1, optional=True),
    )
    top_k: int | None = setting(
        None,
        "draw only among the K likeliest characters (1: as temperature 0)",
        Rule("int", low=1, optional=True),
    )

    def check(self) -> None:
        if self.prompt and self.prompt_file:
            raise SettingError(
                "prompt_file", "cannot be given together with prompt (give one)", "prompt"
            )


class SamplingFailed(Exception):
    """The model's probabilities are not finite numbers (its weights are out of range)."""


def check_temperature(temperature: float) -> None:
    SampleConfig(temperature=temperature)


def read_prompt(config: SampleConfig, cap: int, text_mode: bool) -> str:
    """The prompt: `config.prompt`, or the text of `config.prompt_file`
    (read up to `cap` bytes; in lines mode without its surrounding white
    space, as a document is read)."""
    if not config.prompt_file:
        return config.prompt
    raw = read_capped(config.prompt_file, cap, "prompt file", "max_data_size")
    text = decode_text(raw, show(config.prompt_file))
    return text if text_mode else text.strip()


def check_prompt(
    prompt: str, tokenizer: Tokenizer, block_size: int, slides: bool = False
) -> list[int]:
    """The prompt's token ids. Unless the context `slides`, it must fit in
    the context after BOS."""
    for position, ch in enumerate(prompt, start=1):
        if ch not in tokenizer.chars:
            raise UsageError(
                f"prompt {shorten(prompt)!r}: character {ch!r} (position {position}) never "
                f"occurs in the training data, whose characters are {shorten(tokenizer.chars)!r}"
            )
    if len(prompt) > block_size - 1 and not slides:
        raise UsageError(
            f"prompt {shorten(prompt)!r} has {len(prompt)} characters but at most "
            f"{block_size - 1} fit (block_size {block_size}, one position is taken by the "
            "start token; ",
            Name("max_new_tokens"),
            " N lets the context slide past it)",
        )
    return tokenizer.encode(prompt)


def sample(
    model: GPT,
    tokenizer: Tokenizer,
    rng: random.Random,
    temperature: float = 0.5,
    prompt: str = "",
    *,
    top_k: int | None = None,
    max_new_tokens: int | None = None,
    text_mode: bool = False,
) -> str:
    """One sample: the prompt and what the model writes after it.

    Each next character is drawn from softmax(logits / temperature) (over the
    `top_k` likeliest, if given). Temperature 0 is greedy: the likeliest one
    (the first of equals), and nothing is drawn from `rng`. Lines mode
    starts after BOS and stops at BOS, after `max_new_tokens` characters or,
    by default, when the context is full (the original's sampling); text
    mode starts from the prompt (or a newline), never draws BOS, and writes
    `max_new_tokens` characters (default: block_size)."""
    check_temperature(temperature)
    block_size = model.config.block_size
    slides = text_mode or max_new_tokens is not None
    prompt_ids = check_prompt(prompt, tokenizer, block_size, slides)
    if text_mode:
        context = prompt_ids or _newline(tokenizer)
        limit = max_new_tokens or block_size
        candidates: Sequence[int] = range(len(tokenizer.chars))  # every token but BOS
    else:
        context = [tokenizer.bos, *prompt_ids]
        limit = max_new_tokens if max_new_tokens is not None else block_size - len(prompt_ids)
        candidates = range(tokenizer.vocab_size)
    pick = _picker(rng, temperature, top_k, candidates)
    with no_grad():  # nothing is backpropagated: build no graph
        new = generate(model, context, limit, pick, stop=None if text_mode else tokenizer.bos)
    return tokenizer.decode(prompt_ids + new)


def prepare_prompt(
    config: SampleConfig, tokenizer: Tokenizer, block_size: int, text_mode: bool, cap: int
) -> str:
    """The prompt of `config` (read from its file, if one is given), checked
    against the model before anything is drawn or trained."""
    prompt = read_prompt(config, cap, text_mode)
    check_prompt(prompt, tokenizer, block_size, text_mode or config.max_new_tokens is not None)
    if text_mode and not prompt:
        _newline(tokenizer)
    return prompt


def _newline(tokenizer: Tokenizer) -> list[int]:
    if "\n" not in tokenizer.chars:
        raise UsageError("the text has no newline to start a sample from: give a prompt")
    return tokenizer.encode("\n")


def _picker(
    rng: random.Random, temperature: float, top_k: int | None, candidates: Sequence[int]
) -> Callable[[Vector], int]:
    def pick(logits: Vector) -> int:
        choices = candidates
        if top_k is not None and top_k < len(candidates):
            # the k likeliest; sorted() keeps equals in order, so the first of equals leads
            choices = sorted(candidates, key=lambda i: -logits[i].data)[:top_k]
        if temperature == 0 or len(choices) == 1:
            return max(choices, key=lambda i: logits[i].data)
        probs = softmax([logits[i] / temperature for i in choices])
        return rng.choices(choices, weights=[p.data for p in probs])[0]

    return pick


def generate(
    model: GPT, context: list[int], limit: int, pick: Callable[[Vector], int], stop: int | None
) -> list[int]:
    """Up to `limit` tokens drawn after `context` with `pick`, ending early
    at `stop`. The model sees at most the last block_size tokens: once the
    context is full, each new token rebuilds the cache over the last
    block_size (positions restart at 0), as nanoGPT crops its input."""
    block_size = model.config.block_size
    context = list(context)
    new: list[int] = []
    keys, values = model.new_cache()
    first, fed = 0, 0  # context[first:fed] is in the cache, at positions 0, 1, ...
    while len(new) < limit:
        if len(context) - first > block_size:
            first = len(context) - block_size
            keys, values = model.new_cache()
            fed = first
        for i in range(fed, len(context)):
            logits = model(context[i], i - first, keys, values)
        fed = len(context)
        token_id = pick(logits)
        if token_id == stop:
            break
        context.append(token_id)
        new.append(token_id)
    return new


def samples(
    model: GPT,
    tokenizer: Tokenizer,
    rng: random.Random,
    num: int,
    temperature: float = 0.5,
    prompt: str = "",
    **options: Any,
) -> Iterator[str]:
    """`num` samples, each yielded as soon as it is drawn (`options`: those
    of `sample`).

    Raises SamplingFailed if the model's numbers overflow (only a model with
    absurd weights does that)."""
    for _ in range(num):
        try:
            yield sample(model, tokenizer, rng, temperature, prompt, **options)
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
    **options: Any,
) -> list[str]:
    return list(samples(model, tokenizer, rng, num, temperature, prompt, **options))


def printed(
    model: GPT,
    tokenizer: Tokenizer,
    rng: random.Random,
    config: SampleConfig,
    prompt: str,
    text_mode: bool,
) -> Iterator[str]:
    """What `train` and `sample` print: each sample (a line in lines mode;
    in text mode samples span lines, so a separator comes between them)."""
    options = {"top_k": config.top_k, "max_new_tokens": config.max_new_tokens}
    drawn = samples(
        model,
        tokenizer,
        rng,
        config.num,
        config.temperature,
        prompt,
        text_mode=text_mode,
        **options,
    )
    for i, text in enumerate(drawn):
        if text_mode and i:
            yield TEXT_SEPARATOR
        yield text


# --- the command line ---------------------------------------------------------------

SAMPLE_LIMITS = ("max_checkpoint_size", "max_memory", "max_data_size")  # data: --prompt-file


def add_parser(subparsers: Any) -> None:
    """Add `microgpt sample` to the `microgpt` parser."""
    s = subparsers.add_parser("sample", help="print samples drawn from a checkpoint")
    s.add_argument("checkpoint", metavar="CKPT", help="a checkpoint saved by `microgpt train`")
    st.add_flags(s, SampleConfig)
    s.add_argument(
        "--seed",
        type=st.rule_of(TrainConfig, "seed").parse,
        metavar="N",
        help="seed (default: continue the checkpoint's random stream)",
    )
    st.add_flags(s.add_argument_group("limits"), Limits, only=SAMPLE_LIMITS)
    s.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace, console: Console) -> int:
    limits, sampling = st.from_flags(args, Limits), st.from_flags(args, SampleConfig)
    if sampling.num and console.out is None:
        raise UsageError("stdout is closed, so the samples would be lost")
    ckpt = checkpoint.load(args.checkpoint, limits)
    text_mode, block_size = ckpt.train_config.text_mode, ckpt.model_config.block_size
    prompt = prepare_prompt(sampling, ckpt.tokenizer, block_size, text_mode, limits.max_data_size)
    rng = random.Random(args.seed) if args.seed is not None else ckpt.rng()
    for text in printed(ckpt.model(), ckpt.tokenizer, rng, sampling, prompt, text_mode):
        console.result(text)
    return 0
