"""Settings are declared once: each dataclass field carries its default, range
and help, and the command line, the checks in Python, Adam, the checkpoint
reader and the printed resume command all follow that one declaration."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

import microgpt
from microgpt import cli, settings
from microgpt.driver import DriverConfig
from microgpt.errors import UsageError
from microgpt.gradcheck import GradcheckConfig
from microgpt.limits import Limits
from microgpt.nn import GPTConfig
from microgpt.optim import Adam, AdamConfig
from microgpt.sample import SampleConfig
from microgpt.train import TrainConfig

CONFIGS = [GPTConfig, TrainConfig, SampleConfig, DriverConfig, Limits, GradcheckConfig]
COMMAND_OF = {GradcheckConfig: "gradcheck"}
RENAMES = {SampleConfig: cli.TRAIN_RENAMES}


def flags_of(command: str) -> dict[str, Any]:
    """The argparse actions of a subcommand, by flag."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, cli.argparse._SubParsersAction))
    return {
        flag: action for action in sub.choices[command]._actions for flag in action.option_strings
    }


def out_of_range(rule: settings.Rule) -> list[Any]:
    """Values the rule refuses, for each bound it has."""
    values: list[Any] = []
    if rule.kind == "choice":
        return ["nonsense"]
    if rule.low is not None:
        values.append(
            rule.low if rule.low_open else rule.low - (1 if rule.kind != "float" else 0.5)
        )
    if rule.high is not None:
        values.append(rule.high if rule.high_open else rule.high * 2)
    return values


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_setting_is_a_flag_with_its_default_and_help(cls: Any) -> None:
    flags = flags_of(COMMAND_OF.get(cls, "train"))
    for field in settings.declared(cls):
        if not field.metadata["flag"]:
            continue
        flag = settings.flag_of(field.name, RENAMES.get(cls))
        assert flag in flags, flag
        action = flags[flag]
        assert action.help.startswith(field.metadata["help"])
        if cls not in cli.RESUMABLE:  # those default to "as in the checkpoint"
            assert action.default == field.default, flag


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_the_command_line_and_python_refuse_the_same_values(
    cls: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    command = COMMAND_OF.get(cls, "train")
    required = {"vocab_size": 27} if cls is GPTConfig else {}
    for field in settings.declared(cls):
        rule: settings.Rule = field.metadata["rule"]
        for value in out_of_range(rule):
            with pytest.raises(settings.SettingError) as in_python:
                cls(**{**required, field.name: value})
            assert in_python.value.name == field.name
            if not field.metadata["flag"]:
                continue
            flag = settings.flag_of(field.name, RENAMES.get(cls))
            with pytest.raises(SystemExit):
                cli.build_parser().parse_args([command, flag, str(value)])
            # The words of the refusal are the rule's own, in both places.
            err = capsys.readouterr().err
            assert f"argument {flag}: {in_python.value.problem}" in err, err


def test_adam_takes_its_defaults_and_checks_from_the_training_settings() -> None:
    for name, value in [("lr", 0.0), ("beta1", 1.0), ("beta2", -0.1), ("eps", 0.0)]:
        with pytest.raises(settings.SettingError) as from_adam:
            AdamConfig(**{name: value})
        with pytest.raises(settings.SettingError) as from_config:
            TrainConfig(**{name: value})
        assert str(from_adam.value) == str(from_config.value)
    with pytest.raises(settings.SettingError, match="beta1 must be at least 0 and below 1"):
        Adam([], beta1=1.0)  # the keyword form is AdamConfig's too
    assert Adam([], lr=0.5).lr == 0.5 and Adam([], lr=0.5).beta2 == AdamConfig().beta2
    adam, training = Adam([]), TrainConfig()
    for field in settings.declared(AdamConfig):
        assert getattr(adam, field.name) == getattr(training, field.name), field.name
    # one declaration: the training setting's rule is Adam's own, not a copy
    assert settings.rule_of(TrainConfig, "beta1") is settings.rule_of(AdamConfig, "beta1")


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_reads_back_what_it_writes(cls: Any) -> None:
    required = {"vocab_size": 27} if cls is GPTConfig else {}
    config = cls(**required)
    assert isinstance(config, settings.Settings)
    assert cls.from_dict(config.to_dict()) == config
    with pytest.raises(UsageError, match=f"unknown {cls.what} setting"):
        cls.from_dict({**config.to_dict(), "no_such_setting": 1})
    with pytest.raises(UsageError, match=f"{cls.what} settings must be an object"):
        cls.from_dict([])


def test_heads_must_divide_the_width_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(settings.SettingError, match=r"n_embd must be divisible by n_head \(3\)"):
        GPTConfig(vocab_size=27, n_embd=10, n_head=3)
    assert cli.main(["train", "--n-embd", "10", "--n-head", "3"]) == 2
    assert "argument --n-embd: must be divisible by --n-head (3), got 10" in capsys.readouterr().err


def test_the_resume_command_gives_back_the_same_settings() -> None:
    configs = [
        DriverConfig(save_every=7, log_every=3),
        SampleConfig(num=5, temperature=0.25, prompt="an na"),
        Limits(max_data_size=2**30, download_timeout=5.0, max_memory=2**33),
    ]
    words = [w for config in configs for w in settings.changed_flags(config, cli.TRAIN_RENAMES)]
    args = cli.build_parser().parse_args(["train", *words])
    for config in configs:
        renames = cli.TRAIN_RENAMES if isinstance(config, SampleConfig) else None
        assert cli.settings_of(args, type(config), renames) == config
    # Defaults are left out: nothing to repeat.
    assert settings.changed_flags(SampleConfig()) == []


def test_from_dict_refuses_unknown_and_missing_settings() -> None:
    with pytest.raises(UsageError, match="unknown model setting"):
        GPTConfig.from_dict({"vocab_size": 27, "n_embed": 16})
    with pytest.raises(UsageError, match="missing model setting"):
        GPTConfig.from_dict({"n_embd": 16})
    long = {f"key{i}": 1 for i in range(10_000)}
    with pytest.raises(UsageError) as info:
        TrainConfig.from_dict(long)
    assert len(str(info.value)) < 200  # the list is elided


def test_parse_size() -> None:
    assert [settings.parse_size(t) for t in ("4096", "64k", "64M", "1.5G", "2GiB", "1t")] == [
        4096,
        64 * 2**10,
        64 * 2**20,
        3 * 2**29,
        2 * 2**30,
        2**40,
    ]
    for bad in ("", "M", "-1M", "1e30G", "nanM", "12 parsecs"):
        with pytest.raises(cli.argparse.ArgumentTypeError):
            settings.parse_size(bad)


# --- structure ---------------------------------------------------------------------------


def test_the_command_line_module_is_thin() -> None:
    source = (Path(cli.__file__)).read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 300
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef):
            assert node.end_lineno - node.lineno + 1 <= 50, node.name  # type: ignore[operator]


def test_no_any_stands_in_for_value() -> None:
    # `Value = Any` or `Vector = list[Any]` would hide every use of Value from mypy.
    package = Path(microgpt.__file__).parent
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                text = ast.unparse(node.value)
                name = node.targets[0].id
                if name in ("Value", "Vector", "Matrix"):
                    assert "Any" not in text, f"{path.name}: {name} = {text}"


def test_every_config_is_frozen_and_checked() -> None:
    for cls in CONFIGS:
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert settings.declared(cls), cls
    assert (REPO_ROOT / "src" / "microgpt" / "learn_cli.py").exists() is False


def test_gradcheck_takes_the_model_flags_from_the_model_settings() -> None:
    flags = flags_of("gradcheck")
    for field in settings.declared(GPTConfig):
        flag = settings.flag_of(field.name)
        if field.name in ("vocab_size", "dropout"):  # from the data; off while checking
            assert flag not in flags
            continue
        assert flags[flag].help.startswith(field.metadata["help"]), flag
        assert flags[flag].type == field.metadata["rule"].parse


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--steps", "10", "--warmup-steps", "10"],
            "argument --warmup-steps: must be below --steps (10), got 10",
        ),
        (["--min-lr", "0.1"], "argument --min-lr: must be at most --lr (0.01), got 0.1"),
        (
            ["--prompt", "a", "--prompt-file", "p.txt"],
            "argument --prompt-file: cannot be given together with --prompt",
        ),
        (
            ["--lr-schedule", "step"],
            "argument --lr-schedule: must be one of linear, cosine, constant",
        ),
        (["--data-mode", "words"], "argument --data-mode: must be one of lines, text"),
        (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["--weight-decay", "-1"], "argument --weight-decay: must be at least 0, got -1"),
    ],
)
def test_new_training_flags_refuse_bad_values_before_anything_starts(
    args: list[str], words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "c.json"
    assert cli.main(["train", "--data", "/nowhere.txt", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.splitlines()) == 1, err
    assert not out.exists()
