"""Build helpers for setup.py: compile the engine with Cython, or don't.

Environment switches, read at build time (`pip install .`, `pip wheel .`):

- MICROGPT_NO_EXTENSIONS=1       build the pure-Python package only.
- MICROGPT_REQUIRE_EXTENSIONS=1  a failed compile is an error (CI uses this);
                                 otherwise it warns and builds pure Python.

The extension `microgpt._engine` is compiled from the unchanged source
`src/microgpt/engine.py` (Cython's pure-Python mode), so the readable module
stays importable beside it.

A build that ends without the extension makes a `py3-none-any` wheel, never a
platform wheel holding pure Python: pip caches wheels by their tags and would
otherwise serve that slow build to a later install that could compile.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import Extension
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

# (extension module, source): the compiled twin of each pure module.
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
# computes) in the last bit for about 1 in 1,000 numbers. These are gcc's and
# clang's flags (Linux, macOS); aarch64's gcc contracts into FMA without
# -ffp-contract=off.
EXTRA_COMPILE_ARGS = [
    "-O2",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-fno-builtin-pow",
    "-fno-builtin-exp",
    "-fno-builtin-log",
]

# MSVC (Windows) takes other flags; its floating-point model is named rather
# than left to its default. /fp:precise keeps the source's order and rounding
# and makes no algebraic rewrites (no /fp:fast), and since Visual Studio 2022
# (17.0) it contracts nothing unless /fp:contract asks, which is never passed
# (MSVC documents no switch that turns contraction off, such as /fp:contract-,
# so none is guessed at; the earlier default did contract, but only into FMA
# instructions, which x64 code without /arch:AVX2 does not have). Its exp, log
# and pow are the C library's, as Python's are. tests/test_exact_everywhere.py
# checks the result against the original design on the Windows runner.
MSVC_COMPILE_ARGS = ["/fp:precise"]


def compile_args(compiler_type: str) -> list[str]:
    """The exactness flags for the compiler that builds (setuptools' compiler_type)."""
    return MSVC_COMPILE_ARGS if compiler_type == "msvc" else EXTRA_COMPILE_ARGS


CYTHON_DIRECTIVES = {
    "language_level": "3",
    # The engine indexes lists only within their length and never with
    # negative indices, so Python's checks for those can go.
    "boundscheck": False,
    "wraparound": False,
    # x ** y on C doubles is C's pow(), as Python's float ** is; without
    # this Cython computes it through complex numbers.
    "cpow": True,
    # Compiled functions and methods are Python-like function objects, so
    # help() and inspect.signature() see their parameters and docstrings as
    # they do interpreted (Cython 3's default, said here so that it stays).
    "binding": True,
}


_MODULE_DIRECTIVES = {name: directives for name, _, directives in COMPILED_MODULES}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0")


def require_extensions() -> bool:
    return _flag("MICROGPT_REQUIRE_EXTENSIONS")


def _say(message: str) -> None:
    print(f"microgpt: {message}", file=sys.stderr, flush=True)


def extensions() -> list[Extension]:
    """The extensions to build (from .py sources: build_ext cythonizes them)."""
    if _flag("MICROGPT_NO_EXTENSIONS"):
        _say("MICROGPT_NO_EXTENSIONS is set: building the pure-Python package only")
        return []
    # The compile flags are chosen in OptionalBuildExt, once the compiler is known.
    return [Extension(name, [src]) for name, src, _ in COMPILED_MODULES]


class OptionalBuildExt(build_ext):
    """Cythonize and compile the engine; if that fails, fall back to pure
    Python, unless MICROGPT_REQUIRE_EXTENSIONS makes it an error."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no Cython, no compiler, missing headers, ...
            self._fall_back(exc)

    def build_extension(self, ext: Any) -> None:
        # Imported here: making an sdist or the metadata needs no Cython.
        from Cython.Build import cythonize

        directives = {**CYTHON_DIRECTIVES, **_MODULE_DIRECTIVES[ext.name]}
        (c_ext,) = cythonize(
            [ext], build_dir=self.build_temp, compiler_directives=directives, quiet=True
        )
        ext.sources = c_ext.sources  # the generated C, as Cython's own build_ext does
        ext.extra_compile_args = compile_args(self.compiler.compiler_type)
        super().build_extension(ext)

    def _fall_back(self, exc: Exception) -> None:
        if require_extensions():
            raise CompileError(
                f"MICROGPT_REQUIRE_EXTENSIONS is set and the compiled engine did not build: {exc}"
            ) from exc
        # No extension: the wheel is tagged pure (see PureUnlessCompiled), and
        # one left in the build folder by an earlier build must not ship in it.
        for ext in self.extensions:
            stale = self.get_ext_fullpath(ext.name)
            if os.path.exists(stale):
                os.remove(stale)
        self.extensions.clear()
        self.distribution.ext_modules = []
        _say(
            f"WARNING: could not compile the engine ({exc}); building the pure-Python "
            "engine only (slower, same results), as a py3-none-any wheel. "
            "Set MICROGPT_REQUIRE_EXTENSIONS=1 to make this an error."
        )


class PureUnlessCompiled(bdist_wheel):
    """bdist_wheel whose tags follow what was built. setuptools decides them
    from whether extensions are declared; this decides again once `build`
    has run (bdist_wheel reads the decision only after that)."""

    def run_command(self, command: str) -> None:
        super().run_command(command)
        if command == "build":  # OptionalBuildExt drops an extension that failed
            self.root_is_pure = not self.distribution.has_ext_modules()


COMMANDS: dict[str, Any] = {"build_ext": OptionalBuildExt, "bdist_wheel": PureUnlessCompiled}
