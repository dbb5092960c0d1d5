"""A training run's log: JSON Lines (`microgpt train --log FILE`), written
by `LossLog` and read by `read_log`. One JSON object per line:

    {"format": "microgpt-log",
     "header": {"settings": {"n_embd": 16, "lr": 0.01, ...},
                "data": {"source": "...", "sha256": "..."},
                "engine": "compiled", "version": "0.1.0"}}      first line
    {"step": 1, "loss": 3.2958, "lr": 0.01}                      one per training step
    {"step": 100, "val_loss": 2.51}                              when validation is logged

`loss` is the float64 exactly as Python's `repr` writes it. The header says
what produced the run, so that runs can be compared by the settings that
differ between them; a log without one (an older one) is still read. A
resumed run whose header differs (an extended run's `steps`, another engine)
appends its own: the last header describes the steps after it, and the run.
Lines of other shapes are skipped (a later version may add records), and so
is a last line cut short by a killed process.

A log is only written where `files.check_output` allows, and an existing file
is replaced or continued only if it is a microgpt log: its first line is a
JSON object with a "step", or the header record.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from microgpt.errors import Name, UsageError
from microgpt.files import O_NONBLOCK, check_output, kind_of, open_no_follow, read_capped, show
from microgpt.limits import Limits
from microgpt.settings import format_size
from microgpt.train import MAX_STEPS

LOG_FORMAT = "microgpt-log"
LOG = Name("log")  # the setting that names a run's log
MAX_LINE = 1 << 16  # no record of ours is near this long


def looks_like_log(path: Path) -> bool:
    """Whether `path` is empty or starts with a record of a microgpt log."""
    try:
        with open(path, "rb") as f:
            first = f.readline(MAX_LINE)
    except OSError:
        return False
    if not first:
        return True
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and ("step" in record or record.get("format") == LOG_FORMAT)


class LossLog:
    """A JSON Lines log that a training run appends to.

    `LossLog.open(path)` starts a new log (replacing an old microgpt log);
    `LossLog.open(path, resumed_step=N)` continues one, first cutting it back
    to step N (a killed run may have logged steps it never saved)."""

    def __init__(self, path: str | Path, stream: IO[str], name: Name = LOG) -> None:
        self.path = str(path)
        self.name = name
        self._stream = stream

    @classmethod
    def check(cls, path: str | Path, name: Name = LOG) -> Path:
        """Refuse an output that is not ours to write (see `files.check_output`)."""
        return check_output(path, name, "a microgpt loss log", looks_like_log)

    @classmethod
    def open(
        cls,
        path: str | Path,
        resumed_step: int | None = None,
        name: Name = LOG,
        header: dict[str, Any] | None = None,
    ) -> LossLog:
        """`header` is the first record of a new log; a resumed log gets it
        again only where it differs from the log's last header."""
        target = cls.check(path, name)
        try:
            fd = _open_regular(target)
            last_header = None
            if resumed_step is None:
                os.ftruncate(fd, 0)
            else:
                keep, last_header = _bytes_through(fd, resumed_step)
                os.ftruncate(fd, keep)
            os.lseek(fd, 0, os.SEEK_END)
            # Line-buffered: a record that cannot be written fails at its own step.
            stream = os.fdopen(fd, "a", encoding="utf-8", newline="", buffering=1)
        except OSError as exc:
            raise UsageError(name, f" {show(path)}: cannot open: {exc.strerror or exc}") from None
        log = cls(path, stream, name)
        if header is not None and header != last_header:
            log.record(header)
        return log

    def record(self, entry: dict[str, Any]) -> None:
        """Append one record (a JSON object on its own line)."""
        self._stream.write(json.dumps(entry) + "\n")

    def step(self, step: int, loss: float, lr: float) -> None:
        self.record({"step": step, "loss": loss, "lr": lr})

    def sync(self) -> None:
        """Flush to disk, so the log holds every step a checkpoint saved after
        this holds, even if the process is killed right after."""
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        try:
            self._stream.close()
        except OSError:
            pass  # a failed write was already reported at its step


def _open_regular(target: Path) -> int:
    """Open `target` for writing without blocking on a FIFO (where there are
    FIFOs), and make sure it is a regular file (it may have changed since it
    was checked)."""
    fd = open_no_follow(target, os.O_RDWR | os.O_CREAT | O_NONBLOCK)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(0, f"it is {kind_of(mode)}; microgpt writes only regular files")
    if O_NONBLOCK:
        os.set_blocking(fd, True)
    return fd


def _bytes_through(fd: int, last_step: int) -> tuple[int, dict[str, Any] | None]:
    """How many leading bytes of the log hold whole records up to `last_step`,
    and the last header record among them. Records without a step (a header)
    are kept; a torn or foreign line ends it."""
    keep, header = 0, None
    with os.fdopen(os.dup(fd), "rb") as old:
        old.seek(0)
        while line := old.readline(MAX_LINE):
            try:
                record = json.loads(line)
            except ValueError:
                break  # a line torn by a kill: cut here
            if not line.endswith(b"\n") or not isinstance(record, dict):
                break
            step = record.get("step")
            if step is not None and (not isinstance(step, int) or step > last_step):
                break
            keep += len(line)
            header = record if "header" in record else header
    return keep, header


# --- reading a log ---------------------------------------------------------------

DEFAULT_MAX_SIZE = Limits().max_data_size
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
    size: int = 0  # bytes read

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


def read_log(path: str | Path, cap: int = DEFAULT_MAX_SIZE) -> RunLog:
    """Read a log of at most `cap` bytes (the `max_data_size` limit); a missing,
    oversized or malformed file is a one-line UsageError. A loss may be NaN
    or infinite (a run can log one); what no run logs is refused."""
    log = RunLog(str(path))
    raw = read_capped(path, cap, "log", "max_data_size")
    log.size = len(raw)
    try:
        lines = raw.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        raise UsageError(f"{show(path)}: not a microgpt log (not UTF-8 text)") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines) and not line.endswith("\n"):
                break  # the last line of a killed run, cut short
            raise UsageError(f"{show(path)}, line {number}: not a JSON record") from None
        _add(log, record, f"{show(path)}, line {number}")
    return log


def read_logs(paths: list[str], cap: int = DEFAULT_MAX_SIZE) -> list[RunLog]:
    """Read logs of at most `cap` bytes in all: many small logs cost as much
    memory and time as one large one."""
    logs, total = [], 0
    for path in paths:
        logs.append(read_log(path, cap))
        total += logs[-1].size
        if total > cap:
            raise UsageError(
                f"the {len(paths)} logs are larger than {format_size(cap)} in all; ",
                Name("max_data_size"),
                " SIZE reads more",
            )
    return logs


def _add(log: RunLog, record: Any, where: str) -> None:
    if not isinstance(record, dict):
        raise UsageError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "header" in record:
        if record.get("format", LOG_FORMAT) != LOG_FORMAT:
            raise UsageError(f"{where}: not a microgpt log (its format is not {LOG_FORMAT!r})")
        log.header = _checked_header(record["header"], where)
    elif "loss" in record:
        log.steps.append(_step(record, where))
        log.losses.append(_loss(record, "loss", where))
    elif "val_loss" in record:
        log.val_steps.append(_step(record, where))
        log.val_losses.append(_loss(record, "val_loss", where))


# What each part of a header is, when it is there (see `RunLog.settings`).
HEADER_TYPES: dict[str, tuple[type, str]] = {
    "settings": (dict, "a JSON object"),
    "data": (dict, "a JSON object"),
    "engine": (str, "a string"),
    "version": (str, "a string"),
}


def _checked_header(header: Any, where: str) -> dict[str, Any]:
    if not isinstance(header, dict):
        raise UsageError(f"{where}: the header is not a JSON object")
    for key, (kind, name) in HEADER_TYPES.items():
        if header.get(key) is not None and not isinstance(header[key], kind):
            raise UsageError(f"{where}: the header's {key!r} is not {name}")
    source = (header.get("data") or {}).get("source")
    if source is not None and not isinstance(source, str):
        raise UsageError(f"{where}: the header's data 'source' is not a string")
    return header


def _number(record: dict[str, Any], key: str, where: str) -> int | float:
    value = record.get(key)
    # bool is an int to Python, never a step or a loss
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{where}: {key!r} is not a number")
    return value


def _step(record: dict[str, Any], where: str) -> int:
    step = _number(record, "step", where)
    if not isinstance(step, int):
        raise UsageError(f"{where}: 'step' is not a whole number")
    if not 0 <= step <= MAX_STEPS:
        raise UsageError(f"{where}: 'step' is out of range (0 to {MAX_STEPS})")
    return step


def _loss(record: dict[str, Any], key: str, where: str) -> float:
    """A loss as a float: NaN and infinity are kept (a diverged run logs
    them), and so is a number beyond float's range, as JSON's 1e400 is."""
    value = _number(record, key, where)
    try:
        loss = float(value)
    except OverflowError:  # an integer with hundreds of digits
        loss = math.inf if value > 0 else -math.inf
    if loss < 0:  # cross-entropy never is
        raise UsageError(f"{where}: {key!r} is negative; a loss never is")
    return loss


def differing_settings(logs: list[RunLog]) -> list[dict[str, Any]]:
    """For each log, the header settings whose values are not the same in all logs."""
    flats = [log.settings() for log in logs]
    keys = dict.fromkeys(key for flat in flats for key in flat)  # first-seen order
    differ = [key for key in keys if len({json.dumps(flat.get(key)) for flat in flats}) > 1]
    return [{key: flat.get(key) for key in differ} for flat in flats]
