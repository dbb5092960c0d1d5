"""Property tests over random expressions built from every op of the engine.

A program is a few leaves and a list of instructions; each instruction applies
one op to earlier nodes (so nodes are shared) or to a Python number on either
side. Values are kept in safe ranges: an instruction whose input is outside
its op's safe domain (log of a small number, a relu input at its kink, ...)
makes hypothesis reject the example.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import pytest
from conftest import both_engines
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from microgpt.backend import engine as active_engine

UNARY = ["neg", "exp", "log", "relu", "tanh", "sigmoid", "gelu", "pow"]
BINARY = ["add", "sub", "mul", "div", "dot", "vsum"]
WITH_NUMBER = ["add_c", "c_add", "sub_c", "c_sub", "mul_c", "c_mul", "div_c", "c_div"]
EXPONENTS = [2, 3, -1, 0.5, -0.5, 1.5, 2.0]
LIMIT = 1e4  # no node may grow beyond this

leaf_values = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False, allow_infinity=False)
numbers = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False, allow_infinity=False)
instruction = st.tuples(
    st.sampled_from(UNARY + BINARY + WITH_NUMBER),
    st.integers(min_value=0, max_value=1000),  # first operand (taken modulo the nodes so far)
    st.integers(min_value=0, max_value=1000),  # second operand
    st.integers(min_value=0, max_value=1000),  # third operand (vsum)
    numbers,
    st.sampled_from(EXPONENTS),
)
programs = st.tuples(
    st.lists(leaf_values, min_size=1, max_size=3),
    st.lists(instruction, min_size=1, max_size=10),
)

SETTINGS = settings(max_examples=60, deadline=None)

# An explicit example with every op once (hypothesis' 60 random ones may miss
# some), on leaves where each is safe, plus pow of a negative base.
EVERY_OP = (
    [0.7, -1.3, 1.6],
    [(op, 0, 1, 2, 1.5, 0.5) for op in UNARY + BINARY + WITH_NUMBER]
    + [("pow", 1, 0, 0, 0.0, 3), ("pow", 1, 0, 0, 0.0, -1), ("c_div", 1, 0, 0, -2.0, 2)],
)


class Unsafe(Exception):
    """An op's input is outside the range where the test is meaningful."""


def require(condition: bool) -> None:
    if not condition:
        raise Unsafe


def build(
    module: ModuleType, leaf_data: list[float], program: list[Any]
) -> tuple[list[Any], list[Any]]:
    """The leaves and every node of the program; the last node, the output, is
    the sum of all the others, so that every op is on a path to it."""
    V = module.Value
    leaves = [V(x) for x in leaf_data]
    nodes = list(leaves)
    for op, i, j, k, c, p in program:
        a, b, d = nodes[i % len(nodes)], nodes[j % len(nodes)], nodes[k % len(nodes)]
        x, y = a.data, b.data
        if op == "neg":
            out = -a
        elif op == "exp":
            require(x < 8.0)
            out = a.exp()
        elif op == "log":
            require(x > 0.05)
            out = a.log()
        elif op == "relu":
            require(abs(x) > 1e-3)
            out = a.relu()
        elif op == "tanh":
            out = a.tanh()
        elif op == "sigmoid":
            out = a.sigmoid()
        elif op == "gelu":
            out = a.gelu()
        elif op == "pow":
            if p == -1:
                require(abs(x) > 0.1)
            elif not float(p).is_integer():
                require(x > 0.05)
            out = a**p
        elif op == "add":
            out = a + b
        elif op == "sub":
            out = a - b
        elif op == "mul":
            out = a * b
        elif op == "div":
            require(abs(y) > 0.1)
            out = a / b
        elif op == "dot":
            out = module.dot([a, b, d], [d, a, b])
        elif op == "vsum":
            out = module.vsum([a, b, d])
        elif op == "add_c":
            out = a + c
        elif op == "c_add":
            out = c + a
        elif op == "sub_c":
            out = a - c
        elif op == "c_sub":
            out = c - a
        elif op == "mul_c":
            out = a * c
        elif op == "c_mul":
            out = c * a
        elif op == "div_c":
            require(abs(c) > 0.1)
            out = a / c
        else:
            assert op == "c_div"
            require(abs(x) > 0.1)
            out = c / a
        require(math.isfinite(out.data) and abs(out.data) < LIMIT)
        nodes.append(out)
    nodes.append(module.vsum(nodes))
    return leaves, nodes


def build_or_reject(
    module: ModuleType, leaf_data: list[float], program: list[Any]
) -> tuple[list[Any], list[Any]]:
    try:
        return build(module, leaf_data, program)
    except Unsafe:
        assume(False)
        raise AssertionError("unreachable") from None


@SETTINGS
@given(programs)
@example(EVERY_OP)
def test_gradients_match_central_finite_differences(program: tuple[list[float], list[Any]]) -> None:
    leaf_data, instructions = program
    leaves, nodes = build_or_reject(active_engine, leaf_data, instructions)
    out = nodes[-1]
    out.backward()
    eps = 1e-6
    for n, leaf in enumerate(leaves):
        up, down = list(leaf_data), list(leaf_data)
        up[n] += eps
        down[n] -= eps
        f_up = build_or_reject(active_engine, up, instructions)[1][-1].data
        f_down = build_or_reject(active_engine, down, instructions)[1][-1].data
        numeric = (f_up - f_down) / (2 * eps)
        # rounding in the difference is ~1e-16 |f| / eps; truncation ~eps^2 |f'''|
        tolerance = 1e-5 * max(abs(numeric), abs(leaf.grad)) + 1e-7 * max(1.0, abs(out.data))
        assert abs(numeric - leaf.grad) <= tolerance, (n, numeric, leaf.grad)


@pytest.fixture(scope="module", name="both_engines")
def both_engines_fixture() -> tuple[ModuleType, ModuleType]:
    pure, compiled = both_engines()
    if compiled is None:
        pytest.skip("the compiled extension is not installed (MICROGPT_PURE=1 run)")
    return pure, compiled


@SETTINGS
@given(program=programs)
@example(program=EVERY_OP)
def test_compiled_and_pure_agree_bit_for_bit(
    both_engines: tuple[ModuleType, ModuleType], program: tuple[list[float], list[Any]]
) -> None:
    pure, compiled = both_engines
    leaf_data, instructions = program
    p_leaves, p_nodes = build_or_reject(pure, leaf_data, instructions)
    c_leaves, c_nodes = build_or_reject(compiled, leaf_data, instructions)
    assert type(p_nodes[-1]).__module__ == "microgpt.engine"
    assert type(c_nodes[-1]).__module__ == "microgpt._engine"
    assert [n.data.hex() for n in p_nodes] == [n.data.hex() for n in c_nodes]
    p_nodes[-1].backward()
    c_nodes[-1].backward()
    assert [v.grad.hex() for v in p_leaves] == [v.grad.hex() for v in c_leaves]
    assert [n.grad.hex() for n in p_nodes] == [n.grad.hex() for n in c_nodes]
    assert [n.op for n in p_nodes[-1].topological_order()] == [
        n.op for n in c_nodes[-1].topological_order()
    ]
