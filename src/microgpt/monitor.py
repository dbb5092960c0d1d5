"""Gradient monitor: how big are the gradients of each weight matrix?

Call it after `loss.backward()` and before the optimiser step (which zeroes
the gradients). Gradients that grow without bound ("exploding") make training
diverge; gradients that all but vanish mean a part of the network is not
learning. Both are easier to see per matrix than per weight:

    loss.backward()
    print(gradient_report(model.state_dict).table())
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from microgpt.nn import Matrix

# Defaults for the names GPT: its matrices' gradient norms are between about
# 1e-3 and 2 in a healthy run.
EXPLODE_ABOVE = 10.0
VANISH_BELOW = 1e-5


@dataclass(frozen=True)
class MatrixGrad:
    """The gradient of one weight matrix, summarised."""

    name: str
    size: int  # number of weights
    norm: float  # L2 norm: sqrt of the sum of squared gradients
    max_abs: float  # the largest |gradient|
    status: str  # "ok", "exploding", "vanishing" or "not finite"


@dataclass(frozen=True)
class GradReport:
    rows: list[MatrixGrad]
    explode_above: float
    vanish_below: float

    @property
    def total_norm(self) -> float:
        """The global norm over all matrices (what gradient clipping limits)."""
        return math.sqrt(sum(r.norm * r.norm for r in self.rows))

    @property
    def flagged(self) -> list[MatrixGrad]:
        return [r for r in self.rows if r.status != "ok"]

    @property
    def healthy(self) -> bool:
        return not self.flagged

    def table(self) -> str:
        width = max([len("matrix")] + [len(r.name) for r in self.rows])
        lines = [f"{'matrix':<{width}}  {'weights':>7}  {'grad norm':>10}  {'max |grad|':>10}"]
        for r in self.rows:
            flag = "" if r.status == "ok" else f"  <-- {r.status}"
            lines.append(
                f"{r.name:<{width}}  {r.size:>7}  {r.norm:>10.3e}  {r.max_abs:>10.3e}{flag}"
            )
        lines.append(
            f"total norm {self.total_norm:.3e}; "
            + (
                "all matrices ok"
                if self.healthy
                else f"{len(self.flagged)} flagged (norm above {self.explode_above:g} "
                f"is exploding, below {self.vanish_below:g} vanishing)"
            )
        )
        return "\n".join(lines)


def gradient_report(
    state_dict: Mapping[str, Matrix],
    explode_above: float = EXPLODE_ABOVE,
    vanish_below: float = VANISH_BELOW,
) -> GradReport:
    """Norm and largest entry of each matrix's gradient, with a status:
    exploding if the norm is above `explode_above`, vanishing if below
    `vanish_below`, not finite if any gradient is NaN or infinite."""
    rows = []
    for name, matrix in state_dict.items():
        grads = [p.grad for row in matrix for p in row]
        norm = math.sqrt(sum(g * g for g in grads))
        max_abs = max((abs(g) for g in grads), default=0.0)
        if not all(math.isfinite(g) for g in grads):
            status = "not finite"
        elif norm > explode_above:
            status = "exploding"
        elif norm < vanish_below:
            status = "vanishing"
        else:
            status = "ok"
        rows.append(MatrixGrad(name, len(grads), norm, max_abs, status))
    return GradReport(rows, explode_above, vanish_below)
