"""Which engine runs: the compiled one when it is installed, unless
`MICROGPT_PURE=1` asks for the readable interpreted `engine.py`.

Both are the same source file; the compiled one is built from `engine.py` as
the extension module `microgpt._engine`. The model, `nn.py`, is compiled the
same way into `microgpt._nn`: with the compiled engine, that twin is what
`import microgpt.nn` gives (the same code, without the interpreter's cost per
operation); with `MICROGPT_PURE=1`, everything runs interpreted. The choice is
made once, at import.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

PURE_REQUESTED: bool = os.environ.get("MICROGPT_PURE", "").strip() not in ("", "0")


def _load_engine() -> tuple[ModuleType, str]:
    """The engine module, and why it is the interpreted one ('' if it is not)."""
    if PURE_REQUESTED:
        why = "chosen by MICROGPT_PURE=1"
    else:
        try:
            return importlib.import_module("microgpt._engine"), ""
        except ModuleNotFoundError as exc:
            if exc.name != "microgpt._engine":
                raise
            # A build without a working C compiler (or with
            # MICROGPT_NO_EXTENSIONS=1) installs the interpreted engine only.
            # (Short: argparse wraps a --version line wider than 78 columns.)
            why = "the compiled engine was not built"
        except ImportError as exc:  # built, but for another Python or platform
            why = f"the compiled engine is installed but does not load: {exc}"
    from microgpt import engine

    return engine, why


def _load_compiled_model() -> bool:
    """Make `microgpt.nn` the compiled twin of nn.py, if there is one."""
    if "microgpt.nn" in sys.modules:
        return sys.modules["microgpt.nn"].__name__ == "microgpt._nn"
    try:
        compiled_nn = importlib.import_module("microgpt._nn")
    except ImportError:
        return False
    sys.modules["microgpt.nn"] = compiled_nn
    sys.modules["microgpt"].nn = compiled_nn  # type: ignore[attr-defined]  # microgpt.nn.GPT
    return True


engine: ModuleType
PURE_REASON: str
engine, PURE_REASON = _load_engine()
COMPILED: bool = bool(engine.COMPILED)
MODEL_COMPILED: bool = COMPILED and _load_compiled_model()
ENGINE_NAME: str = "compiled" if COMPILED else "pure Python"


def describe_engine() -> str:
    """The engine in use, as `microgpt --version` says it; for the
    interpreted one, why."""
    if COMPILED:
        return f"compiled, Cython {engine.CYTHON_VERSION}"
    return f"pure Python, {PURE_REASON}"
