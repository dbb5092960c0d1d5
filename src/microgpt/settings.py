"""Settings declared once.

Every setting of the model, the training, the sampling and the limits is a
field of a frozen dataclass, declared with `setting(default, help, rule)`.
Everything else derives from that one declaration: the dataclass checks its
values when it is built (from Python, from the command line or from a
checkpoint), the command line's flags take their type, default and help text
from it, and the command that resumes a run is written from it.

    @dataclass(frozen=True)
    class TrainConfig(Settings):
        what = "training"  # how messages name these settings
        lr: float = setting(0.01, "peak learning rate", Rule("float", low=0.0, low_open=True))

`Settings`, the base, checks every field against its rule when the dataclass
is built (then `check()`, for rules between settings), and reads and writes
the settings as a dict (`to_dict`, `from_dict`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from microgpt.errors import UsageError

METAVARS = {"int": "N", "float": "X", "size": "SIZE", "text": "TEXT"}
SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class SettingError(UsageError):
    """A setting outside its range. `name` is the field's name; the message
    reads `name requirement`, e.g. "lr must be positive, got 0"."""

    def __init__(self, name: str, problem: str, other: str = "") -> None:
        super().__init__(f"{name} {problem}")
        self.name = name
        self.problem = problem
        self.other = other  # another setting the problem names


@dataclass(frozen=True)
class Rule:
    """What values a setting takes.

    kind: "int" (a whole number), "float" (a finite number; an int is fine),
    "size" (a number of bytes; written 64M, 1.5G, ...), "choice" (one of
    `choices`) or "text". `low`/`high` bound numbers (excluded if `*_open`); `optional`
    also allows None (the setting is off); `or_zero` also allows 0 (a value
    with a meaning of its own); `divides` names another setting this one must
    be divisible by.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False
    or_zero: bool = False
    divides: str = ""

    def requirement(self) -> str:
        """The range in words: "at least 1", "positive", "at least 0 and below 1"."""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        low = self.low
        if low == 0 and self.low_open and self.high is None:
            return "positive"
        if low == 0 and not self.low_open and self.high is None and self.kind == "int":
            return "0 or more"
        parts = ["0 or"] if self.or_zero else []
        if low is not None:
            parts.append(f"{'above' if self.low_open else 'at least'} {_number(low)}")
        if self.high is not None:
            parts.append(f"{'below' if self.high_open else 'at most'} {_number(self.high)}")
        return " and ".join(parts).replace("0 or and ", "0 or ") or "a number"

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` (None if nothing)."""
        if value is None:
            return None if self.optional else "must be set"
        if self.kind == "text":
            return None if isinstance(value, str) else f"must be text, got {value!r}"
        if self.kind == "choice":
            ok = isinstance(value, str) and value in self.choices
            return None if ok else f"must be {self.requirement()}, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be {_kind_words(self.kind)}, got {value!r}"
        if self.kind in ("int", "size") and not isinstance(value, int):
            return f"must be a whole number, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if not self._in_range(value):
            return f"must be {self.requirement()}, got {_number(value)}"
        return None

    def _in_range(self, value: float) -> bool:
        if self.or_zero and value == 0:
            return True
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None:
            return value < self.high if self.high_open else value <= self.high
        return True

    def parse(self, text: str) -> Any:
        """A value from command-line text; raises argparse.ArgumentTypeError."""
        if self.kind in ("choice", "text"):
            value: Any = _as_utf8(text)
        elif self.kind == "int":
            value = _parse_int(text)
        elif self.kind == "size":
            value = parse_size(text)
        else:
            value = _parse_float(text)
        problem = self.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value


POSITIVE_INT = Rule("int", low=1)  # a count: steps, layers, workers, ...


def _as_utf8(text: str) -> str:
    """Command-line text as UTF-8: under a locale that cannot decode it (LANG=C)
    Python keeps the bytes as escapes; the data is UTF-8, so read them as that."""
    try:
        return os.fsencode(text).decode("utf-8")
    except UnicodeError:
        return text


def _kind_words(kind: str) -> str:
    return {"int": "a whole number", "size": "a size in bytes"}.get(kind, "a number")


def _number(value: float) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10**6 else str(value)


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number, got {shorten(text)!r}"
        ) from None


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {shorten(text)!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def parse_size(text: str) -> int:
    """Bytes from "4096", "64k", "64M", "1.5G" (binary units: 1M = 2**20 bytes)."""
    body = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = body[-1:] if body[-1:] in SIZE_UNITS and body[-1:] else ""
    try:
        number = float(body[: len(body) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 64M or 2G, got {shorten(text)!r}"
        ) from None
    if not math.isfinite(number) or number < 0 or number * SIZE_UNITS[unit] >= 2**63:
        raise argparse.ArgumentTypeError(f"expected a size such as 64M or 2G, got {text!r}")
    return int(number * SIZE_UNITS[unit])


def format_size(n: float) -> str:
    """A byte count for people: 512 bytes, 64.0 MiB, 1.5 GiB."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def shorten(text: str, limit: int = 80) -> str:
    """`text`, with its middle elided if long, so that a message stays short."""
    if len(text) <= limit:
        return text
    keep = (limit - 5) // 2
    return f"{text[:keep]}[...]{text[-keep:]}"


# --- declaring and checking ------------------------------------------------------


def setting(default: Any, help: str, rule: Rule, *, flag: bool = True) -> Any:
    """A dataclass field with its default, help text and rule. `flag=False`
    keeps it off the command line (e.g. the vocabulary size, from the data)."""
    meta = {"help": help, "rule": rule, "flag": flag}
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def declared(cls: Any) -> list[dataclasses.Field[Any]]:
    """The fields of a settings dataclass that carry a rule."""
    return [f for f in dataclasses.fields(cls) if "rule" in f.metadata]


def rule_of(cls: Any, name: str) -> Rule:
    for f in declared(cls):
        if f.name == name:
            rule: Rule = f.metadata["rule"]
            return rule
    raise KeyError(name)


def check_settings(config: Any) -> None:
    """Raise SettingError for the first value outside its rule."""
    for f in declared(config):
        value = getattr(config, f.name)
        rule: Rule = f.metadata["rule"]
        problem = rule.problem(value)
        if problem is None and rule.divides and value is not None:
            other = getattr(config, rule.divides)
            if isinstance(other, int) and other > 0 and value % other:
                problem = f"must be divisible by {rule.divides} ({other}), got {value}"
        if problem:
            raise SettingError(f.name, problem, rule.divides)


S = TypeVar("S", bound="Settings")


@dataclass(frozen=True)
class Settings:
    """The base of a settings dataclass (see the module's docstring)."""

    what: ClassVar[str] = "settings"  # messages say "unknown {what} setting(s)"

    def __post_init__(self) -> None:
        check_settings(self)
        self.check()

    def check(self) -> None:
        """Rules between settings, after each one passed its own: raise SettingError."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[S], data: Any) -> S:
        """The settings in `data`, refusing keys that are not settings of `cls`."""
        config: S = from_dict(cls, data, cls.what)
        return config


def from_dict(cls: Any, data: Any, what: str) -> Any:
    """`cls(**data)`, refusing keys that are not settings of `cls`."""
    if not isinstance(data, dict):
        raise UsageError(f"{what} settings must be an object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in set(data) - known)
    if unknown:
        raise UsageError(f"unknown {what} setting(s): {shorten(', '.join(unknown))}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and _required(f)]
    if missing:
        raise UsageError(f"missing {what} setting(s): {', '.join(missing)}")
    return cls(**data)


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


# --- the command line ----------------------------------------------------------------


def flag_of(name: str, renames: dict[str, str] | None = None) -> str:
    """The command-line flag of setting `name`: n_embd -> --n-embd."""
    return "--" + (renames or {}).get(name, name).replace("_", "-")


def add_flags(
    group: Any,
    cls: Any,
    *,
    unset_default: bool = False,
    renames: dict[str, str] | None = None,
    only: Sequence[str] = (),
    defaults: dict[str, Any] | None = None,
) -> None:
    """Add a flag per declared setting of `cls` to an argparse group.

    The flag's destination is the setting's name. With `unset_default` the
    flag defaults to None ("not given", e.g. on --resume: as in the
    checkpoint); otherwise to the setting's default, or to the command's own
    in `defaults` (e.g. gradcheck's small model).
    """
    for f in declared(cls):
        if not f.metadata["flag"] or (only and f.name not in only):
            continue
        rule: Rule = f.metadata["rule"]
        default: Any = (defaults or {}).get(f.name, f.default)
        shown = "off" if default is None else _number(default) if default != "" else "none"
        if rule.kind == "size" and isinstance(default, int):
            shown = format_size(default)
        group.add_argument(
            flag_of(f.name, renames),
            dest=f.name,
            metavar=METAVARS.get(rule.kind) if not rule.choices else None,
            type=rule.parse,
            choices=rule.choices or None,
            default=None if unset_default else default,
            help=f"{f.metadata['help']} ({shown})",
        )


def given(args: argparse.Namespace, cls: Any) -> dict[str, Any]:
    """The settings of `cls` the user gave (flags left at None are left out)."""
    names = [f.name for f in declared(cls) if f.metadata["flag"]]
    values = {name: getattr(args, name, None) for name in names}
    return {name: value for name, value in values.items() if value is not None}


def from_flags(
    args: argparse.Namespace, cls: Any, renames: dict[str, str] | None = None, **fixed: Any
) -> Any:
    """`cls` built from the flags the user gave; a bad value names its flag."""
    try:
        return cls(**fixed, **given(args, cls))
    except SettingError as exc:
        raise in_flag_terms(exc, renames) from None


def changed_flags(config: Any, renames: dict[str, str] | None = None) -> list[str]:
    """The flags that give `config` from its class defaults (for a command line)."""
    words: list[str] = []
    for f in declared(config):
        value = getattr(config, f.name)
        default: Any = f.default
        if f.metadata["flag"] and value != default and value is not None:
            words += [flag_of(f.name, renames), str(value)]
    return words


def in_flag_terms(exc: SettingError, renames: dict[str, str] | None = None) -> UsageError:
    """A SettingError reworded for the command line: `--n-embd must be ...`."""
    problem = exc.problem
    if exc.other:
        problem = problem.replace(f" {exc.other} ", f" {flag_of(exc.other, renames)} ")
    return UsageError(f"argument {flag_of(exc.name, renames)}: {problem}")
