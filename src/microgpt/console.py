"""stdout and stderr, written so that a failure is never silent.

stdout carries only results (sampled names, one per line, each flushed as it
is produced); stderr carries progress and messages. A write that fails (a
closed pipe, a closed descriptor, a full disk) raises `StreamFailed`, which
the command turns into a non-zero exit status after saving what it can.
Characters the terminal's encoding cannot show are written as backslash
escapes rather than failing.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import TextIO


class StreamFailed(Exception):
    """stdout or stderr could not be written."""

    def __init__(self, name: str, exc: BaseException | None) -> None:
        self.name = name
        self.broken_pipe = isinstance(exc, BrokenPipeError) or (
            isinstance(exc, OSError) and exc.errno == errno.EPIPE
        )
        why = "it is closed" if exc is None else getattr(exc, "strerror", None) or str(exc)
        super().__init__(f"cannot write to {name}: {why}")


class Console:
    """The two output streams of a command."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.failed: StreamFailed | None = None

    @staticmethod
    def prepare() -> None:
        """Escape what the terminal cannot encode instead of raising."""
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="backslashreplace")

    def result(self, line: str) -> None:
        """One line of results on stdout, flushed at once."""
        self._write(self.out, "stdout", line)

    def message(self, line: str) -> None:
        """One line of progress or messages on stderr."""
        self._write(self.err, "stderr", line)

    def _write(self, stream: TextIO | None, name: str, line: str) -> None:
        if stream is None:  # Python found the descriptor closed at start
            raise self.fail(name, None)
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError) as exc:
            raise self.fail(name, exc) from None

    def fail(self, name: str, exc: BaseException | None) -> StreamFailed:
        """Record that a stream failed (and keep the failure from being reported
        again at exit)."""
        failure = StreamFailed(name, exc)
        self.failed = self.failed or failure
        if exc is not None:
            _silence(self.out if name == "stdout" else self.err)
        return failure

    def try_message(self, line: str) -> None:
        """A message that is dropped if stderr is gone (the status tells instead)."""
        try:
            self.message(line)
        except StreamFailed:
            pass


def _silence(stream: TextIO) -> None:
    """Point a failed stream at devnull, so that Python's flush at exit does
    not fail again (which would change the exit status to 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
