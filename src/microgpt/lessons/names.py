"""Lesson: train the names GPT and sample from it.

The model reads a name one character at a time and, at each position, gives
a probability to every possible next character. The loss is the average of
-log(probability of the character that really came next): about
ln(vocabulary size) = ln 27 = 3.3 for a model that knows nothing (every
character equally likely), and lower as it learns which characters follow
which. Each training step is one name: forward, backward, one Adam update.

After a few hundred steps the loss has clearly fallen and the samples look
somewhat like names; `microgpt train` runs the full 1000 steps.

Run: microgpt lesson names [--steps 200]   (or: python -m microgpt.lessons.names)
"""

from __future__ import annotations

import math
import sys

from microgpt import parsing
from microgpt.data import load_documents
from microgpt.monitor import gradient_report
from microgpt.sample import sample_many
from microgpt.settings import Rule
from microgpt.train import Run, TrainConfig


def main(argv: list[str] | None = None) -> int:
    parser = parsing.Parser(prog="microgpt lesson names", description="train the names GPT")
    steps, samples = Rule("int", low=2), Rule("int", low=0)  # 2: a first and a last loss to compare
    parser.add_argument("--steps", type=steps.parse, default=200, help="training steps (200)")
    parser.add_argument("--samples", type=samples.parse, default=10, help="names to sample (10)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (42)")
    args = parser.parse_args(argv)

    docs = load_documents()
    run = Run.start(docs, TrainConfig(steps=args.steps, seed=args.seed))
    vocab = run.tokenizer.vocab_size
    print(f"{len(docs)} names, {vocab} tokens (a-z and BOS), {len(run.model.params)} parameters")
    print(f"knowing nothing, the loss would be ln({vocab}) = {math.log(vocab):.4f}")
    print()

    # A look at the gradients before training starts: one backward() on the
    # first name, summarised per weight matrix; then cleared, as Adam would.
    loss = run.loss(run.docs[0])
    loss.backward()
    print(f"gradients of the loss on {run.docs[0]!r}, per weight matrix:")
    print(gradient_report(run.model.state_dict).table())
    for p in run.model.params:
        p.grad = 0.0
    print()

    losses = []
    every = max(1, args.steps // 10)
    while not run.done:
        losses.append(run.train_step())
        if run.step == 1 or run.step % every == 0:
            print(f"step {run.step:4d}/{args.steps}  loss {losses[-1]:.4f}")

    # One name's loss jumps around (some names are harder), so compare averages.
    window = max(1, args.steps // 5)
    first = sum(losses[:window]) / window
    last = sum(losses[-window:]) / window
    print(f"average loss of the first {window} steps: {first:.4f}")
    print(f"average loss of the last {window} steps:  {last:.4f}")
    print("the loss went down" if last < first else "the loss did not go down")
    print()

    print(f"{args.samples} names sampled from the model (temperature 0.5):")
    for name in sample_many(run.model, run.tokenizer, run.rng, args.samples):
        print(f"  {name}")
    return 0 if last < first else 1


if __name__ == "__main__":
    sys.exit(main())
