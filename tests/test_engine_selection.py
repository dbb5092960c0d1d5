"""The engine that runs is the one asked for: no silent fallback."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest
from conftest import PURE_REQUESTED

import microgpt
from microgpt import backend


def test_selected_engine_is_the_requested_one() -> None:
    # Without MICROGPT_PURE the compiled extension must be installed and used:
    # a build that silently fell back to pure Python fails here.
    assert microgpt.COMPILED is (not PURE_REQUESTED), (
        f"MICROGPT_PURE={os.environ.get('MICROGPT_PURE')!r} but the active engine is "
        f"{microgpt.ENGINE_NAME} ({backend.engine.__file__})"
    )


def test_value_class_comes_from_the_active_engine() -> None:
    value_module = type(microgpt.Value(1.0)).__module__
    assert value_module == ("microgpt.engine" if PURE_REQUESTED else "microgpt._engine")
    assert backend.engine.__file__.endswith(".py") is PURE_REQUESTED


def test_the_model_is_compiled_with_the_compiled_engine_only() -> None:
    # The same nn.py runs interpreted with MICROGPT_PURE=1, and as its compiled
    # twin otherwise; every model class comes from the module that runs.
    from microgpt import nn
    from microgpt.train import Run, TrainConfig

    assert nn.__name__ == ("microgpt.nn" if PURE_REQUESTED else "microgpt._nn")
    code = "import microgpt.nn; print(microgpt.nn.__name__, microgpt.nn.GPT.__module__)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == [nn.__name__] * 2
    assert backend.MODEL_COMPILED is (not PURE_REQUESTED)
    run = Run.start(["ab", "ba"], TrainConfig(steps=1))
    assert type(run.model).__module__ == nn.__name__


def test_both_engines_are_installed_side_by_side() -> None:
    # One install serves both: the env var switches at run time, no reinstall.
    code = "import microgpt; print(microgpt.COMPILED)"
    pure = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "MICROGPT_PURE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    default = subprocess.run(
        [sys.executable, "-c", code],
        env={k: v for k, v in os.environ.items() if k != "MICROGPT_PURE"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert pure.stdout.strip() == "False"
    assert default.stdout.strip() == "True"


def test_installed_distribution_contains_the_extension() -> None:
    files = [str(f) for f in importlib.metadata.files("microgpt-exact") or []]
    for twin in ("_engine", "_nn"):
        assert any(
            f.startswith(f"microgpt/{twin}.") and f.endswith((".so", ".pyd")) for f in files
        ), files
    assert "microgpt/engine.py" in files  # the readable engine ships beside it


def test_version_names_the_engine() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "microgpt", "--version"], capture_output=True, text=True, check=True
    ).stdout
    if PURE_REQUESTED:
        assert out.strip() == (
            f"microgpt {microgpt.__version__} (engine: pure Python, chosen by MICROGPT_PURE=1)"
        )
    else:
        assert out.startswith(f"microgpt {microgpt.__version__} (engine: compiled, Cython 3.")


# Why the interpreted engine runs without MICROGPT_PURE: set up in a fresh
# interpreter before microgpt is imported.
NOT_BUILT = "sys.modules['microgpt._engine'] = None"  # as an install built without a compiler
BROKEN = (  # built, but it cannot load (say, for another platform)
    "class Broken:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'microgpt._engine':\n"
    "            raise ImportError('wrong ELF class')\n"
    "sys.meta_path.insert(0, Broken())"
)


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (NOT_BUILT, "the compiled engine was not built"),
        (BROKEN, "the compiled engine is installed but does not load: wrong ELF class"),
    ],
)
def test_version_says_why_the_pure_engine_runs(setup: str, reason: str) -> None:
    code = f"import sys\n{setup}\nfrom microgpt.cli import version_text; print(version_text())"
    env = {k: v for k, v in os.environ.items() if k != "MICROGPT_PURE"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"microgpt {microgpt.__version__} (engine: pure Python, {reason})"


def test_the_version_is_the_installed_distributions() -> None:
    # One source: the package's __version__ is what the build wrote in the metadata.
    assert importlib.metadata.version("microgpt-exact") == microgpt.__version__


def test_the_pure_engine_needs_no_cython_at_run_time() -> None:
    # The runtime is the standard library only: without Cython, engine.py runs
    # on its small stand-in and computes the same losses.
    code = (
        "import sys; sys.modules['cython'] = None\n"  # makes `import cython` fail
        "import microgpt, microgpt.engine as e\n"
        "from microgpt.train import Run, TrainConfig\n"
        "run = Run.start(['anna', 'bob', 'cleo'], TrainConfig(steps=3), "
        "n_embd=8, n_head=2, block_size=8)\n"
        "print(microgpt.COMPILED, e.cython.__name__, [run.train_step().hex() for _ in range(3)])\n"
    )
    env = {**os.environ, "MICROGPT_PURE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=2)
    assert out[:2] == ["False", "microgpt._cython_shim"]

    from microgpt.train import Run, TrainConfig

    run = Run.start(["anna", "bob", "cleo"], TrainConfig(steps=3), n_embd=8, n_head=2, block_size=8)
    assert out[2].strip() == str([run.train_step().hex() for _ in range(3)])
