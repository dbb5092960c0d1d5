"""The lessons print what they teach; these tests check that it is true."""

from __future__ import annotations

import importlib
import math
import os
import random
import re
import subprocess
import sys

import pytest
from conftest import assert_one_line_error, microgpt_cli

from microgpt import lessons
from microgpt.cli import main


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ...` in a fresh interpreter, with this run's engine."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),  # keeps MICROGPT_PURE, so the same engine runs
        timeout=300,
    )


# --- the list -------------------------------------------------------------------


def test_lesson_without_a_name_lists_every_lesson(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lesson"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines()[1:]]
    assert listed == ["autograd", "new_op", "xor", "attention", "names"]


def test_every_listed_lesson_is_a_runnable_module() -> None:
    for name in lessons.LESSONS:
        module = importlib.import_module(f"microgpt.lessons.{name}")
        assert callable(module.main)
        assert module.__doc__ and f"microgpt lesson {name}" in module.__doc__


def test_unknown_lesson_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lesson", "backprop"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no lesson 'backprop'" in err and "autograd" in err


@pytest.mark.parametrize("name", lessons.LESSONS)
def test_a_lessons_bad_flag_is_a_one_line_error_pointing_to_its_help(name: str) -> None:
    result = microgpt_cli("lesson", name, "--bogus")
    assert_one_line_error(result, "--bogus", f"see microgpt lesson {name} --help")


def test_the_names_lesson_names_the_value_out_of_range() -> None:
    too_few = microgpt_cli("lesson", "names", "--steps", 1)
    assert_one_line_error(too_few, "--steps: must be at least 2, got 1")
    negative = microgpt_cli("lesson", "names", "--samples", -1)
    assert_one_line_error(negative, "--samples: must be 0 or more, got -1")


# --- autograd -----------------------------------------------------------------------


def test_autograd_as_a_module() -> None:
    done = run_module("microgpt.lessons.autograd")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # L = (a + b)**2 at a=2, b=3: dL/da = dL/db = 2(a + b) = 10
    assert float(re.search(r"^dL/da = (\S+)$", out, re.M).group(1)) == 10.0  # type: ignore[union-attr]
    assert float(re.search(r"^dL/db = (\S+)$", out, re.M).group(1)) == 10.0  # type: ignore[union-attr]
    assert "leaf (a)  data=2  grad=10" in out  # the graph is printed
    assert out.splitlines()[-1].startswith("PASS")


def test_autograd_dot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lesson", "autograd", "--dot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digraph") and "{a|data 2|grad 10}" in out


# --- new_op ------------------------------------------------------------------------


def test_new_op(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lesson", "new_op"]) == 0
    out = capsys.readouterr().out
    difference = re.search(r"values and gradients: (\S+)", out)
    assert difference and float(difference.group(1)) < 1e-12
    # the table agrees with sigmoid(x) = 1/(1 + e^-x) and its derivative s(1 - s)
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s*-?[\d.]+\s+0\.\d+", line)]
    assert len(rows) == 5
    for x, s, ds, *_ in rows:
        expected = 1 / (1 + math.exp(-float(x)))
        assert float(s) == pytest.approx(expected, abs=1e-6)
        assert float(ds) == pytest.approx(expected * (1 - expected), abs=1e-6)
    nodes = re.search(r"my_sigmoid (\d+), built from pieces (\d+)", out)
    assert nodes and int(nodes.group(1)) == 2 and int(nodes.group(2)) > 2  # x and one node
    verdicts = [
        line.split(":")[0] for line in out.splitlines() if line.startswith(("PASS", "FAIL"))
    ]
    assert verdicts == ["PASS", "FAIL"]  # the right op passes, the wrong derivative fails


# --- xor -----------------------------------------------------------------------------


def test_xor_through_the_command() -> None:
    done = run_module("microgpt", "lesson", "xor")
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^([01]) xor ([01])\s+(\S+)\s+(\S+)\s+(\w+)$", done.stdout, re.M)
    assert len(rows) == 4
    for a, b, target, output, verdict in rows:
        # XOR itself, not the lesson, decides the target: true (+1) iff a != b
        assert float(target) == (1.0 if a != b else -1.0)
        assert float(output) * float(target) >= 0.5
        assert verdict == "correct"
    steps = re.search(r"all four points classified correctly after (\d+) steps", done.stdout)
    assert steps and 0 < int(steps.group(1)) < 1000


# --- attention --------------------------------------------------------------------


MATRIX_ROW = re.compile(r"^\s*(?:pos \d+|\S+)((?:\s+(?:\d\.\d{3}|0))+)$")


def parse_matrices(out: str) -> list[list[list[str]]]:
    """The printed weight matrices: rows of cells, the row label dropped."""
    matrices: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in out.splitlines():
        row = MATRIX_ROW.match(line)
        if row:
            current.append(row.group(1).split())
        elif current:
            matrices.append(current)
            current = []
    return matrices


def test_attention_is_causal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lesson", "attention", "--name", "anna"]) == 0
    out = capsys.readouterr().out
    matrices = parse_matrices(out)
    assert [len(m) for m in matrices] == [5, 5]  # 5 positions; BOS + "anna"
    for matrix in matrices:
        for t, row in enumerate(matrix):
            assert len(row) == len(matrix)
            # nothing above the diagonal: position t never attends to s > t
            assert all(cell == "0" for cell in row[t + 1 :])
            seen = [float(cell) for cell in row[: t + 1]]
            assert all(0.0 <= w <= 1.0 for w in seen)
            assert sum(seen) == pytest.approx(1.0, abs=0.003)  # printed to 3 decimals
        assert matrix[0][0] == "1.000"  # the first position can only look at itself
    assert re.search(r"^\s+BOS\s+a\s+n\s+n\s+a$", out, re.M)


def test_attention_refuses_a_name_longer_than_the_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["lesson", "attention", "--name", "maximilian"])
    assert stop.value.code == 2
    assert "--name must be 1 to" in capsys.readouterr().err


def test_the_lessons_attention_only_looks_back() -> None:
    from microgpt import Value
    from microgpt.lessons.attention import causal_attention

    rng = random.Random(5)

    def vectors(n: int) -> list[list[Value]]:
        return [[Value(rng.gauss(0, 1)) for _ in range(4)] for _ in range(n)]

    xs, wq, wk, wv = vectors(5), vectors(4), vectors(4), vectors(4)
    outputs, weights = causal_attention(xs, wq, wk, wv)
    assert [len(row) for row in weights] == [1, 2, 3, 4, 5]
    xs[4] = [Value(x.data + 1.0) for x in xs[4]]  # change only the last position
    changed, _ = causal_attention(xs, wq, wk, wv)
    for t in range(4):  # earlier positions cannot see it
        assert [v.data for v in changed[t]] == [v.data for v in outputs[t]]
    assert [v.data for v in changed[4]] != [v.data for v in outputs[4]]


# --- names ------------------------------------------------------------------------


def test_names_loss_goes_down(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lesson", "names", "--steps", "50", "--samples", "3"]) == 0
    out = capsys.readouterr().out
    averages = re.findall(r"average loss of the (first|last) 10 steps:\s+(\S+)", out)
    assert [which for which, _ in averages] == ["first", "last"]
    first, last = (float(value) for _, value in averages)
    assert last < first
    # untrained, the model is close to a uniform guess over 27 tokens: ln 27
    step1 = re.search(r"^step\s+1/50\s+loss (\S+)$", out, re.M)
    assert step1 and abs(float(step1.group(1)) - math.log(27)) < 0.5
    assert "all matrices ok" in out  # the gradient monitor's verdict at the start
    samples = out.split("(temperature 0.5):\n")[1].splitlines()
    assert len(samples) == 3
    assert all(re.fullmatch(r"  [a-z]+", s) for s in samples)


@pytest.mark.parametrize("name", list(lessons.LESSONS))
def test_every_lesson_runs_as_a_module(name: str) -> None:
    result = run_module(f"microgpt.lessons.{name}", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
