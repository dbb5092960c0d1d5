"""Exit statuses, and the signals that stop a command, defined once.

    0    done
    1    failed while running (the loss diverged, an output could not be written)
    2    bad input: one line on stderr says what and where
    128 + N  stopped by signal N: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP;
         141 when the reader of stdout went away (as a shell reports a
         writer killed by SIGPIPE)

`StopSignals` turns the first stop request into a flag a loop checks
between two pieces of work (a training step, a sweep's run), and a second
into an immediate stop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
SIGPIPE_NUMBER = 13  # the same on every POSIX system; Windows has no SIGPIPE


def signal_status(signum: int) -> int:
    """The exit status of a command stopped by signal `signum`, as a shell shows it."""
    return 128 + signum


EXIT_INTERRUPTED = signal_status(signal.SIGINT)
EXIT_BROKEN_PIPE = signal_status(getattr(signal, "SIGPIPE", SIGPIPE_NUMBER))


def stream_status(broken_pipe: bool) -> int:
    """The status when stdout or stderr failed: 141 if its reader went away."""
    return EXIT_BROKEN_PIPE if broken_pipe else EXIT_FAILED


def stop_signals() -> tuple[int, ...]:
    """The signals that ask a command to stop, where the platform has them:
    Ctrl-C, SIGTERM (kill, job schedulers), SIGHUP (the terminal closed) and
    Windows's Ctrl-Break."""
    names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")
    return tuple(getattr(signal, name) for name in names if hasattr(signal, name))


class StopNow(KeyboardInterrupt):
    """A second stop signal: stop at once. `signum` is that signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def interrupted_status(exc: KeyboardInterrupt) -> int:
    """The status of a command stopped at once: 128 + the signal that stopped it."""
    return signal_status(exc.signum if isinstance(exc, StopNow) else signal.SIGINT)


class StopSignals:
    """A context manager: while it is open, the first stop signal sets
    `requested` (the signal's number) and calls `on_stop(signum)`; a second
    one raises `StopNow` (a KeyboardInterrupt), to stop at once. The previous handlers
    come back on exit.

        with StopSignals(on_stop=lambda signum: print("stopping")) as stop:
            while work_left() and stop.requested is None:
                do_one_piece()

    Python delivers signals to the main thread only: opened in another
    thread it installs nothing, and `requested` stays None.
    """

    def __init__(self, on_stop: Callable[[int], None] | None = None) -> None:
        self.requested: int | None = None
        self.on_stop = on_stop
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in stop_signals():
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    @property
    def exit_status(self) -> int | None:
        """128 + the signal received, or None if none was."""
        return None if self.requested is None else signal_status(self.requested)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            raise StopNow(signum)
        self.requested = signum
        if self.on_stop is not None:
            self.on_stop(signum)
