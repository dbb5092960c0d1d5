"""Lessons: short programs that each show one idea, with numbers to check.

Run one with `microgpt lesson NAME` or `python -m microgpt.lessons.NAME`,
and read its source next to what it prints. `LESSONS` lists them in the order
they build on each other.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from microgpt.errors import UsageError

LESSONS: dict[str, str] = {
    "autograd": "backward() is the chain rule: L = (a + b)**2, by hand and by machine",
    "new_op": "write your own op with Value(data, children, local_grads, op)",
    "xor": "a tiny neural network learns XOR by gradient descent",
    "attention": "causal attention: each position looks only at itself and the past",
    "names": "train the names GPT for a few steps: the loss falls, names appear",
}


def listing() -> str:
    width = max(len(name) for name in LESSONS)
    lines = [f"  {name:<{width}}  {about}" for name, about in LESSONS.items()]
    return "lessons (run: microgpt lesson NAME):\n" + "\n".join(lines)


def run(name: str, argv: Sequence[str] = ()) -> int:
    """Run lesson `name` with its own command-line arguments `argv`."""
    if name not in LESSONS:
        raise UsageError(f"no lesson {name!r}; the lessons are: {', '.join(LESSONS)}")
    lesson = importlib.import_module(f"microgpt.lessons.{name}")
    status: int = lesson.main(list(argv))
    return status
