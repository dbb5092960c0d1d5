"""Shared test setup.

The suite runs once per engine: `python -m pytest` tests the compiled engine
(and fails if it is not installed), `MICROGPT_PURE=1 python -m pytest` tests
the interpreted one. Every test sees the engine that `microgpt` selected.
"""

from __future__ import annotations

import importlib
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import IO

import pytest

import microgpt

REPO_ROOT = Path(__file__).resolve().parent.parent
PARITY_DIR = Path(os.environ.get("MICROGPT_PARITY_DIR", REPO_ROOT.parent / "shared" / "parity"))
PURE_REQUESTED = os.environ.get("MICROGPT_PURE", "").strip() not in ("", "0")


def pytest_report_header(config: pytest.Config) -> str:
    pure = os.environ.get("MICROGPT_PURE", "")
    return f"microgpt engine: {microgpt.ENGINE_NAME} (MICROGPT_PURE={pure!r})"


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """The original microgpt's names file and golden losses (../shared/parity)."""
    if not (PARITY_DIR / "names.txt").exists() or not (PARITY_DIR / "default_seed42.txt").exists():
        why = f"parity files not found in {PARITY_DIR} (set MICROGPT_PARITY_DIR)"
        if os.environ.get("CI"):  # CI has them beside the clone: never skip the golden test
            pytest.fail(why)
        pytest.skip(why)
    return PARITY_DIR


@pytest.fixture(scope="session")
def golden(parity_dir: Path) -> dict[str, object]:
    """{'losses': {step: float}, 'samples': [names]} from default_seed42.txt."""
    losses: dict[int, float] = {}
    samples: list[str] = []
    for line in (parity_dir / "default_seed42.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("step "):
            _, step, _, hexloss = line.split()
            losses[int(step)] = float.fromhex(hexloss)
        elif line.startswith("sample "):
            samples.append(line.split(": ", 1)[1])
    return {"losses": losses, "samples": samples}


def both_engines() -> tuple[ModuleType, ModuleType | None]:
    """The interpreted engine and the compiled one, loaded side by side.

    The compiled one is None only in a MICROGPT_PURE=1 run on an install
    without it; in the compiled run its absence is a failure (ImportError).
    """
    pure = importlib.import_module("microgpt.engine")  # always the .py module
    assert pure.COMPILED is False
    try:
        compiled = importlib.import_module("microgpt._engine")
    except ImportError:
        if PURE_REQUESTED:
            return pure, None
        raise
    assert compiled.COMPILED is True
    return pure, compiled


def microgpt_cli(
    *args: object, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m microgpt ARGS` in a subprocess (same engine as the suite)."""
    return subprocess.run(
        [sys.executable, "-m", "microgpt", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def lines_of(stream: IO[str] | None) -> queue.Queue[str]:
    """A stream's lines as they come ('' at the end), read in a thread so
    that a test can wait for one with a timeout and the pipe never fills."""
    assert stream is not None
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return lines


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit status 2, one line on stderr naming the problem, nothing on stdout."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout == ""
    return lines[0]
