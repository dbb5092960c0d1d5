"""gradcheck: backward() against finite differences, on small functions and the GPT."""

from __future__ import annotations

import math
from typing import Any

import pytest

from microgpt import Value
from microgpt.cli import main
from microgpt.data import load_documents
from microgpt.gradcheck import SMALLEST_SCALE, GradCheckRow, gradcheck, gradcheck_model
from microgpt.train import Run, TrainConfig


def test_hand_derived_gradients_match_and_pass() -> None:
    # f = a*b + a**3: df/da = b + 3a^2 = -1.5 + 12 = 10.5, df/db = a = 2
    a, b = Value(2.0), Value(-1.5)
    result = gradcheck(lambda v: v[0] * v[1] + v[0] ** 3, [a, b], names=["a", "b"])
    assert result.passed
    assert [r.name for r in result.rows] == ["a", "b"]
    assert result.rows[0].analytic == pytest.approx(10.5, abs=1e-12)
    assert result.rows[1].analytic == pytest.approx(2.0, abs=1e-12)
    assert result.rows[0].numeric == pytest.approx(10.5, rel=1e-7)
    assert result.rows[1].numeric == pytest.approx(2.0, rel=1e-7)
    assert result.max_rel_error < 1e-6
    # the inputs keep their values, and hold the analytic gradients
    assert (a.data, b.data) == (2.0, -1.5)
    assert (a.grad, b.grad) == (pytest.approx(10.5), pytest.approx(2.0))


def test_every_builtin_op_passes() -> None:
    def f(v: list[Any]) -> Any:
        x, y, z = v
        return (
            (x * y).tanh()
            + (x / y).sigmoid()
            + z.log() * x.exp()
            + (y - x).relu()
            + (z**1.5).gelu()
            - (-z) ** 2
        )

    result = gradcheck(f, [Value(0.3), Value(1.7), Value(2.2)])
    assert result.passed, result.table()


def test_stale_gradients_on_the_inputs_do_not_matter() -> None:
    x = Value(3.0)
    x.grad = 123.0  # left over from some earlier backward()
    result = gradcheck(lambda v: v[0] * v[0], [x])  # d(x^2)/dx = 6
    assert result.rows[0].analytic == 6.0
    assert result.passed


def wrong_square(x: Any) -> Any:
    """x**2 with the local gradient x instead of 2x."""
    return Value(x.data * x.data, (x,), (x.data,), "wrong_square")


def test_a_wrong_local_gradient_fails_and_is_located() -> None:
    x, y = Value(1.5), Value(-2.0)
    result = gradcheck(lambda v: v[0] ** 2 + wrong_square(v[1]), [x, y], names=["x", "y"])
    assert not result.passed
    assert result.worst.index == 1 and result.worst.name == "y"
    assert result.rows[1].analytic == pytest.approx(-2.0)  # what the wrong op claims
    assert result.rows[1].numeric == pytest.approx(-4.0, rel=1e-6)  # the truth: 2y
    assert result.rows[0].rel_error < 1e-6  # the right op, checked alongside, is fine
    assert "FAIL" in result.table().splitlines()[-1] and "at y" in result.table()


def test_nan_gradient_fails() -> None:
    def f(v: list[Any]) -> Any:
        return Value(v[0].data, (v[0],), (math.nan,), "nan_grad")

    assert not gradcheck(f, [Value(1.0)]).passed


def test_relative_error_definition() -> None:
    assert GradCheckRow(0, "x", 2.0, 1.0).rel_error == 0.5
    assert GradCheckRow(0, "x", -3.0, -3.0).rel_error == 0.0
    # gradients near zero are compared on the scale SMALLEST_SCALE
    assert GradCheckRow(0, "x", 1e-9, 0.0).rel_error == pytest.approx(1e-9 / SMALLEST_SCALE)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        gradcheck(lambda v: v[0], [])
    with pytest.raises(ValueError):
        gradcheck(lambda v: v[0], [Value(1.0)], names=["a", "b"])


# --- the GPT ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run() -> Run:
    return Run.start(load_documents(), TrainConfig(seed=3), n_embd=8, n_head=2, block_size=8)


def test_gpt_gradients_pass_on_every_weight_matrix(small_run: Run) -> None:
    model = small_run.model
    before = [p.data for p in model.params]
    doc = small_run.docs[0]
    result = gradcheck_model(model.state_dict, lambda: small_run.loss(doc), per_matrix=2)
    assert result.passed, result.table()
    checked = {r.name.split("[")[0] for r in result.rows}
    assert checked == set(model.state_dict)
    assert len(result.rows) == 2 * len(model.state_dict)
    # the check leaves the model as it was: same weights, no gradients
    assert [p.data for p in model.params] == before
    assert all(p.grad == 0.0 for p in model.params)


def test_gpt_with_a_wrong_local_gradient_fails(small_run: Run) -> None:
    doc = small_run.docs[1]

    def sabotaged_loss() -> Any:
        loss = small_run.loss(doc)
        # the identity, claiming a derivative of 2: every gradient comes out doubled
        return Value(loss.data, (loss,), (2.0,), "wrong_identity")

    result = gradcheck_model(small_run.model.state_dict, sabotaged_loss, per_matrix=1)
    assert not result.passed
    assert result.max_rel_error == pytest.approx(0.5, rel=1e-3)  # |2g - g| / |2g|


def test_cli_gradcheck_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradcheck"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["parameter", "analytic", "numeric", "rel", "error"]
    assert lines[-1].startswith("PASS")


def test_cli_gradcheck_fails_with_zero_tolerance(capsys: pytest.CaptureFixture[str]) -> None:
    # finite differences are never exact, so demanding exactness must fail
    assert main(["gradcheck", "--per-matrix", "1", "--tolerance", "0"]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("FAIL")


def test_cli_gradcheck_refuses_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradcheck", "--per-matrix", "0"]) == 2
    assert "argument --per-matrix: must be at least 1, got 0" in capsys.readouterr().err
    assert main(["gradcheck", "--eps", "1e300"]) == 2  # a nudge that would overflow the loss
    assert "argument --eps: must be above 0 and at most 0.1" in capsys.readouterr().err


def test_cli_gradcheck_checks_the_model_the_flags_describe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--n-layer", "2", "--norm", "layernorm", "--activation", "gelu", "--n-embd", "4"]
    assert main(["gradcheck", "--per-matrix", "1", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "'n_layer': 2" in out[0] and "'norm': 'layernorm'" in out[0]
    assert "'activation': 'gelu'" in out[0] and "'n_embd': 4" in out[0]
    assert any(line.startswith("layer1.mlp_fc2") for line in out)  # the second block is checked
    assert out[-1].startswith("PASS")


def test_cli_gradcheck_refuses_a_bad_model_before_checking(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for args, words in [
        (
            ["--n-embd", "10", "--n-head", "3"],
            "argument --n-embd: must be divisible by --n-head (3)",
        ),
        (["--norm", "batchnorm"], "argument --norm: must be one of rmsnorm, layernorm"),
        (["--n-layer", "0"], "argument --n-layer: must be at least 1, got 0"),
        (["--dropout", "0.1"], "unrecognized arguments: --dropout"),
    ]:
        assert main(["gradcheck", *args]) == 2
        captured = capsys.readouterr()
        assert words in captured.err and captured.out == "", captured.err
