"""Checkpoints: a training run saved as JSON data (never pickle).

A checkpoint holds everything a run needs to continue bit for bit: the
settings, the vocabulary, the weights, Adam's moments, the step counter, the
random stream's state and a fingerprint of the data. Floats are written with
Python's `repr`, which reads back to the identical float64.

Writes are atomic: the JSON goes to a temporary file in the same folder, is
flushed to disk, then renamed over the target. A crash or kill mid-write leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import json
import math
import random
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from microgpt.data import Tokenizer
from microgpt.errors import Name, UsageError
from microgpt.files import check_output, read_capped, show, write_json_atomic
from microgpt.limits import Limits, check_fits
from microgpt.nn import GPT, GPTConfig, weight_shapes
from microgpt.settings import shorten
from microgpt.train import Run, TrainConfig, in_training_order

FORMAT = "microgpt-checkpoint"
VERSION = 1
MAX_VOCAB = 1_000_000
Matrices = dict[str, list[list[float]]]


# --- writing -----------------------------------------------------------------


def run_to_dict(run: Run, data_source: str, data_fingerprint: str) -> dict[str, Any]:
    model = run.model
    m_mats, v_mats = {}, {}
    i = 0
    for name, (rows, cols) in weight_shapes(model.config).items():
        m_mats[name] = [
            run.optimizer.m[i + r * cols : i + (r + 1) * cols].tolist() for r in range(rows)
        ]
        v_mats[name] = [
            run.optimizer.v[i + r * cols : i + (r + 1) * cols].tolist() for r in range(rows)
        ]
        i += rows * cols
    version, internal, gauss_next = run.rng.getstate()
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model.config.to_dict(),
        "training": run.train_config.to_dict(),
        "step": run.step,
        "vocab": run.tokenizer.chars,
        "data": {"source": data_source, "sha256": data_fingerprint, "documents": len(run.docs)},
        "rng_state": [version, list(internal), gauss_next],
        "weights": {
            name: [[p.data for p in row] for row in mat] for name, mat in model.state_dict.items()
        },
        "adam": {"m": m_mats, "v": v_mats},
    }


OUT = Name("out", "checkpoint")  # the setting that names where a run is saved


def check_writable(path: str | Path, name: Name = OUT) -> Path:
    """Fail now, not after an hour of training, if `path` cannot or must not
    hold a checkpoint; returns the file to write (see `microgpt.files`)."""
    return check_output(path, name, "a microgpt checkpoint", looks_like_checkpoint)


def looks_like_checkpoint(path: Path) -> bool:
    """Whether `path` is empty or starts like a checkpoint (only its head is read)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return not head or f'"{FORMAT}"'.encode() in head


class UnsavableRun(Exception):
    """The run holds a NaN or infinite number, which no checkpoint may hold."""


def save(run: Run, path: str | Path, data_source: str, data_fingerprint: str) -> None:
    """Write the run to `path` atomically (temp file, fsync, rename).

    Raises `UnsavableRun`, leaving `path` as it was, if a weight or an Adam
    moment is not a finite number (the run diverged). Never replaces anything
    but a checkpoint (OSError)."""
    saved = run_to_dict(run, data_source, data_fingerprint)
    for what, mats in (("weights", saved["weights"]), *saved["adam"].items()):
        for name, mat in mats.items():
            for row in mat:
                for x in row:
                    if not math.isfinite(x):
                        raise UnsavableRun(f"{what}[{name!r}] holds {x!r}")
    write_json_atomic(path, saved, looks_like_checkpoint)


# --- reading -----------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read from disk, every part checked while it was built."""

    path: str
    model_config: GPTConfig
    train_config: TrainConfig
    step: int
    tokenizer: Tokenizer
    data: dict[str, Any]
    weights: Matrices
    adam_m: list[float]
    adam_v: list[float]
    rng_state: tuple[Any, ...]

    def setting(self, name: str) -> Any:
        """A model or training setting as saved."""
        config = self.model_config if hasattr(self.model_config, name) else self.train_config
        return getattr(config, name)

    def model(self) -> GPT:
        """The model with the saved weights."""
        return GPT.from_weights(self.model_config, self.weights)

    def rng(self) -> random.Random:
        rng = random.Random()
        rng.setstate(self.rng_state)
        return rng

    def run(self, docs: list[str]) -> Run:
        """The run, continuing where it stopped. `docs` are the training
        documents in file order (they are shuffled as the run shuffled them),
        or in text mode [the text]; the training settings (data mode
        included) are the checkpoint's."""
        docs = in_training_order(docs, self.train_config, random.Random(self.train_config.seed))
        model = self.model()
        optimizer = Run.make_optimizer(model, self.train_config)
        optimizer.m = array("d", self.adam_m)
        optimizer.v = array("d", self.adam_v)
        run = Run(model, optimizer, self.tokenizer, docs, self.rng(), self.train_config, self.step)
        run.split_validation()
        return run


def load(path: str | Path, limits: Limits | None = None) -> Checkpoint:
    """Read and validate a checkpoint; any problem is a one-line UsageError.

    The file is read only up to `limits.max_checkpoint_size`, and a model
    whose estimated memory is above the limit is refused before it is built."""
    limits = limits or Limits()
    raw_bytes = read_capped(path, limits.max_checkpoint_size, "checkpoint", "max_checkpoint_size")
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{show(path)}: not a microgpt checkpoint (not UTF-8 text)") from None
    try:
        raw = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise UsageError(f"{show(path)}: not a valid checkpoint (nested too deeply)") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{show(path)}: not a valid checkpoint ({_json_problem(text, exc)})"
        ) from None
    except ValueError as exc:
        raise UsageError(f"{show(path)}: {exc}") from None
    return _Reader(str(path), limits).build(raw)


def _json_problem(text: str, exc: json.JSONDecodeError) -> str:
    where = f"line {exc.lineno}, column {exc.colno}"
    if not text.strip():
        return "the file is empty"
    # What is left from the error on: nothing, or the start of a number cut short
    rest = text[exc.pos :].rstrip()
    if set(rest) <= set("0123456789.eE+-") or exc.msg.startswith("Unterminated string"):
        return f"the JSON stops short at {where}: is the file truncated?"
    return f"not JSON: {exc.msg} at {where}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"checkpoint holds {name}, which no trained weight can be")


class _Reader:
    """Checks a parsed checkpoint part by part, building each part as it goes."""

    def __init__(self, path: str, limits: Limits) -> None:
        self.path = path
        self.limits = limits

    def bad(self, why: str) -> NoReturn:
        raise UsageError(f"{show(self.path)}: not a valid checkpoint: {shorten(why, 200)}")

    def build(self, raw: Any) -> Checkpoint:
        self._check_header(raw)
        model_config = self._settings(raw["model"], "model", GPTConfig.from_dict)
        train_config = self._settings(raw["training"], "training", TrainConfig.from_dict)
        tokenizer = self._tokenizer(raw["vocab"], model_config)
        # Counted from the settings alone, before any list is built for them.
        check_fits(model_config, self.limits, show(self.path))
        step = raw["step"]
        if (
            not isinstance(step, int)
            or isinstance(step, bool)
            or not 0 <= step <= train_config.steps
        ):
            self.bad(f"step {shorten(repr(step))} is outside 0..{train_config.steps}")
        shapes = weight_shapes(model_config)
        weights = self._matrices(raw["weights"], shapes, "weights")
        adam = raw["adam"]
        if not isinstance(adam, dict):
            self.bad("adam must be an object")
        m = self._matrices(adam.get("m"), shapes, "adam.m")
        v = self._matrices(adam.get("v"), shapes, "adam.v")
        return Checkpoint(
            path=self.path,
            model_config=model_config,
            train_config=train_config,
            step=step,
            tokenizer=tokenizer,
            data=self._data(raw["data"]),
            weights=weights,
            adam_m=[x for name in shapes for row in m[name] for x in row],
            adam_v=[x for name in shapes for row in v[name] for x in row],
            rng_state=self._rng_state(raw["rng_state"]),
        )

    def _check_header(self, raw: Any) -> None:
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise UsageError(f"{show(self.path)}: not a microgpt checkpoint")
        if raw.get("version") != VERSION:
            raise UsageError(
                f"{show(self.path)}: checkpoint format version "
                f"{shorten(repr(raw.get('version')))} is not supported "
                f"(this microgpt reads version {VERSION})"
            )
        for key in ("model", "training", "step", "vocab", "data", "rng_state", "weights", "adam"):
            if key not in raw:
                self.bad(f"missing {key!r}")

    def _settings(self, data: Any, what: str, make: Callable[[dict[str, Any]], Any]) -> Any:
        if not isinstance(data, dict):
            self.bad(f"{what} settings must be an object")
        try:
            return make(data)
        except (UsageError, TypeError) as exc:
            raise UsageError(
                f"{show(self.path)}: bad {what} settings: {shorten(str(exc), 200)}"
            ) from None

    def _tokenizer(self, vocab: Any, config: GPTConfig) -> Tokenizer:
        if not isinstance(vocab, str) or not vocab or len(vocab) > MAX_VOCAB:
            self.bad("vocab must be a non-empty string")
        if list(vocab) != sorted(set(vocab)):
            self.bad("vocab must be distinct characters in sorted order")
        if config.vocab_size != len(vocab) + 1:
            self.bad(f"vocab has {len(vocab)} characters but vocab_size is {config.vocab_size}")
        return Tokenizer(vocab)

    def _matrices(self, mats: Any, shapes: dict[str, tuple[int, int]], what: str) -> Matrices:
        if not isinstance(mats, dict) or set(mats) != set(shapes):
            self.bad(f"{what} must hold exactly the matrices {', '.join(shapes)}")
        for name, (rows, cols) in shapes.items():
            mat = mats[name]
            if not isinstance(mat, list) or len(mat) != rows:
                self.bad(f"{what}[{name!r}] must have {rows} rows")
            for row in mat:
                if not isinstance(row, list) or len(row) != cols:
                    self.bad(f"{what}[{name!r}] rows must have {cols} numbers")
                for x in row:
                    if not isinstance(x, float) or not math.isfinite(x):
                        self.bad(f"{what}[{name!r}] holds {shorten(repr(x))}, not a finite float")
        return {name: mats[name] for name in shapes}

    def _rng_state(self, state: Any) -> tuple[Any, ...]:
        if (
            not isinstance(state, list)
            or len(state) != 3
            or not isinstance(state[1], list)
            or len(state[1]) != 625
            or not all(isinstance(x, int) and 0 <= x < 2**32 for x in state[1][:624])
            or not (state[2] is None or isinstance(state[2], float))
        ):
            self.bad("rng_state is not a saved Python random state")
        rng_state = (state[0], tuple(state[1]), state[2])
        try:
            random.Random().setstate(rng_state)
        except (TypeError, ValueError, OverflowError):
            self.bad("rng_state is not a saved Python random state")
        return rng_state

    def _data(self, data: Any) -> dict[str, Any]:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("source"), str)
            or not isinstance(data.get("sha256"), str)
        ):
            self.bad("data must name its source and fingerprint")
        return data
