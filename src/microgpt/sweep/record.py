"""Recording: what a sweep knows about each run, in the run's `run.json`.

    {"format": "microgpt-sweep-run", "version": 1,
     "train_flags": ["--steps=500", "--lr=0.01", ...],   secrets taken out
     "seconds": 12.5, "ran_on": ["host:pid", ...],
     "result": {"checkpoint_step": 500, "log_bytes": 40211, "log_sha256": "...",
                "final_loss": 2.1, "mean_loss": 2.3, "val_loss": null}}

`result` is what the sweep read when it saw the run finish, and says which
checkpoint step and which log (by size and hash) it summarises: if either
has changed since (the run was continued by hand), the sweep sees it and
reads them again rather than report stale numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from microgpt import checkpoint
from microgpt.errors import UsageError
from microgpt.files import read_capped, show, write_atomic
from microgpt.limits import Limits
from microgpt.runlog import RunLog, read_log
from microgpt.sweep.plan import RunSpec

FORMAT = "microgpt-sweep-run"
VERSION = 1
FILE = "run.json"


@dataclass(frozen=True)
class RunResult:
    """A finished run's losses, and the checkpoint step and log they come from."""

    checkpoint_step: int
    log_bytes: int
    log_sha256: str
    final_loss: float
    mean_loss: float
    val_loss: float | None = None

    @classmethod
    def of(cls, step: int, log: RunLog, raw_log: bytes) -> RunResult:
        final, mean = log.final_loss(), log.mean_loss()
        assert final is not None and mean is not None  # a finished run has logged steps
        digest = hashlib.sha256(raw_log).hexdigest()
        return cls(step, len(raw_log), digest, final, mean, log.final_val_loss())

    def summarises(self, step: int, raw_log: bytes) -> bool:
        """Whether this is the result of this checkpoint step and this log."""
        return (
            self.checkpoint_step == step
            and self.log_bytes == len(raw_log)
            and self.log_sha256 == hashlib.sha256(raw_log).hexdigest()
        )


@dataclass(frozen=True)
class RunRecord:
    """A run's train arguments (without secrets), the seconds it has taken over
    all its attempts, where each attempt ran, and its result once finished."""

    train_flags: tuple[str, ...]
    seconds: float = 0.0
    ran_on: tuple[str, ...] = ()
    result: RunResult | None = None

    def attempted(self, seconds: float, where: str) -> RunRecord:
        return replace(self, seconds=self.seconds + seconds, ran_on=(*self.ran_on, where))

    def to_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        fields["train_flags"], fields["ran_on"] = list(self.train_flags), list(self.ran_on)
        return {"format": FORMAT, "version": VERSION, **fields}


def write(folder: Path, record: RunRecord) -> None:
    """Replace the run's record atomically (never through a link: see `folder`)."""
    text = json.dumps(record.to_dict(), allow_nan=False, indent=1) + "\n"

    def fill(fd: int) -> None:
        with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    write_atomic(folder / FILE, fill)


def read(folder: Path) -> RunRecord | None:
    """The run's record; None if it has none. A record that is not one is a
    one-line UsageError (the sweep never guesses what a file means)."""
    path = folder / FILE
    try:
        with open(path, "rb", opener=_no_follow) as f:
            raw = json.loads(f.read(1 << 20))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UsageError(f"{show(path)}: not a sweep's run record ({why})") from None
    try:
        return _from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{show(path)}: not a sweep's run record ({exc})") from None


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _from_dict(raw: Any) -> RunRecord:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"its format is not {FORMAT!r}")
    if raw.get("version") != VERSION:
        raise ValueError(f"version {raw.get('version')!r}; this microgpt reads {VERSION}")
    flags = _strings(raw["train_flags"], "train_flags")
    seconds = raw["seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError("seconds is not a number of seconds")
    ran_on = _strings(raw["ran_on"], "ran_on")
    result = raw.get("result")
    return RunRecord(flags, float(seconds), ran_on, None if result is None else _result(result))


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name} is not a list of texts")
    return tuple(value)


def _result(raw: Any) -> RunResult:
    if not isinstance(raw, dict):
        raise ValueError("result is not an object")
    result = RunResult(**raw)
    numbers: dict[str, Any] = {
        "checkpoint_step": result.checkpoint_step,
        "log_bytes": result.log_bytes,
        "final_loss": result.final_loss,
        "mean_loss": result.mean_loss,
        "val_loss": 0.0 if result.val_loss is None else result.val_loss,
    }
    for name, value in numbers.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(f"result.{name} is not a number")
    if not isinstance(result.log_sha256, str):
        raise ValueError("result.log_sha256 is not a text")
    return result


# --- what the run's files say ------------------------------------------------------------


def progress(spec: RunSpec, limits: Limits) -> tuple[int, int] | None:
    """(step, last step) from the run's checkpoint, None if it has none yet.
    Read with the sweep's limits: the runs were made with them."""
    if not os.path.lexists(spec.checkpoint):
        return None
    ckpt = checkpoint.load(spec.checkpoint, limits)
    return ckpt.step, ckpt.train_config.steps


def finished_result(spec: RunSpec, limits: Limits, say: Callable[[str], None]) -> RunResult | None:
    """The result of a finished run, None if it is not finished. The recorded
    result is used if it still summarises the run's checkpoint step and log;
    if not (the run was continued or redone by hand) both are read again, and
    the record updated. A log that does not reach the checkpoint's step (the
    run was continued without its log) is not a result."""
    at = progress(spec, limits)
    if at is None or at[0] != at[1] or not os.path.lexists(spec.log):
        return None
    raw = read_capped(spec.log, limits.max_data_size, "log", "--max-data-size")
    saved = read(spec.folder) or RunRecord(tuple(spec.public_flags))
    if saved.result is not None and saved.result.summarises(at[0], raw):
        return saved.result
    log = read_log(spec.log, limits.max_data_size)
    if not log.steps or log.steps[-1] != at[0]:
        last = log.steps[-1] if log.steps else 0
        say(
            f"sweep: run {spec.name} is not listed: its log ends at step {last} but its "
            f"checkpoint is at step {at[0]} (continued without its log?)"
        )
        return None
    result = RunResult.of(at[0], log, raw)
    if saved.result is not None:
        say(
            f"sweep: run {spec.name} changed since it was recorded (checkpoint step "
            f"{saved.result.checkpoint_step} -> {at[0]}, or its log); its results were read again"
        )
    write(spec.folder, replace(saved, result=result))
    return result
