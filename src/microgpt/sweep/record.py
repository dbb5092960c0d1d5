"""Recording: what a sweep knows about each run, in the run's `run.json`.

    {"format": "microgpt-sweep-run", "version": 1,
     "train_flags": ["--steps=500", "--lr=0.01", ...],   secrets taken out
     "seconds": 12.5, "ran_on": ["host:pid", ...],
     "result": {"checkpoint_step": 500, "checkpoint_sha256": "...", "log_sha256": "...",
                "final_loss": 2.1, "mean_loss": 2.3, "val_loss": null}}

`result` is what the sweep read when it saw the run finish, and says which
checkpoint (its step and hash) and which log (its hash) it summarises: if
either has changed since (the run was continued or redone by hand), the
sweep sees it and reads them again rather than report stale numbers.
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
from microgpt.files import open_no_follow, read_capped, show, write_text_atomic
from microgpt.limits import Limits
from microgpt.runlog import RunLog, read_log
from microgpt.sweep.plan import RunSpec

FORMAT = "microgpt-sweep-run"
VERSION = 1
FILE = "run.json"


@dataclass(frozen=True)
class RunResult:
    """A finished run's losses, and the checkpoint and log they come from
    (the checkpoint's step and the hashes of both files)."""

    checkpoint_step: int
    checkpoint_sha256: str
    log_sha256: str
    final_loss: float
    mean_loss: float
    val_loss: float | None = None

    def summarises(self, files: RunFiles) -> bool:
        """Whether this is the result of these very files."""
        return (self.checkpoint_step, self.checkpoint_sha256, self.log_sha256) == (
            files.step,
            files.checkpoint_sha256,
            files.log_sha256,
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

    write_text_atomic(folder / FILE, text)


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
    return open_no_follow(path, flags)


def _from_dict(raw: Any) -> RunRecord:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"its format is not {FORMAT!r}")
    if raw.get("version") != VERSION:
        raise ValueError(f"version {raw.get('version')!r}; this microgpt reads {VERSION}")
    flags = _strings(raw["train_flags"], "train_flags")
    seconds = raw["seconds"]
    if not _number(seconds) or seconds < 0:
        raise ValueError("seconds is not a number of seconds")
    ran_on = _strings(raw["ran_on"], "ran_on")
    result = raw.get("result")
    return RunRecord(flags, float(seconds), ran_on, None if result is None else _result(result))


def _number(value: Any) -> bool:
    """A finite number (bool is an int to Python, never a number here)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


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
        "final_loss": result.final_loss,
        "mean_loss": result.mean_loss,
        "val_loss": 0.0 if result.val_loss is None else result.val_loss,
    }
    for name, value in numbers.items():
        if not _number(value):
            raise ValueError(f"result.{name} is not a number")
    if not isinstance(result.log_sha256, str) or not isinstance(result.checkpoint_sha256, str):
        raise ValueError("result's hashes are not texts")
    return result


# --- what the run's files say ------------------------------------------------------------


def progress(spec: RunSpec, limits: Limits) -> tuple[int, int] | None:
    """(step, last step) from the run's checkpoint, None if it has none yet.
    Read with the sweep's limits: the runs were made with them."""
    if not os.path.lexists(spec.checkpoint):
        return None
    ckpt = checkpoint.load(spec.checkpoint, limits)
    return ckpt.step, ckpt.train_config.steps


@dataclass(frozen=True)
class RunFiles:
    """A finished run's checkpoint and log, as the sweep reads them."""

    step: int
    checkpoint_sha256: str
    log_sha256: str
    settings: dict[str, Any]  # the checkpoint's


def _files(spec: RunSpec, limits: Limits) -> RunFiles | None:
    """The finished run's files; None if it has not finished."""
    if not os.path.lexists(spec.checkpoint) or not os.path.lexists(spec.log):
        return None
    cap = limits.max_checkpoint_size
    raw = read_capped(spec.checkpoint, cap, "checkpoint", "max_checkpoint_size")
    ckpt = checkpoint.load(spec.checkpoint, limits)
    if ckpt.step != ckpt.train_config.steps:
        return None
    log = read_capped(spec.log, limits.max_data_size, "log", "max_data_size")
    # as a log's header holds them: through JSON
    settings = json.loads(
        json.dumps({**ckpt.model_config.to_dict(), **ckpt.train_config.to_dict()})
    )
    return RunFiles(ckpt.step, _sha256(raw), _sha256(log), settings)


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def finished_result(spec: RunSpec, limits: Limits, say: Callable[[str], None]) -> RunResult | None:
    """The result of a finished run, None if it is not finished. The recorded
    result is used while it summarises the run's checkpoint and log; if they
    changed (the run was continued or redone by hand) they are read again and
    the record updated, and a log that is not the checkpoint's (it ends at
    another step, or has other settings) is no result."""
    files = _files(spec, limits)
    if files is None:
        return None
    saved = read(spec.folder) or RunRecord(tuple(spec.public_flags))
    if saved.result is not None and saved.result.summarises(files):
        return saved.result
    log = read_log(spec.log, limits.max_data_size)
    problem = _mismatch(files, log)
    if problem:
        say(f"sweep: run {spec.name} is not listed: {problem}; remove its folder to train it again")
        return None
    final, mean = log.final_loss(), log.mean_loss()
    assert final is not None and mean is not None  # _mismatch saw the last step
    result = RunResult(
        files.step, files.checkpoint_sha256, files.log_sha256, final, mean, log.final_val_loss()
    )
    if saved.result is not None:
        say(f"sweep: run {spec.name} changed since it was recorded; its results were read again")
    write(spec.folder, replace(saved, result=result))
    return result


def _mismatch(files: RunFiles, log: RunLog) -> str:
    """Why `log` is not the log of the checkpoint in `files` ("" if it is)."""
    last = log.steps[-1] if log.steps else 0
    if last != files.step:
        return f"its log ends at step {last}, its checkpoint at step {files.step}"
    logged = (log.header or {}).get("settings")
    if isinstance(logged, dict) and logged != files.settings:
        return "its log was written with other settings than its checkpoint's"
    return ""
