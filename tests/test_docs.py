"""What a learner reads: help() and signatures in either engine, the package's
own guide, and a command-line page that names every subcommand and flag."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pydoc
import re
from collections.abc import Iterator

import pytest
from conftest import REPO_ROOT, both_engines

import microgpt
from microgpt.cli import build_parser
from microgpt.lessons import LESSONS


def test_value_shows_its_real_signature() -> None:
    # Compiled, Value's __init__ is a C slot; help() and inspect must still
    # name its parameters, as they do for the interpreted class.
    assert list(inspect.signature(microgpt.Value).parameters) == [
        "data",
        "children",
        "local_grads",
        "op",
    ]
    assert "Value(data" in pydoc.render_doc(microgpt.Value, renderer=pydoc.plaintext)


def test_both_engines_show_the_same_signatures_and_docstrings() -> None:
    pure, compiled = both_engines()
    if compiled is None:
        pytest.skip("the compiled engine is not installed")
    assert inspect.signature(compiled.Value) == inspect.signature(pure.Value)
    for name in ("backward", "topological_order", "exp", "log", "relu", "tanh"):
        compiled_method, pure_method = getattr(compiled.Value, name), getattr(pure.Value, name)
        assert inspect.signature(compiled_method) == inspect.signature(pure_method), name
        # As help() shows them: CPython 3.13 strips a docstring's indent when it
        # compiles the .py, Cython keeps it, and help() cleans both the same way.
        assert inspect.getdoc(compiled_method) == inspect.getdoc(pure_method), name
    for name in ("dot", "linear", "vsum"):
        assert inspect.signature(getattr(compiled, name)) == inspect.signature(getattr(pure, name))
    assert inspect.getdoc(compiled.Value) == inspect.getdoc(pure.Value)


def test_the_package_guide_points_to_the_lessons_in_order() -> None:
    guide = microgpt.__doc__
    assert guide is not None
    positions = [guide.index(f"microgpt lesson {name} ") for name in LESSONS]
    assert positions == sorted(positions)
    assert "docs/notebooks" in guide and "microgpt-exact[notebook]" in guide
    shown = pydoc.render_doc(microgpt, renderer=pydoc.plaintext)  # help(microgpt)
    assert all(line.strip() in shown for line in guide.splitlines())


def test_every_module_the_package_guide_names_exists() -> None:
    guide = microgpt.__doc__
    assert guide is not None
    named = set(re.findall(r"^ {4}microgpt\.(\w+)", guide, re.M))
    assert {"engine", "nn", "optim", "data", "train", "sample", "gradcheck", "graph"} <= named
    for name in sorted(named):
        assert hasattr(microgpt, name) or importlib.import_module(f"microgpt.{name}"), name


def subcommands(
    parser: argparse.ArgumentParser, prefix: str = "microgpt"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command, as typed (`microgpt plot loss`), with its parser."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subcommands(sub, f"{prefix} {name}")


def test_the_command_line_page_names_every_subcommand_and_flag() -> None:
    path = REPO_ROOT / "docs" / "cli.md"
    if not path.exists():
        pytest.skip("docs/ is not beside the tests (not a checkout)")
    page = path.read_text(encoding="utf-8")
    missing = []
    for command, parser in subcommands(build_parser()):
        if command not in page:
            missing.append(command)
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", page):
                        missing.append(f"{command} {flag}")
    assert not missing, f"docs/cli.md does not mention: {', '.join(missing)}"
