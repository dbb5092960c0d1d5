"""Library code speaks of settings; only the command line speaks of flags.

A message from a library module names a setting (`max_data_size`) through
`errors.Name`, which the command line shows as its flag
(`--max-data-size`). So a flag written out (`"--out"`) belongs only to a
part of the package that is a command line. This test reads the package's
source and lists every `--flag` in its strings outside those parts.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import microgpt
from microgpt import errors, settings

PACKAGE = Path(microgpt.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")

# The command line's own modules, whole: the `microgpt` command, its parser, the
# settings' flags and the sweep's command line.
CLI_MODULES = {"cli.py", "parsing.py", "settings.py", "sweep/cli.py"}
# Documented exceptions: plan.py builds `microgpt train` command lines (their
# flags are the train command's own API), and report.py's note under the
# results table advises the sweep command's user. Each must still need it.
NOT_YET_IN_SETTINGS_TERMS = {
    "sweep/plan.py",
    "sweep/report.py",
}
# Command-line parts of other modules: (module, top-level function).
CLI_FUNCTIONS = {
    ("plot.py", "add_parser"),  # `microgpt plot`
    ("sample.py", "add_parser"),  # `microgpt sample`
    ("evaluate.py", "add_parser"),  # `microgpt eval`
    ("evaluate.py", "cmd_eval"),  # its flags checked against each other
    ("lessons/attention.py", "main"),  # each lesson parses its own arguments
    ("lessons/autograd.py", "main"),
    ("lessons/names.py", "main"),
    ("lessons/xor.py", "main"),
}


def docstrings(tree: ast.Module) -> set[int]:
    """The ids of the string nodes that are docstrings (documentation of the
    command line is not a message)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def help_texts(tree: ast.Module) -> set[int]:
    """The string nodes inside `setting(...)` declarations: a flag's --help text."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setting":
            found.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Constant))
    return found


def flag_words(source: str, module: str) -> list[str]:
    """`line: --flag` for each flag in a string of `source` outside its CLI parts."""
    tree = ast.parse(source)
    skip = docstrings(tree) | help_texts(tree)
    found = []
    for top in tree.body:
        if (module, getattr(top, "name", None)) in CLI_FUNCTIONS:
            continue
        for node in ast.walk(top):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) not in skip:
                    found += [f"{node.lineno}: {flag}" for flag in FLAG.findall(node.value)]
    return found


def test_library_modules_write_no_flags() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module in CLI_MODULES:
            continue
        words = flag_words(path.read_text(encoding="utf-8"), module)
        if words:
            found[module] = words
    assert set(found) == NOT_YET_IN_SETTINGS_TERMS, {
        module: words for module, words in found.items() if module not in NOT_YET_IN_SETTINGS_TERMS
    }


def test_the_check_finds_a_flag_in_a_message() -> None:
    # The check itself: a flag in an f-string is found, a setting's name is not.
    source = 'def f(x):\n    raise ValueError(f"{x}: --max-data-size SIZE reads more")\n'
    assert flag_words(source, "data.py") == ["2: --max-data-size"]
    assert flag_words(source.replace("--max-data-size", "max_data_size"), "data.py") == []


def test_a_name_reads_as_a_setting_and_as_a_flag() -> None:
    exc = errors.UsageError("data file x is larger than 1 KiB; ", errors.Name("max_data_size"), " ")
    assert str(exc).endswith("; max_data_size ")
    assert exc.worded(settings.flag_of).endswith("; --max-data-size ")
    out = errors.Name("out", "checkpoint")
    assert str(errors.Text(out, " c.json")) == "checkpoint c.json"
    assert errors.Text(out, " c.json").worded(settings.flag_of) == "--out c.json"
