"""Sweeps: train every combination of a grid of settings, then compare.

    microgpt sweep --grid n-embd=8,16 --grid lr=0.01,0.02 --steps 500 --out runs

Each run is `microgpt train` in a process of its own, with the sweep's train
flags plus one value of each grid key, so its losses are exactly those of
the same `microgpt train` command. The sweep's folder holds:

    runs/results.csv               a row per finished run
    runs/loss.png                  the runs' loss curves (with the plot extra)
    runs/n-embd=8_lr=0.01/         a folder per run, named by its grid values:
        checkpoint.json  log.jsonl    the run's checkpoint and loss log
        samples.txt  stderr.txt       what `microgpt train` printed
        run.json                      its train flags and the seconds it took

Running the same command again continues the sweep: finished runs (their
checkpoint's step is their last step) are kept, unfinished ones resume from
their checkpoints (saved every 100 steps unless --save-every says otherwise),
and nothing is retrained. The first Ctrl-C (or SIGTERM) asks every running
run to save and stop; a second stops at once.

Runs go to an executor from `concurrent.futures`: on this machine a pool of
`--workers` threads, each waiting on one `microgpt train` process; with
`--dask ADDRESS`, the executor of a Dask distributed cluster, whose workers
start the same processes. A cluster's workers must have the same version of
microgpt-exact installed (`pip install "microgpt-exact[dask]"`) and see the
sweep's folder at the same path (a shared filesystem), as well as --data if
it is a file.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import csv
import difflib
import hashlib
import importlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from microgpt import checkpoint, plot
from microgpt.console import Console
from microgpt.data import is_url
from microgpt.errors import UsageError
from microgpt.runlog import MEAN_WINDOW, RunLog, read_log
from microgpt.settings import POSITIVE_INT

# Flags of `microgpt train` the sweep sets itself, for each run.
OWN_FLAGS = ("--out", "--resume", "--log")
DEFAULT_SAVE_EVERY = 100  # so that an interrupted run loses at most this many steps
STOP_FILE = ".stop"  # its presence asks every run of the sweep to save and stop
POLL_SECONDS = 0.2
CSV_FIELDS = ("final_loss", "mean_loss", "val_loss", "seconds")
DASK_HINT = 'pip install "microgpt-exact[dask]"'


# --- the command line --------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    """Add `microgpt sweep` to the `microgpt` parser; it takes every flag of
    `train` (already added to `subparsers`) except the outputs it sets itself."""
    parser = subparsers.add_parser(
        "sweep",
        help="train every combination of a grid of settings and compare the runs",
        description="Train every combination of the --grid values, each run a `microgpt train` "
        "process, and write DIR/results.csv, a table sorted by loss and DIR/loss.png. Running "
        "the same command again resumes an interrupted sweep.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2,...",
        help="a train flag without its dashes and the values to try (repeat for more keys)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="the sweep's folder")
    parser.add_argument(
        "--workers",
        type=POSITIVE_INT.parse,
        metavar="N",
        default=None,
        help=f"runs at a time on this machine (the cores: {os.cpu_count() or 1})",
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help=f"run on the Dask cluster whose scheduler is at ADDRESS (needs: {DASK_HINT})",
    )
    group = parser.add_argument_group("train flags", "as for `microgpt train`, for every run")
    actions = {}
    for action in subparsers.choices["train"]._actions:
        if action.option_strings and not set(action.option_strings) & {*OWN_FLAGS, "-h"}:
            group._add_action(copy.copy(action))
            actions[max(action.option_strings, key=len)] = action
    parser.set_defaults(func=main, train_actions=actions)


def main(args: argparse.Namespace, console: Console) -> int:
    actions: dict[str, argparse.Action] = args.train_actions
    if args.dask is not None and args.workers is not None:
        raise UsageError(
            "--workers is for runs on this machine; a Dask cluster runs as many "
            "at a time as its workers have threads"
        )
    grid = parse_grid(args.grid, actions, args)
    fixed = fixed_flags(args, actions, grid)
    folder = Path(args.out)
    specs = plan(grid, fixed, folder)
    prepare(folder, specs)
    with executor_for(args) as (executor, where):
        return Sweep(folder, specs, console).run(executor, where)


def parse_grid(
    texts: list[str], actions: dict[str, argparse.Action], args: argparse.Namespace
) -> dict[str, list[str]]:
    """{key: [value texts]} in the order given; every value is checked as
    `train` would check it, so a bad one stops the sweep before any run."""
    grid: dict[str, list[str]] = {}
    for text in texts:
        key, sep, values = text.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise UsageError(f"--grid {text}: expected KEY=V1,V2,... (e.g. --grid lr=0.01,0.02)")
        action = _grid_action(key, actions)
        if key in grid:
            raise UsageError(f"--grid {key} is given twice; give all its values in one --grid")
        if getattr(args, action.dest) != action.default:
            raise UsageError(f"--{key} is given both as a flag and as a --grid key; give it once")
        items = values.split(",")
        for item in items:
            _check_value(action, key, item)
        if len(set(items)) != len(items):
            raise UsageError(f"--grid {text}: a value is listed twice")
        grid[key] = items
    return grid


def _grid_action(key: str, actions: dict[str, argparse.Action]) -> argparse.Action:
    flag = "--" + key
    if flag in OWN_FLAGS:
        raise UsageError(f"--grid {key}: the sweep sets --{key} itself, for each run")
    if flag not in actions:
        close = difflib.get_close_matches(flag, list(actions), n=1)
        hint = f" (did you mean {close[0][2:]}?)" if close else ""
        raise UsageError(f"--grid {key}: not a flag of microgpt train{hint}")
    action = actions[flag]
    if action.nargs == 0:
        raise UsageError(f"--grid {key}: --{key} takes no value, so there is nothing to vary")
    return action


def _check_value(action: argparse.Action, key: str, text: str) -> None:
    if not text.strip():
        raise UsageError(f"--grid {key}: an empty value (two commas, or a comma at an end?)")
    try:
        value = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise UsageError(f"--grid {key}={text}: {exc}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise UsageError(f"--grid {key}={text}: not one of {choices}")


def fixed_flags(
    args: argparse.Namespace, actions: dict[str, argparse.Action], grid: dict[str, list[str]]
) -> list[str]:
    """The train flags every run gets: those the user gave (as parsed, so
    `train` reads the same values back), and a save interval for resuming."""
    flags: list[str] = []
    for flag, action in actions.items():
        value = getattr(args, action.dest)
        if value is None or value == action.default:
            continue
        flags += [flag] if action.nargs == 0 else [flag, _flag_value(flag, str(value))]
    if args.save_every is None and "save-every" not in grid:
        flags += ["--save-every", str(DEFAULT_SAVE_EVERY)]
    return flags


def _flag_value(flag: str, text: str) -> str:
    # Runs may start in another folder (a cluster worker's): data files by full path.
    if flag == "--data" and not is_url(text):
        return os.path.abspath(text)
    return text


# --- the runs ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One run of the sweep: its grid values, folder and train flags."""

    name: str
    values: dict[str, str]
    folder: Path
    flags: list[str]

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.json"

    @property
    def log(self) -> Path:
        return self.folder / "log.jsonl"

    @property
    def label(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.values.items())

    def train_args(self, resume: bool) -> list[str]:
        """The arguments of `microgpt train` that make (or continue) this run."""
        outputs = ["--out", str(self.checkpoint), "--log", str(self.log)]
        return [*self.flags, *(["--resume", str(self.checkpoint)] if resume else []), *outputs]


def plan(grid: dict[str, list[str]], fixed: list[str], folder: Path) -> list[RunSpec]:
    """Every combination of the grid, in the order the keys and values were given."""
    specs = []
    for combination in itertools.product(*grid.values()):
        values = dict(zip(grid, combination))
        flags = list(fixed)
        for key, value in values.items():
            flags += ["--" + key, _flag_value("--" + key, value)]
        specs.append(RunSpec(run_name(values), values, folder.resolve() / run_name(values), flags))
    return specs


def run_name(values: dict[str, str]) -> str:
    """A folder name from the grid values, e.g. `n-embd=8_lr=0.01`. Characters
    a filesystem may mind are replaced, and then a hash of the values keeps
    names distinct (`data=a/b.txt` and `data=a_b.txt`)."""
    safe = "_".join(f"{key}={re.sub(r'[^A-Za-z0-9.+-]', '-', v)}" for key, v in values.items())
    exact = "_".join(f"{key}={v}" for key, v in values.items())
    if safe != exact or len(safe) > 120:
        digest = hashlib.sha256(json.dumps(values).encode()).hexdigest()[:8]
        safe = f"{safe[:120]}-{digest}"
    return safe


def prepare(folder: Path, specs: list[RunSpec]) -> None:
    """Make the folders, and refuse a folder that holds runs of other settings."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file; give a folder for the sweep")
    try:
        for spec in specs:
            spec.folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"--out {folder}: cannot make the run folders: {exc.strerror or exc}"
        ) from None
    for spec in specs:
        saved = _read_run_record(spec)
        if saved is not None and saved.get("train_flags") != spec.flags:
            raise UsageError(
                f"--out {folder}: run {spec.name} was started with other train flags "
                f"({' '.join(saved.get('train_flags') or [])}); use another --out, or "
                f"the flags the sweep was started with"
            )
    (folder / STOP_FILE).unlink(missing_ok=True)  # left by a sweep that was killed


def _read_run_record(spec: RunSpec) -> dict[str, Any] | None:
    try:
        record = json.loads((spec.folder / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{spec.folder / 'run.json'}: unreadable ({exc}); remove the run's folder"
        ) from None
    return record if isinstance(record, dict) else None


def progress(spec: RunSpec) -> tuple[int, int] | None:
    """(step, last step) from the run's checkpoint, None if it has none yet."""
    if not spec.checkpoint.exists():
        return None
    ckpt = checkpoint.load(spec.checkpoint)
    return ckpt.step, ckpt.train_config.steps


@dataclass
class Outcome:
    """How a `microgpt train` process ended (None: not started, the sweep is stopping)."""

    returncode: int | None
    seconds: float
    error: str = ""
    where: str = ""


def train_process(train_args: list[str], folder: str) -> Outcome:
    """Run `microgpt train TRAIN_ARGS` as a process and wait for it. This runs
    where the executor puts it: a local thread or a Dask worker, which is why
    it asks to stop through a file in the shared folder rather than a signal."""
    run_folder = Path(folder)
    stop = run_folder.parent / STOP_FILE
    if stop.exists():
        return Outcome(None, 0.0)
    command = [sys.executable, "-m", "microgpt", "train", *train_args]
    started = time.perf_counter()
    with (
        open(run_folder / "samples.txt", "a", encoding="utf-8") as out,
        open(run_folder / "stderr.txt", "a", encoding="utf-8") as err,
    ):
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        while True:
            try:
                returncode = process.wait(POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if stop.exists() and process.poll() is None:
                    process.send_signal(signal.SIGTERM)  # train saves, then exits
                    stop = run_folder / "never"  # one request is enough
    error = _last_line(run_folder / "stderr.txt") if returncode else ""
    where = f"{socket.gethostname()}:{os.getpid()}"
    return Outcome(returncode, time.perf_counter() - started, error, where)


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


class Sweep:
    """Runs what is left of a sweep, then reports on all of it."""

    def __init__(self, folder: Path, specs: list[RunSpec], console: Console) -> None:
        self.console = console
        self.say = console.message  # progress and notes: stderr
        self.folder = folder
        self.specs = specs
        self.failed: list[str] = []
        self.stopped_by: int | None = None

    def run(self, executor: cf.Executor, where: str) -> int:
        todo = [(spec, progress(spec)) for spec in self.specs]
        todo = [(spec, p) for spec, p in todo if p is None or p[0] < p[1]]
        resumed = sum(p is not None for _, p in todo)
        self.say(
            f"sweep: {len(self.specs)} runs of microgpt train in {self.folder}: "
            f"{len(self.specs) - len(todo)} finished before, {resumed} to resume, "
            f"{len(todo) - resumed} to start; {where}"
        )
        futures: dict[cf.Future[Outcome], RunSpec] = {}
        with self._stop_on_signals():
            try:
                futures = {self._submit(executor, spec, p): spec for spec, p in todo}
                for done, future in enumerate(cf.as_completed(futures), start=1):
                    self._finished(futures[future], future, f"[{done}/{len(todo)}]")
            except BaseException:
                # A second Ctrl-C, or an error: start nothing more, and have the
                # running runs save (the next sweep removes the stop file).
                (self.folder / STOP_FILE).touch()
                for future in futures:
                    future.cancel()
                raise
            (self.folder / STOP_FILE).unlink(missing_ok=True)
        return self.report()

    def _submit(self, executor: cf.Executor, spec: RunSpec, at: tuple[int, int] | None) -> Any:
        record = _read_run_record(spec) or {}
        if at is None:  # a fresh start: nothing of an earlier attempt is kept
            record = {}
            for name in ("log.jsonl", "samples.txt", "stderr.txt"):
                (spec.folder / name).unlink(missing_ok=True)
        record = {
            "train_flags": spec.flags,
            "seconds": record.get("seconds", 0.0),
            "ran_on": record.get("ran_on", []),
        }
        checkpoint.write_json_atomic(spec.folder / "run.json", record)
        return executor.submit(train_process, spec.train_args(at is not None), str(spec.folder))

    def _finished(self, spec: RunSpec, future: cf.Future[Outcome], counter: str) -> None:
        try:
            outcome = future.result()
        except Exception as exc:  # e.g. a cluster worker died: the run is not lost
            self.failed.append(spec.name)
            self.say(f"{counter} {spec.name}: failed to run: {exc}")
            return
        if outcome.returncode is None:
            self.say(f"{counter} {spec.name}: not started (stopping)")
            return
        record = _read_run_record(spec) or {"train_flags": spec.flags, "seconds": 0.0}
        record["seconds"] = record.get("seconds", 0.0) + outcome.seconds
        record["ran_on"] = [*record.get("ran_on", []), outcome.where]  # host:worker process
        checkpoint.write_json_atomic(spec.folder / "run.json", record)
        at = progress(spec)
        if outcome.returncode == 0 and at is not None and at[0] == at[1]:
            log = read_log(spec.log)
            self.say(
                f"{counter} {spec.name}: done in {record['seconds']:.1f}s, loss "
                f"{log.final_loss():.4f}, mean of the last {min(MEAN_WINDOW, len(log.losses))} "
                f"steps {log.mean_loss():.4f}"
            )
        elif self.stopped_by is not None and at is not None:
            self.say(f"{counter} {spec.name}: stopped, saved at step {at[0]}/{at[1]}")
        else:
            self.failed.append(spec.name)
            status = outcome.returncode
            self.say(f"{counter} {spec.name}: failed (exit {status}): {outcome.error}")

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        def stop(signum: int, frame: FrameType | None) -> None:
            if self.stopped_by is not None:
                raise KeyboardInterrupt
            self.stopped_by = signum
            (self.folder / STOP_FILE).touch()
            self.say("sweep: stopping; running runs save their checkpoints")

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def report(self) -> int:
        """results.csv, the table, the picture; the exit status."""
        rows = [row for spec in self.specs if (row := self._row(spec)) is not None]
        write_results(self.folder / "results.csv", self.specs[0].values, rows)
        for line in markdown_table(rows).splitlines():
            self.console.result(line)
        finished = [s for s in self.specs if s.name in {r["run"] for r in rows}]
        _plot(self.folder / "loss.png", finished, self.say)
        unfinished = len(self.specs) - len(rows)
        if self.stopped_by is not None:
            self.say(
                f"sweep: stopped with {unfinished} runs unfinished; run the same "
                f"command again to continue"
            )
            return 128 + self.stopped_by
        if self.failed:
            self.say(
                f"sweep: {len(self.failed)} of {len(self.specs)} runs failed "
                f"({', '.join(self.failed)}); see their stderr.txt"
            )
            return 1
        return 0

    def _row(self, spec: RunSpec) -> dict[str, str] | None:
        at = progress(spec)
        if at is None or at[0] != at[1] or not spec.log.exists():
            return None
        log = read_log(spec.log)
        record = _read_run_record(spec) or {}
        val = log.final_val_loss()
        return {
            "run": spec.name,
            **spec.values,
            "final_loss": repr(log.final_loss()),
            "mean_loss": repr(log.mean_loss()),
            "val_loss": "" if val is None else repr(val),
            "seconds": f"{record.get('seconds', 0.0):.1f}",
        }


# --- results -------------------------------------------------------------------------


def write_results(path: Path, grid_values: dict[str, str], rows: list[dict[str, str]]) -> None:
    fields = ["run", *grid_values, *CSV_FIELDS]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def sort_key(rows: list[dict[str, str]]) -> str:
    """Validation loss when every run has one, else the mean training loss."""
    return "val_loss" if rows and all(row["val_loss"] for row in rows) else "mean_loss"


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "no finished runs"
    key = sort_key(rows)
    rows = sorted(rows, key=lambda row: float(row[key]))
    fields = [f for f in rows[0] if f != "run" and (f != "val_loss" or key == "val_loss")]

    def cell(field: str, text: str) -> str:
        return f"{float(text):.4f}" if field.endswith("loss") and text else text

    lines = [
        "| " + " | ".join(fields) + " |",
        "|" + "|".join("---" for _ in fields) + "|",
        *("| " + " | ".join(cell(f, row[f]) for f in fields) + " |" for row in rows),
    ]
    return f"runs sorted by {key}:\n" + "\n".join(lines)


def _plot(path: Path, specs: list[RunSpec], say: Callable[[str], None]) -> None:
    """The runs' loss curves, when the plot extra is installed."""
    try:
        plot.require_matplotlib()
    except UsageError:
        say(f"(no loss.png: {plot.INSTALL_HINT} to draw it)")
        return
    if not specs:
        return
    logs: list[RunLog] = [read_log(spec.log) for spec in specs]
    plot.save_figure(plot.loss_figure(logs, [spec.label for spec in specs]), path, "--out")
    say(f"wrote {path}")


# --- executors -------------------------------------------------------------------------


@contextmanager
def executor_for(args: argparse.Namespace) -> Iterator[tuple[cf.Executor, str]]:
    """This machine's thread pool, or a Dask cluster's executor: the sweep
    submits to either the same way."""
    if args.dask is None:
        workers = args.workers or os.cpu_count() or 1
        with cf.ThreadPoolExecutor(max_workers=workers) as pool:
            yield pool, f"{workers} at a time on this machine"
        return
    try:
        # imported by name: distributed has no type hints, and is optional
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        raise UsageError(
            f"--dask needs the Dask extra, which is not installed: {DASK_HINT}"
        ) from None
    try:
        client = distributed.Client(args.dask, timeout="10s")
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"--dask {args.dask}: cannot reach the scheduler ({exc})") from None
    try:
        workers = len(client.scheduler_info()["workers"])
        yield (
            client.get_executor(pure=False),
            f"on the Dask cluster at {args.dask} ({workers} workers)",
        )
    finally:
        client.close()
