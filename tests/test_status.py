"""Exit statuses and stop signals, defined once (`microgpt.status`): the
first stop signal asks, between two pieces of work; a second stops at once."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from microgpt import status
from microgpt.status import StopSignals


def test_statuses_as_a_shell_shows_them() -> None:
    assert status.signal_status(signal.SIGINT) == status.EXIT_INTERRUPTED == 130
    assert status.signal_status(signal.SIGTERM) == 143
    assert status.stream_status(broken_pipe=True) == status.EXIT_BROKEN_PIPE == 141
    assert status.stream_status(broken_pipe=False) == status.EXIT_FAILED == 1
    assert status.interrupted_status(KeyboardInterrupt()) == 130  # Python's own Ctrl-C


@pytest.mark.posix_only("SIGHUP, signals to this process")
@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_the_first_signal_asks_and_the_second_stops_at_once(name: str) -> None:
    signum = getattr(signal, name)
    missed: list[int] = []  # reached the handler outside: StopSignals did not take it

    def outside(signum: int, frame: object) -> None:
        missed.append(signum)

    before = signal.signal(signum, outside)
    try:
        asked: list[int] = []
        with StopSignals(on_stop=asked.append) as stop:
            os.kill(os.getpid(), signum)
            assert stop.requested == signum and asked == [signum]
            assert stop.exit_status == 128 + signum
            with pytest.raises(KeyboardInterrupt) as info:
                os.kill(os.getpid(), signum)
            assert status.interrupted_status(info.value) == 128 + signum
        assert signal.getsignal(signum) is outside  # put back as it was
        assert missed == []
    finally:
        signal.signal(signum, before)


def test_only_signals_this_platform_has() -> None:
    names = {signal.Signals(s).name for s in status.stop_signals()}
    assert {"SIGINT", "SIGTERM"} <= names
    assert ("SIGHUP" in names) == hasattr(signal, "SIGHUP")


def test_outside_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGINT)
    seen: list[object] = []

    def work() -> None:
        with StopSignals() as stop:
            seen.append(signal.getsignal(signal.SIGINT))
            seen.append(stop.requested)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [before, None]
