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
import os
import random
import tempfile
from pathlib import Path
from typing import Any

from microgpt.data import Tokenizer
from microgpt.errors import UsageError
from microgpt.nn import GPT, GPTConfig
from microgpt.train import Run, TrainConfig

FORMAT = "microgpt-checkpoint"
VERSION = 1
# Refuse absurd checkpoints before allocating anything for them.
MAX_PARAMS = 50_000_000
MAX_VOCAB = 1_000_000


# --- writing -----------------------------------------------------------------


def run_to_dict(run: Run, data_source: str, data_fingerprint: str) -> dict[str, Any]:
    model = run.model
    shapes = list(model.state_dict.items())
    m_mats, v_mats = {}, {}
    i = 0
    for name, mat in shapes:
        rows, cols = len(mat), len(mat[0])
        m_mats[name] = [run.optimizer.m[i + r * cols : i + (r + 1) * cols] for r in range(rows)]
        v_mats[name] = [run.optimizer.v[i + r * cols : i + (r + 1) * cols] for r in range(rows)]
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
        "weights": {name: [[p.data for p in row] for row in mat] for name, mat in shapes},
        "adam": {"m": m_mats, "v": v_mats},
    }


def check_writable(path: str | Path) -> None:
    """Fail now, not after an hour of training, if `path` cannot be written."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"--out {path} is a directory; give a file name")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {path}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise UsageError(f"--out {path}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=".microgpt-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write in {folder}: {exc.strerror or exc}") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"--out {path}: the file is not writable")
    if target.is_file() and not _looks_like_checkpoint(target):
        # e.g. `--out names.txt`: never overwrite the user's other files.
        raise UsageError(
            f"--out {path} exists and is not a microgpt checkpoint; refusing to overwrite it"
        )


def _looks_like_checkpoint(path: Path) -> bool:
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
    moment is not a finite number (the run diverged)."""
    saved = run_to_dict(run, data_source, data_fingerprint)
    for what, mats in (("weights", saved["weights"]), *saved["adam"].items()):
        for name, mat in mats.items():
            for row in mat:
                for x in row:
                    if not math.isfinite(x):
                        raise UnsavableRun(f"{what}[{name!r}] holds {x!r}")
    write_json_atomic(path, saved)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp makes the file private (0600); give it the permissions a
        # plain open() would, or keep those of the checkpoint it replaces.
        if hasattr(os, "fchmod"):  # not on every platform
            os.fchmod(fd, _file_mode(target))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, allow_nan=False, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # not every platform can fsync a folder


def _file_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


# --- reading -----------------------------------------------------------------


class Checkpoint:
    """A checkpoint read from disk and checked, ready to rebuild its run."""

    def __init__(self, path: str | Path, raw: dict[str, Any]) -> None:
        self.path = str(path)
        self.raw = raw
        self.model_config = _config(raw, "model", GPTConfig.from_dict, path)
        self.train_config = _config(raw, "training", TrainConfig.from_dict, path)
        self.step: int = raw["step"]
        self.tokenizer = Tokenizer(raw["vocab"])
        self.data: dict[str, Any] = raw["data"]

    def model(self) -> GPT:
        """The model with the saved weights."""
        model = GPT(self.model_config, random.Random(0))
        for name, mat in model.state_dict.items():
            for row, saved in zip(mat, self.raw["weights"][name]):
                for p, value in zip(row, saved):
                    p.data = value
        return model

    def rng(self) -> random.Random:
        version, internal, gauss_next = self.raw["rng_state"]
        rng = random.Random()
        rng.setstate((version, tuple(internal), gauss_next))
        return rng

    def run(self, docs: list[str]) -> Run:
        """The run, continuing where it stopped. `docs` are the training
        documents in file order (they are shuffled as the run shuffled them)."""
        order = random.Random(self.train_config.seed)
        docs = list(docs)
        order.shuffle(docs)
        model = self.model()
        optimizer = Run.make_optimizer(model, self.train_config)
        m = self.raw["adam"]["m"]
        v = self.raw["adam"]["v"]
        optimizer.m = [x for name in model.state_dict for row in m[name] for x in row]
        optimizer.v = [x for name in model.state_dict for row in v[name] for x in row]
        return Run(model, optimizer, self.tokenizer, docs, self.rng(), self.train_config, self.step)


def load(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint; any problem is a one-line UsageError."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"checkpoint not found: {path}")
    if p.is_dir():
        raise UsageError(f"checkpoint path is a directory: {path}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a microgpt checkpoint (not UTF-8 text)") from None
    except OSError as exc:
        raise UsageError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise UsageError(f"{path}: not a valid checkpoint (nested too deeply)") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        if not text.strip():
            why = "the file is empty"
        elif exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            why = f"the JSON stops short at {where}: is the file truncated?"
        else:
            why = f"not JSON: {exc.msg} at {where}"
        raise UsageError(f"{path}: not a valid checkpoint ({why})") from None
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None
    _validate(raw, path)
    return Checkpoint(path, raw)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"checkpoint holds {name}, which no trained weight can be")


def _config(raw: dict[str, Any], key: str, make: Any, path: str | Path) -> Any:
    try:
        return make(raw[key])
    except UsageError as exc:
        raise UsageError(f"{path}: bad {key} settings: {exc}") from None
    except TypeError as exc:
        raise UsageError(f"{path}: bad {key} settings: {exc}") from None


def _validate(raw: Any, path: str | Path) -> None:
    def bad(why: str) -> UsageError:
        return UsageError(f"{path}: not a valid checkpoint: {why}")

    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UsageError(f"{path}: not a microgpt checkpoint")
    if raw.get("version") != VERSION:
        raise UsageError(
            f"{path}: checkpoint format version {raw.get('version')!r} is not supported "
            f"(this microgpt reads version {VERSION})"
        )
    for key in ("model", "training", "step", "vocab", "data", "rng_state", "weights", "adam"):
        if key not in raw:
            raise bad(f"missing {key!r}")
    model, training = raw["model"], raw["training"]
    if not isinstance(model, dict) or not isinstance(training, dict):
        raise bad("settings must be objects")
    vocab = raw["vocab"]
    if not isinstance(vocab, str) or not vocab or len(vocab) > MAX_VOCAB:
        raise bad("vocab must be a non-empty string")
    if list(vocab) != sorted(set(vocab)):
        raise bad("vocab must be distinct characters in sorted order")
    config = _config(raw, "model", GPTConfig.from_dict, path)
    train = _config(raw, "training", TrainConfig.from_dict, path)
    _check_training(train, bad)
    if config.vocab_size != len(vocab) + 1:
        raise bad(f"vocab has {len(vocab)} characters but vocab_size is {config.vocab_size}")
    # Counted from the settings alone, before any list is built for them.
    total = parameter_count(config)
    if total > MAX_PARAMS:
        raise bad(f"declares {total:,} parameters (more than the {MAX_PARAMS:,} allowed)")
    shapes = expected_shapes(config)
    step = raw["step"]
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= train.steps:
        raise bad(f"step {step!r} is outside 0..{train.steps}")
    _check_matrices(raw["weights"], shapes, "weights", bad)
    adam = raw["adam"]
    if not isinstance(adam, dict):
        raise bad("adam must be an object")
    for moment in ("m", "v"):
        _check_matrices(adam.get(moment), shapes, f"adam.{moment}", bad)
    state = raw["rng_state"]
    if (
        not isinstance(state, list)
        or len(state) != 3
        or not isinstance(state[1], list)
        or len(state[1]) != 625
        or not all(isinstance(x, int) and 0 <= x < 2**32 for x in state[1][:624])
        or not (state[2] is None or isinstance(state[2], float))
    ):
        raise bad("rng_state is not a saved Python random state")
    try:
        random.Random().setstate((state[0], tuple(state[1]), state[2]))
    except (TypeError, ValueError):
        raise bad("rng_state is not a saved Python random state") from None
    data = raw["data"]
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("source"), str)
        or not isinstance(data.get("sha256"), str)
    ):
        raise bad("data must name its source and fingerprint")


def _check_training(train: TrainConfig, bad: Any) -> None:
    """The optimiser settings a checkpoint can hold, as the command line allows them."""
    for name in ("lr", "eps"):
        value = getattr(train, name)
        if not _is_float(value) or not value > 0.0:
            raise bad(f"training {name} must be a positive number, got {value!r}")
    for name in ("beta1", "beta2"):
        value = getattr(train, name)
        if not _is_float(value) or not 0.0 <= value < 1.0:
            raise bad(f"training {name} must be at least 0 and below 1, got {value!r}")
    if train.grad_clip is not None and not _is_float(train.grad_clip):
        raise bad(f"training grad_clip must be a number, got {train.grad_clip!r}")


def _is_float(value: Any) -> bool:
    """A finite number (an int counts: `TrainConfig(lr=1)` is a fine setting)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def parameter_count(config: GPTConfig) -> int:
    """How many weights a model of this shape has (no lists built)."""
    c = config
    embeddings = (2 * c.vocab_size + c.block_size) * c.n_embd
    per_layer = 4 * c.n_embd * c.n_embd + 2 * 4 * c.n_embd * c.n_embd
    return embeddings + c.n_layer * per_layer


def expected_shapes(config: GPTConfig) -> dict[str, tuple[int, int]]:
    c = config
    shapes = {
        "wte": (c.vocab_size, c.n_embd),
        "wpe": (c.block_size, c.n_embd),
        "lm_head": (c.vocab_size, c.n_embd),
    }
    for i in range(c.n_layer):
        shapes[f"layer{i}.attn_wq"] = (c.n_embd, c.n_embd)
        shapes[f"layer{i}.attn_wk"] = (c.n_embd, c.n_embd)
        shapes[f"layer{i}.attn_wv"] = (c.n_embd, c.n_embd)
        shapes[f"layer{i}.attn_wo"] = (c.n_embd, c.n_embd)
        shapes[f"layer{i}.mlp_fc1"] = (4 * c.n_embd, c.n_embd)
        shapes[f"layer{i}.mlp_fc2"] = (c.n_embd, 4 * c.n_embd)
    return shapes


def _check_matrices(mats: Any, shapes: dict[str, tuple[int, int]], what: str, bad: Any) -> None:
    if not isinstance(mats, dict) or set(mats) != set(shapes):
        raise bad(f"{what} must hold exactly the matrices {', '.join(shapes)}")
    for name, (rows, cols) in shapes.items():
        mat = mats[name]
        if not isinstance(mat, list) or len(mat) != rows:
            raise bad(f"{what}[{name!r}] must have {rows} rows")
        for row in mat:
            if not isinstance(row, list) or len(row) != cols:
                raise bad(f"{what}[{name!r}] rows must have {cols} numbers")
            for x in row:
                if not isinstance(x, float) or not math.isfinite(x):
                    raise bad(f"{what}[{name!r}] holds {x!r}, not a finite float")
