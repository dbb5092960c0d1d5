"""Planning: a grid of train settings -> the runs of a sweep.

A run is one combination of the grid's values. Its folder name is made from
those values with every secret taken out (a URL's `user:password@` and query
string), so that two runs' names can never be the same file, on any
filesystem: a name holds only lower-case letters, digits, `.+-` and the `=`
and `_` that join keys and values; anything else (upper case, `/`, spaces,
non-ASCII) is replaced and a hash of the values is added after a `~`, which
no unhashed name contains.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from microgpt.data import is_url
from microgpt.errors import Name, UsageError

Grid = dict[str, list[str]]  # setting (as its flag, without dashes) -> value texts, in order
DEFAULT_MAX_RUNS = 1000
NAME_CHARS = re.compile(r"[^a-z0-9.+-]")
MAX_NAME = 120  # characters of values kept in a folder name (the hash is added after)
HIDDEN = "***"


def public(text: str) -> str:
    """`text` as a sweep may write or print it: a URL without its user,
    password and query string (which often holds an access token)."""
    if not is_url(text):
        return text
    parts = urllib.parse.urlsplit(text)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{HIDDEN}@{host}" if "@" in parts.netloc else host
    query = HIDDEN if parts.query else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query, fragment=""))


def public_flags(flags: list[str]) -> list[str]:
    """Train arguments (`--flag=value`) with the secrets taken out of their values."""
    out = []
    for flag in flags:
        name, sep, value = flag.partition("=")
        out.append(f"{name}{sep}{public(value)}" if sep else flag)
    return out


def as_argument(flag: str, value: str) -> str:
    """`--flag=value`: a value that begins with `-` is then never read as a flag."""
    return f"{flag}={value}"


def check_size(grid: Grid, max_runs: int) -> int:
    """The number of runs, refused before anything is made if above `max_runs`."""
    count = math.prod(len(values) for values in grid.values())
    if count > max_runs:
        sizes = " x ".join(str(len(values)) for values in grid.values())
        raise UsageError(
            f"the grid makes {count:,} runs ({sizes}), more than the limit of {max_runs:,}; "
            "raise it with ",
            Name("max_runs"),
            " to run them all",
        )
    return count


def check_distinct(key: str, values: list[str]) -> None:
    """Refuse values of one key that would be the same run, or show the same."""
    seen: dict[str, str] = {}
    for value in values:
        shown = public(value)
        if shown in seen:
            same = "is listed twice" if seen[shown] == value else "differs only in a secret"
            raise UsageError(Name("grid"), f" {key}: the value {shown} {same}")
        seen[shown] = value


@dataclass(frozen=True)
class RunSpec:
    """One run of the sweep: its grid values, folder and train arguments.

    `values` and `flags` are what `microgpt train` gets (with any secret);
    `public_values` and `public_flags` are what the sweep writes and prints."""

    name: str
    values: dict[str, str]
    folder: Path
    flags: list[str]

    @property
    def public_values(self) -> dict[str, str]:
        return {key: public(value) for key, value in self.values.items()}

    @property
    def public_flags(self) -> list[str]:
        return public_flags(self.flags)

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.json"

    @property
    def log(self) -> Path:
        return self.folder / "log.jsonl"

    @property
    def label(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.public_values.items())

    def train_args(self, resume: bool) -> list[str]:
        """The arguments of `microgpt train` that make (or continue) this run."""
        outputs = [as_argument("--out", str(self.checkpoint)), as_argument("--log", str(self.log))]
        resuming = [as_argument("--resume", str(self.checkpoint))] if resume else []
        return [*self.flags, *resuming, *outputs]


def plan(grid: Grid, fixed: list[str], folder: Path) -> list[RunSpec]:
    """Every combination of the grid, in the order the keys and values were given.
    `fixed` are the train arguments every run gets; `folder` is absolute."""
    specs = []
    for combination in itertools.product(*grid.values()):
        values = dict(zip(grid, combination))
        flags = [*fixed, *(as_argument("--" + key, value) for key, value in values.items())]
        name = run_name(values)
        specs.append(RunSpec(name, values, folder / name, flags))
    return specs


def run_name(values: dict[str, str]) -> str:
    """A folder name from the grid values, e.g. `n-embd=8_lr=0.01` (see the
    module's docstring). Only public values go into it, and into its hash."""
    shown = {key: public(value) for key, value in values.items()}
    exact = "_".join(f"{key}={value}" for key, value in shown.items())
    safe = "_".join(f"{key}={NAME_CHARS.sub('-', value)}" for key, value in shown.items())
    if safe == exact and len(safe) <= MAX_NAME:
        return safe
    digest = hashlib.sha256(json.dumps(shown).encode()).hexdigest()[:12]
    return f"{safe[:MAX_NAME]}~{digest}"
