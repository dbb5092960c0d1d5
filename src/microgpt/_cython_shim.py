"""A no-op stand-in for the `cython` module, so that `engine.py` runs
interpreted on a machine without Cython (the runtime needs only the standard
library). Only the names `engine.py` uses are here; each does nothing, and a
C type is the Python type that stands for it when interpreted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeAlias, TypeVar

compiled = False
__version__ = None

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")

double = float
longlong = int
uchar = int
int = int  # noqa: A001 - mirrors cython.int
bint = bool
Py_ssize_t = int
void: TypeAlias = None
p_double: TypeAlias = list[float]  # interpreted, C arrays of floats are lists
NULL: Any = None


def _passthrough(obj: _F) -> _F:
    return obj


cclass = final = no_gc = cfunc = inline = _passthrough


def declare(ctype: Any = None, value: Any = None, **_: Any) -> Any:
    """Interpreted, a declaration is just its initial value."""
    return value


def auto_pickle(_enabled: bool) -> Callable[[_F], _F]:
    return _passthrough


def cast(_ctype: Any, value: Any) -> Any:
    return value


def sizeof(_ctype: Any) -> int:
    return 8


class pointer(Generic[_T]):  # noqa: N801 - mirrors cython.pointer[...]
    """A C pointer; used only in code that runs compiled."""
