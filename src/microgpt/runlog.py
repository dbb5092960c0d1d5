"""The loss log: one JSON object per line (JSON Lines), one record per step.

    {"step": 1, "loss": 3.3013..., "lr": 0.01}

`loss` is the float64 exactly as Python's `repr` writes it. A log is only
written where `files.check_output` allows, and an existing file is replaced
or continued only if it is a microgpt log: its first line is a JSON object with
a "step" (or a header record with "format": "microgpt-log").
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path
from typing import IO, Any

from microgpt.errors import UsageError
from microgpt.files import check_output, kind_of, show

LOG_FORMAT = "microgpt-log"
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

    def __init__(self, path: str | Path, stream: IO[str], option: str = "--log") -> None:
        self.path = str(path)
        self.option = option
        self._stream = stream

    @classmethod
    def check(cls, path: str | Path, option: str = "--log") -> Path:
        """Refuse an output that is not ours to write (see `files.check_output`)."""
        return check_output(path, option, "loss log", looks_like_log)

    @classmethod
    def open(
        cls, path: str | Path, resumed_step: int | None = None, option: str = "--log"
    ) -> LossLog:
        target = cls.check(path, option)
        try:
            fd = _open_regular(target)
            if resumed_step is None:
                os.ftruncate(fd, 0)
            else:
                os.ftruncate(fd, _bytes_through(fd, resumed_step))
            os.lseek(fd, 0, os.SEEK_END)
            # Line-buffered: a record that cannot be written fails at its own step.
            stream = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise UsageError(f"{option} {show(path)}: cannot open: {exc.strerror or exc}") from None
        return cls(path, stream, option)

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
    """Open `target` for writing without blocking on a FIFO, and make sure it
    is a regular file (it may have changed since it was checked)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW
    fd = os.open(target, flags, 0o666)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(0, f"it is {kind_of(mode)}; microgpt writes only regular files")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def _bytes_through(fd: int, last_step: int) -> int:
    """How many leading bytes of the log hold whole records up to `last_step`.
    Records without a step (a header) are kept; a torn or foreign line ends it."""
    keep = 0
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
    return keep
