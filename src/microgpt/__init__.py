"""microgpt: a GPT in scalar autograd, exact to the original, with a fast
compiled engine (set MICROGPT_PURE=1 for the interpreted one)."""

from typing import TYPE_CHECKING

from microgpt._version import __version__
from microgpt.backend import COMPILED, ENGINE_NAME
from microgpt.backend import engine as _engine

if TYPE_CHECKING:  # the type checker reads engine.py; at run time, the selected engine's
    from microgpt.engine import Value
else:
    Value = _engine.Value

no_grad = _engine.no_grad

__all__ = ["COMPILED", "ENGINE_NAME", "Value", "__version__", "no_grad"]
