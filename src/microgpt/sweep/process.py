"""One run's `microgpt train` process, started and watched where the
executor puts it: a thread of the sweep, or a Dask worker.

The process is the installed package's (`-m microgpt.sweep.child`, never a
`microgpt.py` of the current folder: it starts in the run's folder, which
holds only the sweep's files, and with `-P` where Python has it). It runs in
a session of its own, so a Ctrl-C at the terminal reaches the sweep alone,
which asks every run to stop through a stop file in the sweep's folder (a
Dask worker sees it too); the run sees it, or its parent's death, and stops
itself with a save (see `microgpt.sweep.child`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from microgpt.files import open_no_follow
from microgpt.sweep.folder import STOP_FILE

POLL_SECONDS = 0.2  # how often the sweep looks at its runs

NEW_PROCESS_GROUP = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)  # Windows only

# -P: the current folder is not put on the module path (Python 3.11+).
SAFE_PATH = ["-P"] if sys.version_info >= (3, 11) else []


@dataclass(frozen=True)
class Attempt:
    """How one attempt at a run ended (returncode None: not started, the sweep is stopping)."""

    returncode: int | None
    seconds: float
    error: str = ""
    where: str = ""


def command(stop: Path) -> list[str]:
    """The command line of a run's process, whose parent is this process (its
    train arguments go to its standard input: see `microgpt.sweep.child`)."""
    child = [sys.executable, *SAFE_PATH, "-m", "microgpt.sweep.child", str(os.getpid())]
    return [*child, str(stop.resolve())]


def train_process(train_args: list[str], folder: str) -> Attempt:
    """Run `microgpt train TRAIN_ARGS` in the run's `folder` and wait for it."""
    run_folder = Path(folder)
    stop = run_folder.parent / STOP_FILE
    if stop.exists():
        return Attempt(None, 0.0)
    started = time.perf_counter()
    with (
        open(run_folder / "samples.txt", "a", encoding="utf-8", opener=_no_follow) as out,
        open(run_folder / "stderr.txt", "a", encoding="utf-8", opener=_no_follow) as err,
    ):
        process = subprocess.Popen(
            command(stop),
            cwd=run_folder,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            start_new_session=True,  # POSIX: a Ctrl-C or hang-up reaches the sweep alone
            creationflags=NEW_PROCESS_GROUP,  # Windows: the console's Ctrl-C likewise
        )
        _hand_over(process, train_args)
        returncode = process.wait()  # the run stops itself when asked (see child)
    error = _last_line(run_folder / "stderr.txt") if returncode else ""
    where = f"{socket.gethostname()}:{os.getpid()}"
    return Attempt(returncode, time.perf_counter() - started, error, where)


def _hand_over(process: subprocess.Popen[bytes], train_args: list[str]) -> None:
    """Give the run its train arguments (on its standard input, never its
    command line: see `microgpt.sweep.child`)."""
    assert process.stdin is not None
    try:
        with process.stdin:
            process.stdin.write(json.dumps(train_args).encode("utf-8"))
    except OSError:  # a broken pipe (EINVAL on Windows)
        pass  # the run ended before it read them: its status says how


def _no_follow(path: str, flags: int) -> int:
    return open_no_follow(path, flags)


def _last_line(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace", opener=_no_follow) as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
