"""The packaging: what `pip wheel .` puts in a wheel, with and without the
compiled engine, and the README's commands that CI runs."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import PURE_REQUESTED, REPO_ROOT

# Building a wheel does not depend on the engine under test: do it once, in
# the compiled pass of the suite.
pytestmark = pytest.mark.skipif(PURE_REQUESTED, reason="packaging is tested in the compiled pass")


def build_wheel(tmp_path: Path, **env: str) -> zipfile.ZipFile:
    """`pip wheel` a copy of the project (so the checkout is left untouched)."""
    if not (REPO_ROOT / "pyproject.toml").exists():
        pytest.skip("the project source is not beside the tests")
    source = tmp_path / "src-copy"
    shutil.copytree(
        REPO_ROOT,
        source,
        ignore=shutil.ignore_patterns(".git", "build", "dist", ".venv*", "*.so", "__pycache__"),
    )
    out = tmp_path / "wheels"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = out.glob("microgpt-*.whl")
    return zipfile.ZipFile(wheel)


def test_wheel_contains_the_compiled_engine_and_its_source(tmp_path: Path) -> None:
    names = build_wheel(tmp_path, MICROGPT_REQUIRE_EXTENSIONS="1").namelist()
    assert any(re.fullmatch(r"microgpt/_engine\..*\.(so|pyd)", n) for n in names), names
    assert "microgpt/engine.py" in names  # the readable engine, for MICROGPT_PURE=1
    assert "microgpt/data/names.txt" in names  # the bundled default dataset
    assert not any(n.endswith(".c") for n in names)  # generated C stays out


def test_pure_build_switch_gives_a_wheel_without_extension(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, MICROGPT_NO_EXTENSIONS="1")
    names = wheel.namelist()
    assert not any(n.endswith((".so", ".pyd")) for n in names), names
    assert "microgpt/engine.py" in names
    assert re.search(r"-py3-none-any\.whl$", os.path.basename(wheel.filename or ""))


def readme_block_after(heading_text: str) -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(heading_text)
    match = re.search(r"```bash\n(.*?)\n```", text[start:], re.S)
    assert match, f"no bash block after {heading_text!r}"
    return match.group(1).strip()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = readme_block_after("Install the test extras and run the tests")
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in ci_lines


def test_readme_main_command_installs_and_trains() -> None:
    assert readme_block_after("Install and train") == "pip install . && microgpt train"


def test_without_a_compiler_the_install_falls_back_to_pure_and_says_so(tmp_path: Path) -> None:
    # CC=false: every compile fails, as on a machine with no C compiler.
    source = tmp_path / "src-copy"
    shutil.copytree(
        REPO_ROOT,
        source,
        ignore=shutil.ignore_patterns(".git", "build", "dist", ".venv*", "*.so", "__pycache__"),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROGPT_")}
    command = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation"]
    fallback = subprocess.run(
        [*command, "-w", str(tmp_path / "a"), str(source)],
        env={**env, "CC": "false"},
        capture_output=True,
        text=True,
    )
    assert fallback.returncode == 0, fallback.stderr[-2000:]
    assert "installing the pure-Python engine" in fallback.stdout + fallback.stderr
    (wheel,) = (tmp_path / "a").glob("microgpt-*.whl")
    assert not any(n.endswith((".so", ".pyd")) for n in zipfile.ZipFile(wheel).namelist())

    required = subprocess.run(
        [*command, "-w", str(tmp_path / "b"), str(source)],
        env={**env, "CC": "false", "MICROGPT_REQUIRE_EXTENSIONS": "1"},
        capture_output=True,
        text=True,
    )
    assert required.returncode != 0  # CI's switch: no silent fallback
    assert not list((tmp_path / "b").glob("*.whl"))


def test_readme_python_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)\n```", text, re.S)
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "25.0 10.0 10.0"
    assert lines[1].startswith("loss after 100 steps: ")
    names = ast.literal_eval(lines[2])  # a printed list of str
    assert len(names) == 5 and all(isinstance(n, str) for n in names)
