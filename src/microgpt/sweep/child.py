"""A sweep's run: `microgpt train`, as a child that stops when its sweep is gone.

    python -P -m microgpt.sweep.child PARENT_PID train ARGS...

When the process that started it (the sweep, or a Dask worker) dies, even by
SIGKILL, the run gets SIGTERM, which train answers by saving its checkpoint
and stopping, as it does for Ctrl-C. On Linux the kernel sends the signal
(prctl PR_SET_PDEATHSIG); elsewhere a thread checks the parent every second.
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


def follow(parent: int) -> None:
    """SIGTERM this process when `parent` is no longer its parent."""
    if not _death_signal():
        threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it died before the signal was asked for
        os.kill(os.getpid(), signal.SIGTERM)


def _death_signal() -> bool:
    """Ask the kernel for SIGTERM when the parent dies; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
