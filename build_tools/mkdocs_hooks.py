"""MkDocs hooks (mkdocs.yml: `hooks:`): the parts of the documentation site
that are made from the project itself, so that they cannot go stale.

- The home page is README.md, its links into docs/ made relative to the site.
- The API reference: a page per public module, from its docstrings
  (mkdocstrings reads the source; nothing is imported).
- The notebooks in docs/notebooks/ are listed in the navigation, in file-name
  order (rendered as committed by mkdocs-jupyter: the test suite runs them).
- The command-line page ends with each subcommand's `--help`, from the same
  argparse parser that `microgpt` runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# (module, what it is): the API reference's pages, in reading order.
API_MODULES = [
    ("microgpt", "the package: Value, no_grad, which engine runs"),
    ("microgpt.engine", "Value, backward(), and the fused ops dot, linear, vsum"),
    ("microgpt.nn", "the GPT and its building blocks"),
    ("microgpt.optim", "Adam and the learning-rate schedule"),
    ("microgpt.data", "documents and the tokenizer"),
    ("microgpt.train", "a training run, step by step"),
    ("microgpt.sample", "sampling from a model"),
    ("microgpt.gradcheck", "gradients against finite differences"),
    ("microgpt.graph", "a computation graph, drawn"),
    ("microgpt.monitor", "gradient norms per weight matrix"),
    ("microgpt.plot", "loss and attention pictures"),
    ("microgpt.checkpoint", "checkpoints: JSON, written atomically"),
    ("microgpt.runlog", "loss logs: JSON Lines"),
    ("microgpt.driver", "what `microgpt train` does around the steps"),
    ("microgpt.sweep", "what `microgpt sweep` does"),
    ("microgpt.lessons", "the lessons"),
]
# The engine's page lists what a learner uses, each member of Value included
# (data, grad, exp(), ...: their names say what they are), not its constants.
ENGINE_OPTIONS = """
    options:
      members: [Value, no_grad, dot, linear, vsum, adam_update]
      show_if_no_docstring: true
"""
# The package's page is its docstring, the guide; Value has the engine's page.
PACKAGE_OPTIONS = """
    options:
      members: false
"""
CLI_PAGE = "cli.md"
HELP_WIDTH = "78"  # columns of the --help text shown on the command-line page


def readme_as_home_page() -> str:
    """README.md with its links into docs/ made relative to the site's root."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.sub(r"\]\(docs/", "](", text)


def api_page(module: str, about: str) -> str:
    options = {"microgpt.engine": ENGINE_OPTIONS, "microgpt": PACKAGE_OPTIONS}.get(module, "")
    return f"# {module}\n\n{about[0].upper()}{about[1:]}.\n\n::: {module}{options}\n"


def api_path(module: str) -> str:
    return f"api/{module.removeprefix('microgpt.').replace('microgpt', 'index')}.md"


def notebooks() -> list[str]:
    folder = ROOT / "docs" / "notebooks"
    return sorted(f"notebooks/{p.name}" for p in folder.glob("*.ipynb"))


def on_config(config: Any) -> Any:
    """Fill in the navigation's generated sections: API and notebooks (a
    section left empty, with no notebooks, is dropped)."""
    generated = {
        "API reference": [{module: api_path(module)} for module, _ in API_MODULES],
        "Learn": notebooks(),
    }
    nav = []
    for section in config["nav"]:
        title = next(iter(section)) if isinstance(section, dict) else None
        if title in generated:
            section = {title: section[title] + generated[title]}
            if not section[title]:
                continue
        nav.append(section)
    config["nav"] = nav
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, "index.md", content=readme_as_home_page()))
    for module, about in API_MODULES:
        files.append(File.generated(config, api_path(module), content=api_page(module, about)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != CLI_PAGE:
        return markdown
    return markdown.rstrip("\n") + "\n\n" + every_help_text()


def every_help_text() -> str:
    """`microgpt --help` and each subcommand's, as Markdown sections."""
    import argparse

    from microgpt.cli import build_parser

    sections = ["## Every command's --help", ""]
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH  # argparse wraps to the terminal's width
    try:
        pending = [("microgpt", build_parser())]
        while pending:
            command, parser = pending.pop(0)
            sections += [f"### {command}", "", "```text", parser.format_help().rstrip(), "```", ""]
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    pending += [(f"{command} {n}", p) for n, p in action.choices.items()]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(sections)
