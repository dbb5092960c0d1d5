"""The source distribution, as a packager or a user without a wheel gets it:
what it holds, and what installing it gives with a C compiler, without one,
and without one when the compiled engine is required."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest
from conftest import PURE_REQUESTED, REPO_ROOT

import microgpt

pytestmark = [
    # Building does not depend on the engine under test: once, in the compiled pass.
    pytest.mark.skipif(PURE_REQUESTED, reason="packaging is tested in the compiled pass"),
    pytest.mark.skipif(
        not (REPO_ROOT / "pyproject.toml").exists(),
        reason="the project source is not beside the tests",
    ),
]

SDIST_TOP = f"microgpt_exact-{microgpt.__version__}"


def run(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def build_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for building: no MICROGPT_ switch from outside, and a
    pip cache of the session's own, so no wheel built earlier is reused."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROGPT_")}
    env["PIP_CACHE_DIR"] = str(tmp_path_factory.mktemp("pip-cache"))
    return env


@pytest.fixture(scope="session")
def sdist(tmp_path_factory: pytest.TempPathFactory, build_env: dict[str, str]) -> Path:
    """`python -m build --sdist` of a copy of the project (the checkout stays clean)."""
    project = tmp_path_factory.mktemp("project") / "microgpt"
    shutil.copytree(
        REPO_ROOT,
        project,
        ignore=shutil.ignore_patterns(".git", "build", "dist", ".venv*", "*.so", "__pycache__"),
    )
    out = tmp_path_factory.mktemp("sdist")
    result = run(sys.executable, "-m", "build", "--sdist", "--outdir", out, project, env=build_env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (path,) = out.glob("microgpt_exact-*.tar.gz")
    return path


def wheel_from(sdist: Path, tmp_path: Path, env: dict[str, str]) -> tuple[Path | None, str]:
    """`pip wheel` the sdist (without -v, as a user would): the wheel, or None
    if the build failed, and what pip printed."""
    out = tmp_path / "wheels"
    result = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, sdist, env=env)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == (1 if result.returncode == 0 else 0)
    return (wheels[0] if wheels else None), result.stdout + result.stderr


def fresh_venv_with(wheel: Path, tmp_path: Path) -> Path:
    """A new virtual environment with only the wheel installed: its bin folder."""
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / ("Scripts" if sys.platform == "win32" else "bin")
    install = run(
        bin_dir / "python", "-m", "pip", "install", "--no-index", wheel, env=dict(os.environ)
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    return bin_dir


def microgpt_in(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed `microgpt` command, run outside the checkout."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MICROGPT_")}
    return subprocess.run(
        [str(bin_dir / "microgpt"), *args],
        env={**base, **env},
        cwd=bin_dir,
        capture_output=True,
        text=True,
        timeout=300,
    )


def wheel_files(wheel: Path) -> dict[str, str]:
    """The wheel's WHEEL and METADATA headers, and its file names (under "files")."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = f"{SDIST_TOP}.dist-info"
        headers = {
            "WHEEL": z.read(f"{info}/WHEEL").decode(),
            "METADATA": z.read(f"{info}/METADATA").decode(),
        }
    return {**headers, "files": "\n".join(names)}


def test_sdist_holds_what_building_and_testing_need(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for required in [
        "pyproject.toml",
        "setup.py",
        "MANIFEST.in",
        "README.md",
        "mkdocs.yml",
        "LICENSE",
        "NOTICE",
        "src/microgpt/engine.py",
        "src/microgpt/data/names.txt",
        "src/microgpt/py.typed",
    ]:
        assert required in names, required
    # Every build helper, test, benchmark and page of the documentation ships.
    for pattern in ["build_tools/*.py", "tests/*.py", "bench/*.py", "docs/*.md"]:
        for path in REPO_ROOT.glob(pattern):
            assert path.relative_to(REPO_ROOT).as_posix() in names
    assert not any(n.endswith((".c", ".so", ".pyd")) for n in names)  # nothing generated
    assert not any(n.startswith((".ci/", ".github/", ".git/")) for n in names)


def test_from_the_sdist_with_a_compiler_the_wheel_holds_the_compiled_engine(
    sdist: Path, tmp_path: Path, build_env: dict[str, str]
) -> None:
    wheel, _ = wheel_from(sdist, tmp_path, build_env)  # no switch: compiles when it can
    assert wheel is not None
    interpreter = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert wheel.name.startswith(f"{SDIST_TOP}-{interpreter}-{interpreter}-")
    assert not wheel.name.endswith("-any.whl")
    info = wheel_files(wheel)
    assert "Root-Is-Purelib: false" in info["WHEEL"]
    files = info["files"].splitlines()
    for twin in ("_engine", "_nn"):  # the engine and the model, compiled
        assert any(n.startswith(f"microgpt/{twin}.") and n.endswith((".so", ".pyd")) for n in files)
    assert "microgpt/engine.py" in files  # the readable engine, for MICROGPT_PURE=1
    assert "microgpt/data/names.txt" in files  # the bundled default dataset
    assert not any(n.endswith(".c") for n in files)  # generated C stays out
    metadata = HeaderParser().parsestr(info["METADATA"])
    assert metadata["Name"] == "microgpt-exact"
    assert metadata["Version"] == microgpt.__version__
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE", "NOTICE"]
    for name in ["LICENSE", "NOTICE"]:
        assert f"{SDIST_TOP}.dist-info/licenses/{name}" in files

    bin_dir = fresh_venv_with(wheel, tmp_path)
    version = microgpt_in(bin_dir, "--version")
    assert version.stdout.startswith(f"microgpt {microgpt.__version__} (engine: compiled, Cython ")
    train = microgpt_in(bin_dir, "train", "--steps", "3", "--samples", "2")
    assert train.returncode == 0, train.stderr
    assert len(train.stdout.splitlines()) == 2  # two sampled names


def test_from_the_sdist_without_a_compiler_the_wheel_is_pure_and_says_so(
    sdist: Path, tmp_path: Path, build_env: dict[str, str]
) -> None:
    # CC=false: every compile fails, as on a machine with no C compiler.
    wheel, output = wheel_from(sdist, tmp_path, {**build_env, "CC": "false"})
    assert wheel is not None, output
    # The tag tells pip (and its cache) that this wheel is pure Python; pip
    # prints the wheel's name even without -v.
    assert wheel.name == f"{SDIST_TOP}-py3-none-any.whl"
    assert wheel.name in output
    info = wheel_files(wheel)
    assert "Root-Is-Purelib: true" in info["WHEEL"]
    assert not any(n.endswith((".so", ".pyd")) for n in info["files"].splitlines())

    bin_dir = fresh_venv_with(wheel, tmp_path)
    version = microgpt_in(bin_dir, "--version")
    assert version.stdout.strip() == (
        f"microgpt {microgpt.__version__} (engine: pure Python, the compiled engine was not built)"
    )
    train = microgpt_in(bin_dir, "train", "--steps", "2", "--samples", "1")
    assert train.returncode == 0, train.stderr
    assert len(train.stdout.splitlines()) == 1
    assert "engine: pure Python" in train.stderr  # training says which engine runs


def test_from_the_sdist_requiring_extensions_without_a_compiler_fails_naming_the_switch(
    sdist: Path, tmp_path: Path, build_env: dict[str, str]
) -> None:
    env = {**build_env, "CC": "false", "MICROGPT_REQUIRE_EXTENSIONS": "1"}
    wheel, output = wheel_from(sdist, tmp_path, env)
    assert wheel is None  # CI's switch: no silent fallback
    assert "error: MICROGPT_REQUIRE_EXTENSIONS is set and the compiled engine did not build" in (
        output
    )


def test_from_the_sdist_the_no_extensions_switch_gives_a_pure_wheel(
    sdist: Path, tmp_path: Path, build_env: dict[str, str]
) -> None:
    wheel, output = wheel_from(sdist, tmp_path, {**build_env, "MICROGPT_NO_EXTENSIONS": "1"})
    assert wheel is not None, output
    assert wheel.name == f"{SDIST_TOP}-py3-none-any.whl"
    files = wheel_files(wheel)["files"].splitlines()
    assert not any(n.endswith((".so", ".pyd")) for n in files)
    assert "microgpt/engine.py" in files
    assert "microgpt/data/names.txt" in files


def test_a_failed_compile_ships_no_engine_left_by_an_earlier_build(
    sdist: Path, tmp_path: Path, build_env: dict[str, str]
) -> None:
    # pip builds a source folder in place, so build/ keeps an earlier build's
    # engine. When the source has changed since and the compile now fails,
    # that engine (of the old source) must not go into the pure wheel.
    # The safe "data" filter, where this Python has it (3.10.12 and later).
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, **safe)
    source = tmp_path / SDIST_TOP
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps"]
    first = run(*command, "-w", tmp_path / "first", source, env=build_env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert list(source.glob("build/lib*/microgpt/_engine.*"))  # the earlier build's engine
    (source / "src" / "microgpt" / "engine.py").touch()  # changed since
    second = run(*command, "-w", tmp_path / "second", source, env={**build_env, "CC": "false"})
    assert second.returncode == 0, second.stderr[-2000:]
    (wheel,) = (tmp_path / "second").glob("*.whl")
    assert wheel.name == f"{SDIST_TOP}-py3-none-any.whl"
    assert not any(n.endswith((".so", ".pyd")) for n in wheel_files(wheel)["files"].splitlines())
