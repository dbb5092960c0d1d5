"""A sweep's folder: owned by one sweep, holding only what the sweep made.

    DIR/sweep.json       the marker: this folder is a sweep of this grid
    DIR/.sweep.json.lock held by the sweep that is running here
    DIR/results.csv  DIR/loss.png  DIR/NAME/ (a folder per run)

A folder is taken only if it is empty or is a sweep of the same grid and
train settings (which then continues); anything else is refused. While a
sweep runs it holds the lock, so a second sweep on the folder is refused.
Nothing in the folder is followed through a symbolic link: a run folder, a
run's file, results.csv or loss.png that is a link (or not a regular file),
and a file in a run folder that the sweep did not make, are refused before
any run starts, and nothing is deleted or replaced before that check.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from microgpt.errors import Name, UsageError
from microgpt.files import OutputLock, kind_of, lock_holder, show, write_text_atomic
from microgpt.sweep import record
from microgpt.sweep.plan import Grid, RunSpec, public, public_flags

OUT = Name("out", "sweep folder")  # the setting that names a sweep's folder
GRID = Name("grid")

MARKER = "sweep.json"
FORMAT = "microgpt-sweep"
VERSION = 1
STOP_FILE = ".stop"  # its presence asks every run of the sweep to save and stop
RESULTS = "results.csv"
PLOT = "loss.png"
# What a run folder may hold: the run's files, and train's locks and
# temporary files beside them.
RUN_FILES = ("checkpoint.json", "log.jsonl", "samples.txt", "stderr.txt", record.FILE)
RUN_HIDDEN = re.compile(r"\.(checkpoint\.json|log\.jsonl|run\.json)\.(lock|[^/]*\.tmp)")
OWN_HIDDEN = re.compile(r"\.sweep\.json\.(lock|[^/]*\.tmp)")  # the lock, a marker being written
FRESH_START = ("log.jsonl", "samples.txt", "stderr.txt")  # cleared when a run starts over
EARLIER_RUN_WAIT = 60.0  # seconds a run of a killed sweep gets to save and stop


def claim(out: str, grid: Grid, fixed: list[str], stack: ExitStack) -> Path:
    """Take `out` for this sweep (see the module's docstring) and hold it
    until `stack` closes; returns its absolute path."""
    folder = Path(os.path.realpath(out))  # the one link followed: --out itself
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(OUT, f" {show(out)} is a file; give a folder for the sweep") from None
    except OSError as exc:
        raise UsageError(OUT, f" {show(out)}: cannot make the folder: {exc.strerror}") from None
    stack.callback(OutputLock(folder / MARKER, OUT, out).acquire().release)
    grid = {key: [public(value) for value in values] for key, values in grid.items()}
    fixed = public_flags(fixed)
    marker = {"format": FORMAT, "version": VERSION, "grid": grid, "train_flags": fixed}
    saved = _read_marker(folder / MARKER, out)
    if saved is None:
        if any(not OWN_HIDDEN.fullmatch(entry.name) for entry in os.scandir(folder)):
            raise UsageError(
                OUT,
                f" {show(out)} is not empty and holds no sweep ({MARKER}); "
                "give a new or empty folder",
            )
        _write_json(folder / MARKER, marker)
    elif json.dumps(saved.get("grid")) != json.dumps(grid):  # the keys' order names the runs
        raise UsageError(
            OUT,
            f" {show(out)} holds a sweep of another grid ({_grid_text(saved.get('grid'))}); "
            "give the same ",
            GRID,
            " to continue it, or another ",
            OUT,
        )
    elif saved.get("train_flags") != fixed:
        flags = saved.get("train_flags")
        raise UsageError(
            OUT,
            f" {show(out)} holds a sweep started with other train flags "
            f"({' '.join(flags) if isinstance(flags, list) else flags}); give the flags it "
            "was started with to continue it, or another ",
            OUT,
        )
    for name in (RESULTS, PLOT):
        regular_or_missing(folder / name)
    (folder / STOP_FILE).unlink(missing_ok=True)  # left by a sweep that was killed
    return folder


def _read_marker(path: Path, out: str) -> dict[str, Any] | None:
    try:
        regular_or_missing(path)
        with open(path, "rb") as f:
            marker = json.loads(f.read(1 << 20))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        marker = None
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        raise UsageError(OUT, f" {show(out)}: {MARKER} is not a sweep's marker; give another ", OUT)
    return marker


def _grid_text(grid: Any) -> str:
    if not isinstance(grid, dict):
        return "unreadable"
    return " ".join(f"{key}={','.join(map(str, values))}" for key, values in grid.items())


def regular_or_missing(path: Path) -> None:
    """Refuse a path the sweep writes that is a link or not a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise UsageError(f"{show(path)} is a symbolic link; a sweep never writes through one")
    if not stat.S_ISREG(mode):
        raise UsageError(f"{show(path)} is {kind_of(mode)}; a sweep writes only regular files")


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1) + "\n"

    write_text_atomic(path, text)


# --- run folders -----------------------------------------------------------------------


def prepare_runs(specs: list[RunSpec], say: Callable[[str], None]) -> None:
    """Make the runs' folders, check everything in them, and wait for any run
    of a killed sweep still saving there (it was told to stop when its sweep
    died). Nothing is deleted here."""
    for spec in specs:
        _run_folder(spec)
    busy = [spec for spec in specs if _held_lock(spec) is not None]
    if busy:
        say(f"sweep: waiting for {len(busy)} run(s) of an earlier sweep to save and stop")
    deadline = time.monotonic() + EARLIER_RUN_WAIT
    for spec in busy:
        while (holder := _held_lock(spec)) is not None:
            if time.monotonic() > deadline:
                raise UsageError(
                    f"run {spec.name} is still being written by process {holder}, a run of an "
                    f"earlier sweep; stop it, then run the sweep again"
                )
            time.sleep(0.1)


def _run_folder(spec: RunSpec) -> None:
    try:
        os.mkdir(spec.folder)
    except FileExistsError:
        mode = os.lstat(spec.folder).st_mode
        if not stat.S_ISDIR(mode):
            what = "a symbolic link" if stat.S_ISLNK(mode) else kind_of(mode)
            raise UsageError(
                f"{show(spec.folder)} is {what}, not a run folder the sweep made; move it away"
            ) from None
    except OSError as exc:
        raise UsageError(
            f"{show(spec.folder)}: cannot make the run's folder: {exc.strerror}"
        ) from None
    entries = sorted(os.listdir(spec.folder))
    for name in entries:
        if name not in RUN_FILES and not RUN_HIDDEN.fullmatch(name):
            raise UsageError(
                f"{show(spec.folder / name)} was not made by the sweep; move it away to continue"
            )
        regular_or_missing(spec.folder / name)
    if entries and record.FILE not in entries:
        raise UsageError(
            f"{show(spec.folder)} holds files but no {record.FILE}: not made by the sweep; "
            f"move it away to continue"
        )
    saved = record.read(spec.folder)
    if saved is None:
        record.write(spec.folder, record.RunRecord(tuple(spec.public_flags)))
    elif list(saved.train_flags) != spec.public_flags:
        raise UsageError(
            f"run {spec.name} was started with other train flags "
            f"({' '.join(saved.train_flags)}); use another ",
            OUT,
            ", or the flags the sweep was started with",
        )


def _held_lock(spec: RunSpec) -> str | None:
    """The process holding a lock train takes on the run's outputs, if any."""
    for name in ("checkpoint.json", "log.jsonl"):
        holder = lock_holder(spec.folder / name)
        if holder is not None:
            return holder
    return None


def start_over(spec: RunSpec) -> None:
    """Remove what an earlier attempt of a run that left no checkpoint wrote
    (checked to be the sweep's regular files by `prepare_runs`)."""
    for name in FRESH_START:
        (spec.folder / name).unlink(missing_ok=True)
