"""`microgpt sweep`: the command line. This is the part of the sweep that
speaks of flags; it checks everything before the sweep's folder is touched
(the grid, the data, the Dask scheduler), then plans, claims the folder and
runs (see the package's docstring)."""

from __future__ import annotations

import argparse
import copy
import difflib
import os
from contextlib import ExitStack
from typing import Any

from microgpt import settings as st
from microgpt.console import Console
from microgpt.data import DEFAULT_DATA, is_url, load_documents
from microgpt.errors import UsageError
from microgpt.limits import Limits
from microgpt.settings import POSITIVE_INT
from microgpt.sweep import folder as sweep_folder
from microgpt.sweep.plan import (
    DEFAULT_MAX_RUNS,
    Grid,
    as_argument,
    check_distinct,
    check_size,
    plan,
    public,
)
from microgpt.sweep.running import DASK_HINT, Sweep, dask_client, executor_for

# Flags of `microgpt train` the sweep sets itself, for each run.
OWN_FLAGS = ("--out", "--resume", "--log")
DEFAULT_SAVE_EVERY = 100  # so that an interrupted run loses at most this many steps


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
    parser.add_argument(
        "--max-runs",
        type=POSITIVE_INT.parse,
        metavar="N",
        default=DEFAULT_MAX_RUNS,
        help=f"refuse a grid of more runs than this (default: {DEFAULT_MAX_RUNS})",
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
    check_size(grid, args.max_runs)
    fixed = fixed_flags(args, actions, grid)
    limits = Limits(**st.given(args, Limits))
    check_data(args.data, grid.get("data"), limits)
    with ExitStack() as stack:
        client = stack.enter_context(dask_client(args.dask))
        folder = sweep_folder.claim(args.out, grid, fixed, stack)
        specs = plan(grid, fixed, folder)
        sweep = Sweep(folder, specs, limits, console)
        sweep_folder.prepare_runs(specs, sweep.say)
        # the folder stays locked until the executor has waited for every run
        executor, where = stack.enter_context(executor_for(client, args.workers))
        status = sweep.run(executor, where)
    return status


def parse_grid(
    texts: list[str], actions: dict[str, argparse.Action], args: argparse.Namespace
) -> Grid:
    """{key: [value texts]} in the order given; every value is checked as
    `train` would check it, so a bad one stops the sweep before any run."""
    grid: Grid = {}
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
        parsed = [_check_value(action, key, item) for item in items]
        if len(set(map(repr, parsed))) != len(parsed):
            raise UsageError(f"--grid {public(text)}: a value is listed twice")
        check_distinct(key, items)
        grid[key] = [_absolute(key, item) for item in items]
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


def _check_value(action: argparse.Action, key: str, text: str) -> Any:
    if not text.strip():
        raise UsageError(f"--grid {key}: an empty value (two commas, or a comma at an end?)")
    try:
        value = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise UsageError(f"--grid {key}={public(text)}: {exc}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise UsageError(f"--grid {key}={public(text)}: not one of {choices}")
    return value


def fixed_flags(
    args: argparse.Namespace, actions: dict[str, argparse.Action], grid: Grid
) -> list[str]:
    """The train arguments every run gets: the flags the user gave (as parsed,
    so `train` reads the same values back), and a save interval for resuming."""
    flags: list[str] = []
    for flag, action in actions.items():
        value = getattr(args, action.dest)
        if value is None or value == action.default:
            continue
        text = _absolute(flag[2:], str(value))
        flags.append(flag if action.nargs == 0 else as_argument(flag, text))
    if args.save_every is None and "save-every" not in grid:
        flags.append(as_argument("--save-every", str(DEFAULT_SAVE_EVERY)))
    return flags


def _absolute(key: str, text: str) -> str:
    # Runs start in their own folders (and perhaps on a cluster worker): data
    # files by full path.
    if key == "data" and text != DEFAULT_DATA and not is_url(text):
        return os.path.abspath(text)
    return text


def check_data(fixed: str | None, grid_values: list[str] | None, limits: Limits) -> None:
    """Read every data source the runs will read (a URL is downloaded into
    the cache, where the runs find it), so a bad one stops the sweep now."""
    for source in grid_values or [fixed or DEFAULT_DATA]:
        try:
            load_documents(source, limits)
        except UsageError as exc:
            where = "--grid data" if grid_values else "--data"
            raise UsageError(f"{where} {public(source)}: {exc}") from None
