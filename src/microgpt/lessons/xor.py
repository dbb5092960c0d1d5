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
"""

from __future__ import annotations

import argparse
import random
import sys

from microgpt import Value

POINTS = [((0.0, 0.0), -1.0), ((0.0, 1.0), 1.0), ((1.0, 0.0), 1.0), ((1.0, 1.0), -1.0)]
HIDDEN = 4
LEARNING_RATE = 0.1
MAX_STEPS = 1000
MARGIN = 0.5


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="microgpt lesson xor", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="seed of the initial weights (1)")
    args = parser.parse_args(argv)

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
    if all_correct(model):
        print(f"all four points classified correctly after {step} steps")
        return 0
    print(f"not all points classified after {step} steps")
    return 1


if __name__ == "__main__":
    sys.exit(main())
