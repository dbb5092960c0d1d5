"""Fused nodes give every gradient bit for bit as the chains of scalar nodes
they stand for, in any graph; and `no_grad()` records none.

Each random graph is built twice from the same program: once with the fused
ops (`dot`, `vsum`, `linear`, `scaled_dots`, `exps_shifted`,
`weighted_sum`, and `a / b` as one node), once with the explicit scalar code
each stands for (`sum(w * x for ...)`, `sum(vs)`, `a * b**-1`, ...), which is
what Python and the original microgpt build. Values and every node's
gradient must be equal as floats, not just close.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from typing import Any

import pytest

import microgpt
from microgpt.backend import engine

Value = microgpt.Value
Program = list[tuple[str, list[int], float]]


def random_program(rng: random.Random, n_leaves: int, n_ops: int) -> Program:
    """Ops over earlier nodes (by index), so the same program builds either graph.

    Operands are drawn with repeats and often from the newest nodes, so that a
    node is reached for the first time between two terms of a dot or a sum,
    and gets gradient from several places: the cases where the order of
    accumulation shows in the last bit. A `linear` op makes one node per row,
    its rows sharing one x; its weights are leaves or nodes.
    """
    program: Program = []
    size = n_leaves  # the nodes so far
    for _ in range(n_ops):

        def pick(size: int = size) -> int:
            if rng.random() < 0.5:
                return rng.randrange(size)
            return rng.randrange(max(0, size - 4), size)  # one of the newest nodes

        kind = rng.choice(
            ["dot", "dot", "sum", "sum", "linear", "add", "mul", "exp", "tanh", "pow", "relu"]
            + ["div", "div", "scaled", "scaled", "shifted", "shifted", "weighted", "weighted"]
            + ["attend", "attend", "attend"]
        )
        if kind in ("dot", "sum"):
            length = rng.randint(1, 6)
            program.append(
                (kind, [pick() for _ in range(length * (2 if kind == "dot" else 1))], 0.0)
            )
        elif kind == "linear":  # k is the length of x; then come the rows' weights
            length, rows = rng.randint(1, 5), rng.randint(1, 4)
            leaf_weights = rng.random() < 0.5
            xs = [pick() for _ in range(length)]
            ws = [rng.randrange(n_leaves) if leaf_weights else pick() for _ in range(rows * length)]
            program.append((kind, xs + ws, float(length)))
            size += rows - 1
        elif kind == "scaled":  # q, then the ks; k is the length of q
            length, rows = rng.randint(1, 4), rng.randint(1, 4)
            program.append((kind, [pick() for _ in range(length * (rows + 1))], float(length)))
            size += rows - 1
        elif kind == "shifted":
            length = rng.randint(1, 5)
            program.append((kind, [pick() for _ in range(length)], 0.0))
            size += length - 1
        elif kind == "weighted":  # the weights, then the vectors; k is their width
            count, width = rng.randint(1, 4), rng.randint(1, 3)
            program.append((kind, [pick() for _ in range(count * (width + 1))], float(width)))
            size += width - 1
        elif kind == "attend":  # q, the keys, the values; k holds the three sizes
            width, positions, width_v = rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 3)
            count = width * (positions + 1) + positions * width_v
            program.append((kind, [pick() for _ in range(count)], float(width * 100 + width_v)))
            size += width_v - 1
        elif kind in ("add", "mul", "div"):
            program.append((kind, [pick(), pick()], 0.0))
        else:
            program.append((kind, [pick()], rng.choice([2.0, -1.0, 0.5, 3.0])))
        size += 1
    return program


def explicit_dot(ws: Any, xs: Any) -> Any:
    return sum(w * x for w, x in zip(ws, xs))


def explicit_scaled_dots(q: Any, ks: Any, divisor: float) -> list[Any]:
    return [explicit_dot(q, k) / divisor for k in ks]


def explicit_exps_shifted(values: Any, shift: float) -> list[Any]:
    return [(v - shift).exp() for v in values]


def explicit_weighted_sum(weights: Any, vectors: Any) -> list[Any]:
    return [explicit_dot(weights, [v[j] for v in vectors]) for j in range(len(vectors[0]))]


def explicit_attend(q: Any, keys: Any, values: Any) -> list[Any]:
    scores = [explicit_dot(q, k) / len(q) ** 0.5 for k in keys]
    max_val = max(s.data for s in scores)
    exps = [(s - max_val).exp() for s in scores]
    total = sum(exps)
    weights = [e * total**-1 for e in exps]
    return explicit_weighted_sum(weights, values)


DIVISORS = (2.0, 3, 0.7, 8**0.5)


def build(program: Program, leaves: list[Any], fused: bool) -> list[Any]:
    nodes = list(leaves)
    for kind, args, k in program:
        xs = [nodes[a] for a in args]
        if kind == "dot":
            ws, vs = xs[0::2], xs[1::2]
            node = engine.dot(ws, vs) if fused else explicit_dot(ws, vs)
        elif kind == "linear":
            x, weights = xs[: int(k)], xs[int(k) :]
            rows = [weights[i : i + int(k)] for i in range(0, len(weights), int(k))]
            nodes += engine.linear(x, rows) if fused else [explicit_dot(row, x) for row in rows]
            continue
        elif kind == "sum":
            node = engine.vsum(xs) if fused else sum(xs)
        elif kind == "scaled":
            q, ks = xs[: int(k)], xs[int(k) :]
            rows = [ks[i : i + int(k)] for i in range(0, len(ks), int(k))]
            divisor = DIVISORS[len(nodes) % len(DIVISORS)]
            f = engine.scaled_dots if fused else explicit_scaled_dots
            nodes += f(q, rows, divisor)
            continue
        elif kind == "shifted":
            shift = max(x.data for x in xs)
            nodes += engine.exps_shifted(xs, shift) if fused else explicit_exps_shifted(xs, shift)
            continue
        elif kind == "weighted":
            count = len(xs) // (int(k) + 1)
            weights, flat = xs[:count], xs[count:]
            vectors = [flat[i : i + int(k)] for i in range(0, len(flat), int(k))]
            f = engine.weighted_sum if fused else explicit_weighted_sum
            nodes += f(weights, vectors)
            continue
        elif kind == "attend":
            width, width_v = int(k) // 100, int(k) % 100
            positions = (len(xs) - width) // (width + width_v)
            q, rest = xs[:width], xs[width:]
            keys = [rest[t * width : (t + 1) * width] for t in range(positions)]
            rest = rest[positions * width :]
            values = [rest[t * width_v : (t + 1) * width_v] for t in range(positions)]
            nodes += (engine.attend if fused else explicit_attend)(q, keys, values)
            continue
        elif kind == "div":  # a / b is one node fused, a * b**-1 explicitly
            den = xs[1] if abs(xs[1].data) > 0.1 else xs[1] + 2.0  # (no overflow)
            node = xs[0] / den if fused else xs[0] * den**-1
        elif kind == "add":
            node = xs[0] + xs[1]
        elif kind == "mul":
            node = xs[0] * xs[1]
        elif kind == "exp":
            node = xs[0].tanh().exp()
        elif kind == "tanh":
            node = xs[0].tanh()
        elif kind == "relu":
            node = xs[0].relu()
        else:
            node = (xs[0].tanh() * xs[0].tanh() + 1.0) ** k
        nodes.append(node)
    return nodes


def gradients_both_ways(seed: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    rng = random.Random(seed)
    n_leaves = rng.randint(1, 5)
    program = random_program(rng, n_leaves, rng.randint(1, 25))
    data = [rng.uniform(-1.5, 1.5) for _ in range(n_leaves)]
    results = []
    for fused in (True, False):
        leaves = [Value(x) for x in data]
        nodes = build(program, leaves, fused)
        # the output uses several nodes, so inner nodes have several parents
        root = sum(nodes[-3:]) if fused is False else engine.vsum(nodes[-3:])
        root.backward()
        # every node of the program that both graphs share (the dot/sum nodes
        # themselves are the last of their chain in the unfused graph)
        results.append([(node.data, node.grad) for node in nodes])
    return results[0], results[1]


SEEDS = range(400)


def test_random_graphs_of_fused_and_unfused_ops_match_the_explicit_chains() -> None:
    differing = [seed for seed in SEEDS if len(set(map(repr, gradients_both_ways(seed)))) != 1]
    assert differing == [], f"fused and explicit graphs differ for seeds {differing[:10]}"


def test_the_random_graphs_reach_nodes_between_two_terms() -> None:
    # Guard: the programs must exercise what makes per-term order matter: a
    # dot or sum one of whose operands is a non-leaf node first reached by it,
    # after an earlier term of it.
    def first_reached_between_terms(seed: int) -> bool:
        rng = random.Random(seed)
        n_leaves = rng.randint(1, 5)
        program = random_program(rng, n_leaves, rng.randint(1, 25))
        used: set[int] = set()  # operands of the ops so far
        for kind, args, _ in program:
            size = 2 if kind == "dot" else 1
            if kind in ("dot", "sum"):
                later = args[size:]
                if any(
                    a >= n_leaves and a not in used and a not in args[:i]
                    for i, a in enumerate(later, start=size)
                ):
                    return True
            used.update(args)
        return False

    assert sum(first_reached_between_terms(seed) for seed in SEEDS) >= 50

    # and linear ops of several rows whose weights include nodes, which the
    # traversal must still go into after a first row has reached all of x
    def linear_with_node_weights(seed: int) -> bool:
        rng = random.Random(seed)
        n_leaves = rng.randint(1, 5)
        for kind, args, k in random_program(rng, n_leaves, rng.randint(1, 25)):
            weights = args[int(k) :]
            if kind == "linear" and len(weights) > k and max(weights) >= n_leaves:
                return True
        return False

    assert sum(linear_with_node_weights(seed) for seed in SEEDS) >= 50


def test_the_random_graphs_use_every_fused_op_on_nodes_reached_first_by_it() -> None:
    # Guard: each of the model's vector ops appears often, with an operand
    # that is a node (not a leaf) first reached through it after another of
    # its operands; and a / b whose b gets gradient from elsewhere too.
    counts = dict.fromkeys(("scaled", "shifted", "weighted", "attend", "div"), 0)
    for seed in SEEDS:
        rng = random.Random(seed)
        n_leaves = rng.randint(1, 5)
        program = random_program(rng, n_leaves, rng.randint(1, 25))
        used: list[int] = []  # operands of the ops so far, with repeats
        for kind, args, _ in program:
            if kind in ("scaled", "shifted", "weighted", "attend") and any(
                a >= n_leaves and a not in used and a not in args[:i]
                for i, a in enumerate(args[1:], start=1)
            ):
                counts[kind] += 1
            used += args
        for kind, args, _ in program:
            if kind == "div" and args[1] >= n_leaves and used.count(args[1]) > 1:
                counts["div"] += 1
    assert min(counts.values()) >= 30, counts


def test_the_gpt_loss_gradients_match_the_explicit_chains() -> None:
    # The model's own graph: a training loss built with fused nodes, and the
    # same loss with every dot and vsum spelled out as Python's sum().
    from microgpt import nn
    from microgpt.train import Run, TrainConfig

    docs = ["emma", "olivia", "ava", "isabella", "sophia", "mia"]

    names = ("dot", "vsum", "linear", "scaled_dots", "exps_shifted", "weighted_sum", "attend")

    def grads(*ops: Callable[..., Any]) -> list[float]:
        saved = [getattr(nn, name) for name in names]
        for name, op in zip(names, ops):
            setattr(nn, name, op)
        try:
            run = Run.start(docs, TrainConfig(seed=3), n_layer=2, n_embd=8, n_head=2)
            loss = run.loss("isabella")
            loss.backward()
            return [loss.data] + [p.grad for p in run.model.params]
        finally:
            for name, op in zip(names, saved):
                setattr(nn, name, op)

    fused = grads(*[getattr(engine, name) for name in names])
    explicit = grads(
        explicit_dot,
        sum,
        lambda x, w: [explicit_dot(row, x) for row in w],
        explicit_scaled_dots,
        explicit_exps_shifted,
        explicit_weighted_sum,
        explicit_attend,
    )
    assert fused == explicit


# --- no_grad -----------------------------------------------------------------------


def test_no_grad_computes_the_same_values_and_records_no_graph() -> None:
    xs = [Value(0.5), Value(-1.25), Value(2.0)]
    ws = [Value(0.3), Value(0.7), Value(-0.1)]
    expected = [(engine.dot(ws, xs).exp() + engine.vsum(xs)).data, (xs[0] * xs[1] / 3).data]
    with engine.no_grad():
        out = [(engine.dot(ws, xs).exp() + engine.vsum(xs)), xs[0] * xs[1] / 3]
    assert [v.data for v in out] == expected
    assert all(v.children == () for v in out)
    # and recording is back on afterwards, also after an error inside
    with pytest.raises(ZeroDivisionError), engine.no_grad():
        _ = Value(0.0) ** -1
    assert (xs[0] * xs[1]).children == (xs[0], xs[1])


def test_no_grad_nests() -> None:
    x = Value(2.0)
    with engine.no_grad():
        with engine.no_grad():
            pass
        assert (x * x).children == ()
    assert (x * x).children == (x, x)
    assert microgpt.no_grad is engine.no_grad


def test_a_deep_chain_of_fused_nodes_backpropagates_and_frees() -> None:
    # dot and sum nodes hold their operands in a list: freeing a long chain of
    # them must not recurse in C (compiled), and the traversal has no depth limit.
    x, y = Value(1.0), Value(0.5)
    refs = sys.getrefcount(y)
    for i in range(200_000):
        x = engine.vsum([x, y]) if i % 2 else engine.dot([x], [y])
    x.backward()
    assert y.grad > 0 and x.grad == 1.0
    del x  # would overflow the C stack if freed recursively
    assert sys.getrefcount(y) == refs  # and every node was freed


def test_a_weight_made_by_hand_without_an_op_name_passes_its_gradient_on() -> None:
    # a node built with Value(data, children, local_grads) and no op name is
    # not a leaf: the traversal must go into it, also as the weight of a later
    # row of a linear whose x an earlier row has reached
    a, x = Value(2.0), Value(5.0)
    made = Value(4.0, (a,), (3.0,))
    assert made.op == "" and made.children == (a,)
    rows = engine.linear([x], [[Value(1.0)], [made]])
    engine.vsum(rows).backward()
    assert a.grad == 3.0 * 5.0  # d(made * x)/d(made) * d(made)/da
    assert x.grad == 1.0 + 4.0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x: engine.dot([x], []), "dot() of vectors of different lengths (1 and 0)"),
        (lambda x: engine.dot([], [x]), "dot() of vectors of different lengths (0 and 1)"),
        (lambda x: engine.dot([], []), "dot() of empty vectors"),
        (lambda x: engine.linear([], [[x]]), "linear() of vectors of different lengths (1 and 0)"),
        (lambda x: engine.linear([x], [[x], []]), "linear() of vectors of different lengths"),
        (lambda x: engine.linear([], [[]]), "linear() of empty vectors"),
    ],
)
def test_dot_and_linear_name_what_is_wrong_with_their_vectors(
    make: Callable[[Any], Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make(Value(1.0))


def test_linear_of_no_rows_is_an_empty_vector() -> None:
    assert engine.linear([Value(1.0)], []) == []
