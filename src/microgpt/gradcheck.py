"""Gradient checking: are the gradients from `backward()` right?

The chain rule is only as good as each op's local gradient. A finite
difference needs no derivative at all: nudge one input up and down by `eps`,
recompute the output, and the slope is

    (f(x + eps) - f(x - eps)) / (2 eps)

If that agrees with `backward()` for every input, the local gradients are
right (for these inputs). It costs two forward passes per input, which is why
`backward()` exists, and why a model is checked on a sample of its weights.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from microgpt import settings as st
from microgpt.console import Console
from microgpt.nn import GPTConfig
from microgpt.settings import Rule, Settings, setting

if TYPE_CHECKING:
    from microgpt.engine import Value

DEFAULT_EPS = 1e-6
DEFAULT_TOLERANCE = 1e-4
# Gradients smaller than this are compared on this scale instead of their own:
# a finite difference of a float64 loss is only good to about 1e-9 (rounding
# in f, divided by 2 eps), so the relative error of a near-zero gradient
# would measure that noise, not the gradient.
SMALLEST_SCALE = 1e-4
# A small GPT for `microgpt gradcheck`, so the check is quick; the maths is the
# same at any size. Its shape is GPTConfig's settings (the model flags), these
# defaults apart; dropout stays off (a finite difference needs the same mask).
GRADCHECK_MODEL: dict[str, Any] = {
    "n_layer": 1,
    "n_embd": 8,
    "n_head": 2,
    "block_size": 8,
    "norm": "rmsnorm",
    "activation": "relu",
}
GRADCHECK_NAMES = 4


@dataclass(frozen=True)
class GradcheckConfig(Settings):
    """The settings of `microgpt gradcheck`."""

    per_matrix: int = setting(2, "weights checked per weight matrix", Rule("int", low=1))
    seed: int = setting(0, "seed of the model and the sample", Rule("int"))
    # A nudge above 0.1 moves a weight far out of its range, where the loss may overflow.
    eps: float = setting(DEFAULT_EPS, "nudge size", Rule("float", 0.0, 0.1, low_open=True))
    tolerance: float = setting(
        DEFAULT_TOLERANCE, "largest relative error that passes", Rule("float", low=0.0)
    )


@dataclass(frozen=True)
class GradCheckRow:
    """One input: the gradient from backward() and the finite difference."""

    index: int
    name: str
    analytic: float
    numeric: float

    @property
    def rel_error(self) -> float:
        """|analytic - numeric| / max(|analytic|, |numeric|, SMALLEST_SCALE)."""
        scale = max(abs(self.analytic), abs(self.numeric), SMALLEST_SCALE)
        return abs(self.analytic - self.numeric) / scale


@dataclass(frozen=True)
class GradCheckResult:
    """Every input's row, and the verdict."""

    rows: list[GradCheckRow]
    tolerance: float

    @property
    def worst(self) -> GradCheckRow:
        """The row with the largest relative error (NaN counts as largest)."""
        return max(self.rows, key=lambda r: _sort_key(r.rel_error))

    @property
    def max_rel_error(self) -> float:
        return self.worst.rel_error

    @property
    def passed(self) -> bool:
        # written so that a NaN error fails
        return all(r.rel_error <= self.tolerance for r in self.rows)

    def table(self, heading: str = "input") -> str:
        """The rows as a text table, then one PASS/FAIL line."""
        width = max([len(heading)] + [len(r.name) for r in self.rows])
        lines = [f"{heading:<{width}}  {'analytic':>14}  {'numeric':>14}  {'rel error':>9}"]
        for r in self.rows:
            mark = "" if r.rel_error <= self.tolerance else "  <-- wrong"
            lines.append(
                f"{r.name:<{width}}  {r.analytic:>14.6e}  {r.numeric:>14.6e}  "
                f"{r.rel_error:>9.1e}{mark}"
            )
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{verdict}: worst relative error {self.max_rel_error:.1e} at {self.worst.name} "
            f"(tolerance {self.tolerance:.0e}, {len(self.rows)} inputs checked)"
        )


def _sort_key(error: float) -> float:
    return float("inf") if error != error else error  # NaN sorts last


def gradcheck(
    f: Callable[[list[Value]], Value],
    inputs: Sequence[Value],
    eps: float = DEFAULT_EPS,
    names: Sequence[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> GradCheckResult:
    """Compare `backward()` with central finite differences.

    `f(inputs)` must build a scalar `Value` from the inputs, afresh on every
    call: it is called once for backward() and twice per input with that
    input's `.data` nudged by +-eps (and put back afterwards). The inputs'
    `.grad` are reset to zero first and hold the analytic gradients after.
    """
    inputs = list(inputs)
    if names is None:
        names = [f"input {i}" for i in range(len(inputs))]
    if len(names) != len(inputs):
        raise ValueError(f"{len(names)} names for {len(inputs)} inputs")
    if not inputs:
        raise ValueError("gradcheck needs at least one input")

    for x in inputs:
        x.grad = 0.0
    out = f(inputs)
    out.backward()
    analytic = [x.grad for x in inputs]

    rows = []
    for i, x in enumerate(inputs):
        original = x.data
        try:
            x.data = original + eps
            up = f(inputs).data
            x.data = original - eps
            down = f(inputs).data
        finally:
            x.data = original
        # divide by the step actually taken: x + eps is rounded to a float
        step = (original + eps) - (original - eps)
        rows.append(GradCheckRow(i, names[i], analytic[i], (up - down) / step))
    return GradCheckResult(rows, tolerance)


def gradcheck_model(
    state_dict: Mapping[str, Sequence[Sequence[Value]]],
    loss: Callable[[], Value],
    per_matrix: int = 2,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    tolerance: float = DEFAULT_TOLERANCE,
) -> GradCheckResult:
    """Check a model's gradients on `per_matrix` random weights of each matrix.

    `loss()` computes the model's loss from its current weights (for example
    `lambda: run.loss(doc)`); nudging a weight's `.data` changes what it
    computes next. All weights' `.grad` are zero afterwards, as an optimiser
    step would leave them, so checking does not disturb training.
    """
    rng = random.Random(seed)
    chosen: list[Value] = []
    names: list[str] = []
    for name, matrix in state_dict.items():
        cells = [(i, j) for i in range(len(matrix)) for j in range(len(matrix[i]))]
        for i, j in rng.sample(cells, min(per_matrix, len(cells))):
            chosen.append(matrix[i][j])
            names.append(f"{name}[{i}][{j}]")
    everything = [p for matrix in state_dict.values() for row in matrix for p in row]
    for p in everything:
        p.grad = 0.0  # backward() adds to .grad: start from zero
    try:
        return gradcheck(lambda _: loss(), chosen, eps, names, tolerance)
    finally:
        for p in everything:
            p.grad = 0.0


def gradcheck_gpt(
    config: GradcheckConfig,
    say: Callable[[str], None] = print,
    model: Mapping[str, Any] | None = None,
) -> GradCheckResult:
    """`microgpt gradcheck`: check a small GPT's gradients on the mean loss of
    a few names; `say` prints the heading, the table and PASS or FAIL.
    `model` holds GPTConfig settings that replace GRADCHECK_MODEL's
    (dropout is refused: it would draw another mask on every evaluation)."""
    from microgpt.data import load_documents
    from microgpt.train import Run, TrainConfig

    shape = {**GRADCHECK_MODEL, **(model or {})}
    if shape.get("dropout"):
        raise ValueError("gradcheck needs dropout off: each loss would draw another mask")
    run = Run.start(load_documents(), TrainConfig(seed=config.seed), **shape)
    names = run.docs[:GRADCHECK_NAMES]

    def loss() -> Value:
        # the mean of the names' losses, as a batch of them would be trained
        return sum((run.loss(name) for name in names[1:]), run.loss(names[0])) / len(names)

    say(
        f"gradcheck: GPT {shape}, loss on {', '.join(names)}; "
        f"{config.per_matrix} weight(s) per matrix, eps {config.eps:g}"
    )
    result = gradcheck_model(
        run.model.state_dict, loss, config.per_matrix, config.seed, config.eps, config.tolerance
    )
    say(result.table("parameter"))
    return result


# --- the command line ---------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    """Add `microgpt gradcheck` to the `microgpt` parser."""
    g = subparsers.add_parser(
        "gradcheck",
        help="check the GPT's gradients against finite differences",
        description="Compare backward() with finite differences on sampled weights of a small "
        "GPT's loss on a few names. Prints a table and PASS or FAIL (exit status 0 or 1).",
    )
    st.add_flags(g, GradcheckConfig)
    model = g.add_argument_group("model (a small one by default; dropout off)")
    st.add_flags(model, GPTConfig, only=[*GRADCHECK_MODEL], defaults=GRADCHECK_MODEL)
    g.set_defaults(func=cmd_gradcheck)


def cmd_gradcheck(args: argparse.Namespace, console: Console) -> int:
    config = st.from_flags(args, GradcheckConfig)
    st.from_flags(args, GPTConfig, vocab_size=1)  # a bad shape is refused in flag terms
    result = gradcheck_gpt(config, console.result, st.given(args, GPTConfig))
    return 0 if result.passed else 1
