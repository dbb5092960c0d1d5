"""A sweep's run: `microgpt train`, as a child that stops when its sweep
asks it to or is gone.

    python -P -m microgpt.sweep.child PARENT_PID STOP_FILE < TRAIN_ARGS.json

The train arguments come on standard input as a JSON list of strings, not
on the command line, which every user of the machine can read (`ps`): a
`--data` URL may hold a password.

The run asks itself to stop, once, with SIGTERM (which train answers by
saving its checkpoint and stopping, as it does for Ctrl-C) when STOP_FILE
appears (the sweep was stopped: Ctrl-C, SIGTERM, SIGHUP) or when the process
that started it (the sweep, or a Dask worker) dies, even by SIGKILL. The
sweep never signals its runs itself: on Windows a signal sent to another
process is TerminateProcess, which would kill the run without its save, so
every platform takes this one path. On Linux the kernel tells of the
parent's death at once (prctl PR_SET_PDEATHSIG, with SIGUSR1: it is sent each
time a thread of the parent that the child was handed to ends, and a second
SIGTERM would stop train without saving, hence once); a thread also checks
the parent and the stop file every WATCH_SECONDS.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from microgpt import cli
from microgpt.status import EXIT_USAGE

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_SECONDS = 0.2


def main(argv: list[str]) -> int:
    try:
        train_args = read_train_args(sys.stdin.read())
    except ValueError as exc:  # e.g. its sweep died before handing them over
        print(f"microgpt sweep run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    follow(int(argv[0]), Path(argv[1]))
    return cli.main(["train", *train_args])


def read_train_args(text: str) -> list[str]:
    """The train arguments a sweep hands its run: a JSON list of strings."""
    try:
        args = json.loads(text)
    except ValueError:
        args = None
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ValueError("no train arguments on standard input (a JSON list of strings)")
    return args


class _Orphan:
    """Asks this process to stop, once, when its parent is gone or the
    sweep's stop file appears."""

    def __init__(self, parent: int, stop_file: Path) -> None:
        self.parent = parent
        self.stop_file = stop_file
        self.told = False
        self._once = threading.Lock()  # the watch thread and SIGUSR1 both check

    def check(self, *_: object) -> None:
        if self.told or (os.getppid() == self.parent and not self.stop_file.exists()):
            return
        with self._once:
            if self.told:
                return
            self.told = True
        _stop_this_process()

    def watch(self) -> None:
        while not self.told:
            time.sleep(WATCH_SECONDS)
            self.check()


def follow(parent: int, stop_file: Path) -> None:
    """Stop this process, once, when `parent` is no longer its parent or
    `stop_file` exists."""
    orphan = _Orphan(parent, stop_file)
    orphan.check()  # before any handler: it may have died, or been stopped, already
    _death_signal(orphan)
    threading.Thread(target=orphan.watch, daemon=True).start()


def _stop_this_process() -> None:
    """SIGTERM to this process, as `kill` would send it: train's handler saves
    and stops; before train has one, the run ends as a killed one would.
    raise_signal, not os.kill: on Windows os.kill is TerminateProcess."""
    signal.raise_signal(signal.SIGTERM)


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
