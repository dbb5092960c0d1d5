"""Lesson: a tiny neural network learns XOR.

XOR is 1 when exactly one input is 1. No straight line separates its ones
from its zeros, so a single neuron cannot learn it; one hidden layer can.
The network is 2 inputs -> 4 tanh neurons -> 1 tanh output, all `Value`s:

    h = tanh(W1 x + b1)       out = tanh(w2 . h + b2)

Targets are -1 (false) and +1 (true); a point counts as classified when the
output is on the target's side of zero by a margin of at least 0.5. Each
step: the squared error summed over the four points, backward(), and plain
gradient descent, p -= lr * dloss/dp. Training stops as soon as all four
points are classified.

Run: microgpt lesson xor      (or: python -m microgpt.lessons.xor)
     microgpt lesson xor --plot xor.png   draws the decision boundary (needs matplotlib)
"""

from __future__ import annotations

import random
import sys
from typing import TYPE_CHECKING

from microgpt import Value, parsing
from microgpt.errors import Name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

POINTS = [((0.0, 0.0), -1.0), ((0.0, 1.0), 1.0), ((1.0, 0.0), 1.0), ((1.0, 1.0), -1.0)]
HIDDEN = 4
LEARNING_RATE = 0.1
MAX_STEPS = 1000
MARGIN = 0.5
PLOT = Name("plot", "picture")  # this lesson's --plot


class MLP:
    """2 -> HIDDEN -> 1, with tanh after both layers."""

    def __init__(self, rng: random.Random) -> None:
        def weight() -> Value:
            return Value(rng.uniform(-1.0, 1.0))

        self.w1 = [[weight(), weight()] for _ in range(HIDDEN)]
        self.b1 = [weight() for _ in range(HIDDEN)]
        self.w2 = [weight() for _ in range(HIDDEN)]
        self.b2 = weight()
        self.params = [p for row in self.w1 for p in row] + self.b1 + self.w2 + [self.b2]

    def __call__(self, x: tuple[float, float]) -> Value:
        h = [(w[0] * x[0] + w[1] * x[1] + b).tanh() for w, b in zip(self.w1, self.b1)]
        return (sum((wi * hi for wi, hi in zip(self.w2, h)), self.b2)).tanh()


def classified(output: float, target: float) -> bool:
    # the sign of the output is the class; the margin asks for a clear answer
    return output * target >= MARGIN


def all_correct(model: MLP) -> bool:
    return all(classified(model(x).data, target) for x, target in POINTS)


def boundary_figure(model: MLP, steps: int, resolution: int = 101) -> Figure:
    """The network's output over the plane around the four points: the line
    where it crosses 0 is the decision boundary, the two sides its answers."""
    from microgpt.plot import new_figure, style

    lo, hi = -0.5, 1.5
    grid = [lo + (hi - lo) * i / (resolution - 1) for i in range(resolution)]
    # outputs[row][col]: row is x2 (vertical axis), col is x1
    outputs = [[model((x1, x2)).data for x1 in grid] for x2 in grid]
    fig = new_figure(6.5, 5.5)
    ax = fig.add_subplot()
    levels = [-1.0 + 0.1 * i for i in range(21)]
    filled = ax.contourf(grid, grid, outputs, levels=levels, cmap="RdBu_r", alpha=0.8)
    fig.colorbar(filled, ax=ax, label="network output (tanh)", ticks=[-1, -0.5, 0, 0.5, 1])
    ax.contour(grid, grid, outputs, levels=[0.0], colors="black", linewidths=2)
    ax.contour(
        grid,
        grid,
        outputs,
        levels=[-MARGIN, MARGIN],
        colors="black",
        linewidths=1,
        linestyles="dashed",
    )
    for (x1, x2), target in POINTS:
        true = target > 0
        ax.scatter(
            x1,
            x2,
            s=160,
            marker="o" if true else "X",
            edgecolors="black",
            linewidths=1.5,
            color="#b2182b" if true else "#2166ac",
            zorder=3,
        )
        ax.annotate(
            f"{x1:g} xor {x2:g} = {int(true)}",
            (x1, x2),
            textcoords="offset points",
            xytext=(0, 14),
            ha="center",
            fontsize=10,
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.8, "linewidth": 0},
        )
    style(ax, f"XOR: the decision boundary after {steps} steps", "input x1", "input x2")
    from matplotlib.lines import Line2D

    key = [
        Line2D([], [], color="black", linewidth=2, label="boundary: output 0"),
        Line2D([], [], color="black", linewidth=1, linestyle="dashed", label="margin: output ±0.5"),
    ]
    ax.legend(handles=key, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=9)
    ax.set_aspect("equal")
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = parsing.Parser(prog="microgpt lesson xor", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="seed of the initial weights (1)")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw the trained network's decision boundary"
    )
    args = parser.parse_args(argv)
    if args.plot is not None:  # fail before training, not after
        from microgpt.plot import check_picture, require_matplotlib

        require_matplotlib()
        check_picture(args.plot, PLOT)

    model = MLP(random.Random(args.seed))
    print(f"an MLP 2 -> {HIDDEN} -> 1 with {len(model.params)} parameters, random weights")
    step = 0
    while not all_correct(model) and step < MAX_STEPS:
        loss = sum(((model(x) - target) ** 2 for x, target in POINTS), Value(0.0))
        for p in model.params:
            p.grad = 0.0  # backward() adds to .grad, so clear last step's first
        loss.backward()
        for p in model.params:
            p.data -= LEARNING_RATE * p.grad
        step += 1
        if step == 1 or step % 10 == 0:
            print(f"step {step:4d}  loss {loss.data:.4f}")

    print()
    print(f"{'input':<7}  {'target':>6}  {'output':>7}  verdict")
    for x, target in POINTS:
        out = model(x).data
        verdict = "correct" if classified(out, target) else "wrong"
        print(f"{x[0]:g} xor {x[1]:g}  {target:>6g}  {out:>7.3f}  {verdict}")
    if args.plot is not None:
        from microgpt.plot import save_figure

        save_figure(boundary_figure(model, step), args.plot, PLOT)
        print(f"wrote {args.plot}", file=sys.stderr)
    if all_correct(model):
        print(f"all four points classified correctly after {step} steps")
        return 0
    print(f"not all points classified after {step} steps")
    return 1


if __name__ == "__main__":
    sys.exit(main())
