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


engine: ModuleType
PURE_REASON: str
engine, PURE_REASON = _load_engine()
COMPILED: bool = bool(engine.COMPILED)
ENGINE_NAME: str = "compiled" if COMPILED else "pure Python"
