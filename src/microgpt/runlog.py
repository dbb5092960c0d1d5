"""Reading a training run's JSON Lines log (`microgpt train --log FILE`).

One JSON object per line:

    {"header": {"settings": {"n_embd": 16, "lr": 0.01, ...},
                "data": {"source": "...", "sha256": "..."},
                "engine": "compiled", "version": "0.1.0"}}     first line, optional
    {"step": 1, "loss": 3.2958, "lr": 0.01}                      one per training step
    {"step": 100, "val_loss": 2.51}                              when validation is logged

The header says what produced the run, so that runs can be compared by the
settings that differ between them; a log without one is still read. Lines
of other shapes are skipped (a later version may add records), and so is a
last line cut short by a killed process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microgpt.errors import UsageError

# The progress line's and the sweep's "mean loss": the last this many steps.
MEAN_WINDOW = 100


@dataclass
class RunLog:
    """The records of one log, in file order."""

    path: str
    header: dict[str, Any] | None = None
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)

    def settings(self) -> dict[str, Any]:
        """What the header says produced the run, as one flat mapping
        (settings by name, plus `data`, `engine` and `version`); {} without one."""
        if self.header is None:
            return {}
        flat = dict(self.header.get("settings") or {})
        data = self.header.get("data")
        if isinstance(data, dict) and "source" in data:
            flat["data"] = data["source"]
        for key in ("engine", "version"):
            if key in self.header:
                flat[key] = self.header[key]
        return flat

    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None

    def mean_loss(self, window: int = MEAN_WINDOW) -> float | None:
        """The mean training loss of the last `window` steps."""
        last = self.losses[-window:]
        return sum(last) / len(last) if last else None

    def final_val_loss(self) -> float | None:
        return self.val_losses[-1] if self.val_losses else None


def read_log(path: str | Path) -> RunLog:
    """Read a log; a missing or malformed file is a one-line UsageError."""
    log = RunLog(str(path))
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except FileNotFoundError:
        raise UsageError(f"log not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a log") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a microgpt log (not UTF-8 text)") from None
    except OSError as exc:
        raise UsageError(f"cannot read log {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines) and not line.endswith("\n"):
                break  # the last line of a killed run, cut short
            raise UsageError(f"{path}, line {number}: not a JSON record") from None
        _add(log, record, f"{path}, line {number}")
    return log


def _add(log: RunLog, record: Any, where: str) -> None:
    if not isinstance(record, dict):
        raise UsageError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "header" in record:
        if not isinstance(record["header"], dict):
            raise UsageError(f"{where}: the header is not a JSON object")
        log.header = record["header"]
    elif "loss" in record:
        log.steps.append(_number(record, "step", where, int))
        log.losses.append(_number(record, "loss", where, float))
    elif "val_loss" in record:
        log.val_steps.append(_number(record, "step", where, int))
        log.val_losses.append(_number(record, "val_loss", where, float))


def _number(record: dict[str, Any], key: str, where: str, kind: type) -> Any:
    value = record.get(key)
    # bool is an int to Python, never a step or a loss
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{where}: {key!r} is not a number")
    if kind is int and not isinstance(value, int):
        raise UsageError(f"{where}: {key!r} is not a whole number")
    return kind(value)


def differing_settings(logs: list[RunLog]) -> list[dict[str, Any]]:
    """For each log, the header settings whose values are not the same in all logs."""
    flats = [log.settings() for log in logs]
    keys = dict.fromkeys(key for flat in flats for key in flat)  # first-seen order
    differ = [key for key in keys if len({json.dumps(flat.get(key)) for flat in flats}) > 1]
    return [{key: flat.get(key) for key in differ} for flat in flats]
