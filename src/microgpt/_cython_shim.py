"""A no-op stand-in for the `cython` module, so that `engine.py` runs
interpreted on a machine without Cython (the runtime needs only the standard
library). Only the names `engine.py` uses are here; each does nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

compiled = False
__version__ = None

_F = TypeVar("_F", bound=Callable[..., Any])

double = float
longlong = int
uchar = int
int = int  # noqa: A001 - mirrors cython.int
Py_ssize_t = int


def _passthrough(obj: _F) -> _F:
    return obj


cclass = final = no_gc = cfunc = inline = _passthrough


def declare(ctype: Any = None, value: Any = None, **_: Any) -> Any:
    """Interpreted, a declaration is just its initial value."""
    return value


def auto_pickle(_enabled: bool) -> Callable[[_F], _F]:
    return _passthrough
