"""Lesson: causal self-attention.

Each position t makes a query q_t, and every position s makes a key k_s and
a value v_s (three linear maps of its vector x_s). Position t scores each
earlier position by q_t . k_s / sqrt(d), turns the scores into weights with
softmax (positive, summing to 1), and outputs the weighted sum of the v_s.

"Causal" means a position sees only itself and the past: when predicting the
next character, the future is not known yet. Here it is simply that the
loop over s stops at t. The weights above the diagonal are never computed:
they are 0.

Part 1 writes one attention head from `Value`s; part 2 prints the weights of
a real (small, single-head) GPT reading a name, via `GPT.attention_weights`.

Run: microgpt lesson attention      (or: python -m microgpt.lessons.attention)
"""

from __future__ import annotations

import random
import sys

from microgpt import Value, parsing
from microgpt.data import load_documents
from microgpt.errors import UsageError
from microgpt.nn import linear, softmax, vsum  # vsum(xs): sum(xs), node for node
from microgpt.train import Run, TrainConfig

Vector = list[Value]
BLOCK_SIZE = 8  # the part 2 GPT's context: BOS and up to 7 characters


def causal_attention(
    xs: list[Vector], wq: list[Vector], wk: list[Vector], wv: list[Vector]
) -> tuple[list[Vector], list[list[float]]]:
    """One head over a sequence: the outputs, and the weights [t][s] for s <= t."""
    d = len(wq)
    keys = [linear(x, wk) for x in xs]
    values = [linear(x, wv) for x in xs]
    outputs, weights = [], []
    for t, x in enumerate(xs):
        q = linear(x, wq)
        # only s = 0..t: position t never looks ahead
        scores = [vsum([qi * ki for qi, ki in zip(q, keys[s])]) / d**0.5 for s in range(t + 1)]
        w = softmax(scores)
        outputs.append([vsum([w[s] * values[s][j] for s in range(t + 1)]) for j in range(d)])
        weights.append([ws.data for ws in w])
    return outputs, weights


def print_matrix(weights: list[list[float]], labels: list[str]) -> None:
    """Rows are queries (position t), columns keys (position s); 0 = not seen."""
    print("      " + "".join(f"{label:>7}" for label in labels))
    for t, row in enumerate(weights):
        cells = [f"{row[s]:7.3f}" if s <= t else f"{'0':>7}" for s in range(len(labels))]
        print(f"{labels[t]:>6}" + "".join(cells))
    above = sum(len(labels) - len(row) for row in weights)
    worst = max(abs(sum(row) - 1.0) for row in weights)
    print(
        f"weights above the diagonal: {above}, all 0 (never computed);"
        f" each row sums to 1 (off by at most {worst:.1e})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = parsing.Parser(prog="microgpt lesson attention", description="causal self-attention")
    parser.add_argument("--name", default="emma", help="the name the GPT reads in part 2 (emma)")
    args = parser.parse_args(argv)
    if not 1 <= len(args.name) <= BLOCK_SIZE - 1:
        parser.error(f"--name must be 1 to {BLOCK_SIZE - 1} characters (the GPT's context)")

    # The GPT of part 2 (one layer, one head), made first to check the name
    docs = load_documents()
    run = Run.start(docs, TrainConfig(), n_head=1, n_embd=8, block_size=BLOCK_SIZE)
    try:
        tokens = [run.tokenizer.bos, *run.tokenizer.encode(args.name)]
    except UsageError as exc:  # a character the names never use
        parser.error(str(exc))

    # Part 1: one head from scratch, on 5 random vectors of size 4
    rng = random.Random(0)

    def matrix(n_out: int, n_in: int) -> list[Vector]:
        return [[Value(rng.gauss(0, 1)) for _ in range(n_in)] for _ in range(n_out)]

    d, length = 4, 5
    xs = matrix(length, d)
    _, weights = causal_attention(xs, matrix(d, d), matrix(d, d), matrix(d, d))
    print("Part 1: one attention head written with Values, on 5 random vectors.")
    print("Row t: how much position t attends to each position s.")
    print_matrix(weights, [f"pos {t}" for t in range(length)])
    print()

    # Part 2: the GPT's own attention weights
    gpt_weights = run.model.attention_weights(tokens)[0][0]  # layer 0, head 0
    labels = ["BOS" if i == run.tokenizer.bos else run.tokenizer.chars[i] for i in tokens]
    print(f"Part 2: an untrained GPT (1 layer, 1 head) reading BOS + {args.name!r}.")
    print_matrix(gpt_weights, labels)
    print("Its weights are nearly even, about 1/(t+1) each: the queries and keys are")
    print("still random. Training changes wq and wk, and with them where each position looks.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
