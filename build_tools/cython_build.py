"""Build helpers for setup.py: compile the engine with Cython, or don't.

Environment switches, read at build time (`pip install .`, `pip wheel .`):

- MICROGPT_NO_EXTENSIONS=1       install the pure-Python package only.
- MICROGPT_REQUIRE_EXTENSIONS=1  a failed compile is an error (CI uses this);
                                 otherwise it warns and installs pure Python.

The extension `microgpt._engine` is compiled from the unchanged source
`src/microgpt/engine.py` (Cython's pure-Python mode), so the readable module
stays importable beside it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import Extension
from setuptools.command.build_ext import build_ext

# (extension module, source, extra Cython directives): the compiled twin of
# each pure module. The model is plain Python: its annotations are for type
# checkers, not C types, so Cython keeps every value a Python object there.
COMPILED_MODULES: list[tuple[str, str, dict[str, Any]]] = [
    ("microgpt._engine", "src/microgpt/engine.py", {}),
    ("microgpt._nn", "src/microgpt/nn.py", {"annotation_typing": False}),
]

# Exactness: never let the C compiler fuse a*b+c into one rounding (FMA) or
# reorder float math, and keep pow/exp/log real libm calls: GCC would turn
# pow(x, 2.0) into x*x, which differs from libm's pow (what Python's x**2
# computes) in the last bit for about 1 in 1,000 numbers.
EXTRA_COMPILE_ARGS = [
    "-O2",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-fno-builtin-pow",
    "-fno-builtin-exp",
    "-fno-builtin-log",
]


COMPILER_DIRECTIVES: dict[str, Any] = {
    "language_level": "3",
    # The engine indexes lists only within their length and never with
    # negative indices, so Python's checks for those can go.
    "boundscheck": False,
    "wraparound": False,
    # x ** y on C doubles is C's pow(), as Python's float ** is; without this
    # Cython computes it through complex numbers.
    "cpow": True,
}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0")


def want_extensions() -> bool:
    return not _flag("MICROGPT_NO_EXTENSIONS")


def require_extensions() -> bool:
    return _flag("MICROGPT_REQUIRE_EXTENSIONS")


def extensions() -> list[Extension]:
    """The Cython extensions, or none (pure install, or Cython missing)."""
    if not want_extensions():
        print("microgpt: MICROGPT_NO_EXTENSIONS is set: pure-Python install", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        if require_extensions():
            raise RuntimeError("MICROGPT_REQUIRE_EXTENSIONS is set but Cython is missing") from exc
        print("microgpt: Cython not found: installing the pure-Python engine", file=sys.stderr)
        return []
    is_msvc = sys.platform == "win32"
    built: list[Extension] = []
    for name, source, directives in COMPILED_MODULES:
        ext = Extension(name, [source], extra_compile_args=[] if is_msvc else EXTRA_COMPILE_ARGS)
        built += cythonize(
            [ext],
            build_dir="build/cython",
            compiler_directives={**COMPILER_DIRECTIVES, **directives},
            quiet=True,
        )
    return built


class OptionalBuildExt(build_ext):
    """build_ext that falls back to pure Python unless the extension is required."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            self._fail(exc)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if require_extensions():
            raise
        print(
            f"microgpt: WARNING: could not compile the engine ({exc}); "
            "installing the pure-Python engine (slower, same results)",
            file=sys.stderr,
        )
