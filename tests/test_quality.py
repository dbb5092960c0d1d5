"""The project's own checks: ruff and mypy --strict, as part of the suite."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import PURE_REQUESTED, REPO_ROOT

pytestmark = [
    pytest.mark.skipif(PURE_REQUESTED, reason="static checks run in the compiled pass"),
    pytest.mark.skipif(
        not (REPO_ROOT / "pyproject.toml").exists(),
        reason="the project source is not beside the tests",
    ),
]

CHECKED = ["src", "tests", "bench", "build_tools", "setup.py", "docs/notebooks"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True
    )


def test_ruff_lint_is_clean() -> None:
    result = run("ruff", "check", *CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = run("ruff", "format", "--check", *CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_on_the_package() -> None:
    result = run("mypy", "--strict", "src/microgpt")
    assert result.returncode == 0, result.stdout + result.stderr
