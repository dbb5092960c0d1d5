"""microgpt: a GPT in scalar autograd, exact to the original, with a fast
compiled engine (set MICROGPT_PURE=1 for the interpreted one)."""

from microgpt._version import __version__
from microgpt.backend import COMPILED, ENGINE_NAME
from microgpt.backend import engine as _engine

Value = _engine.Value

__all__ = ["COMPILED", "ENGINE_NAME", "Value", "__version__"]
