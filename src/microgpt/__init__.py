"""microgpt: a GPT in scalar autograd, exact to the original, with a fast
compiled engine (set MICROGPT_PURE=1 for the interpreted one)."""

from microgpt.backend import COMPILED, ENGINE_NAME
from microgpt.backend import engine as _engine

__version__ = "0.1.0"

Value = _engine.Value
no_grad = _engine.no_grad

__all__ = ["COMPILED", "ENGINE_NAME", "Value", "__version__", "no_grad"]
