"""A sweep's run: `microgpt train`, as a child that stops when its sweep is gone.

    python -P -m microgpt.sweep.child PARENT_PID train ARGS...

When the process that started it (the sweep, or a Dask worker) dies, even by
SIGKILL, the run gets one SIGTERM, which train answers by saving its
checkpoint and stopping, as it does for Ctrl-C. On Linux the kernel tells
(prctl PR_SET_PDEATHSIG, with SIGUSR1: it is sent each time a thread of the
parent that the child was handed to ends, and a second SIGTERM would stop
train without saving, so SIGTERM is sent once, when the parent is gone);
elsewhere a thread checks the parent every second.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

from microgpt import cli

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_SECONDS = 1.0


def main(argv: list[str]) -> int:
    follow(int(argv[0]))
    return cli.main(argv[1:])


class _Orphan:
    """Sends this process SIGTERM once, when its parent is gone."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self.told = False

    def check(self, *_: object) -> None:
        if not self.told and os.getppid() != self.parent:
            self.told = True
            os.kill(os.getpid(), signal.SIGTERM)

    def watch(self) -> None:
        while not self.told:
            time.sleep(WATCH_SECONDS)
            self.check()


def follow(parent: int) -> None:
    """SIGTERM this process, once, when `parent` is no longer its parent."""
    orphan = _Orphan(parent)
    if not _death_signal(orphan):
        threading.Thread(target=orphan.watch, daemon=True).start()
    orphan.check()  # it may have died before it could be followed


def _death_signal(orphan: _Orphan) -> bool:
    """Have the kernel signal the parent's death; False where it cannot."""
    if not sys.platform.startswith("linux") or not hasattr(signal, "SIGUSR1"):
        return False
    previous = signal.signal(signal.SIGUSR1, orphan.check)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if int(libc.prctl(PR_SET_PDEATHSIG, signal.SIGUSR1, 0, 0, 0)) == 0:
            return True
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGUSR1, previous)
    return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
