"""Which engine runs: the compiled one when it is installed, unless
`MICROGPT_PURE=1` asks for the readable interpreted `engine.py`.

Both are the same source file; the compiled one is built from `engine.py` as
the extension module `microgpt._engine`. The choice is made once, at import.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

PURE_REQUESTED: bool = os.environ.get("MICROGPT_PURE", "").strip() not in ("", "0")


def _load_engine() -> ModuleType:
    if not PURE_REQUESTED:
        try:
            return importlib.import_module("microgpt._engine")
        except ImportError:
            pass  # not built (pure install): fall back to the interpreted engine
    from microgpt import engine

    return engine


engine: ModuleType = _load_engine()
COMPILED: bool = bool(engine.COMPILED)
ENGINE_NAME: str = "compiled" if COMPILED else "pure Python"
