"""The `microgpt` command: train, sample, and the learning tools.

stdout carries only results (sampled names); progress and messages go to
stderr. Bad input is one line on stderr and exit status 2. The flags come
from the settings dataclasses (see `microgpt.settings`); the work is done by
the library (`driver.Trainer`, `sample.samples`, ...).
"""

from __future__ import annotations

import argparse
import random
import shlex
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, NoReturn

import microgpt
from microgpt import checkpoint, driver, lessons, plot, sweep
from microgpt import settings as st
from microgpt.console import Console, StreamFailed
from microgpt.data import DEFAULT_DATA, Tokenizer, describe_source, load_documents, recorded_source
from microgpt.driver import DriverConfig, Trainer, TrainingFailed
from microgpt.errors import UsageError, one_line, worded
from microgpt.files import show
from microgpt.gradcheck import GradcheckConfig, gradcheck_gpt
from microgpt.limits import Limits, check_fits
from microgpt.nn import GPTConfig
from microgpt.runlog import LossLog
from microgpt.sample import SampleConfig, SamplingFailed, check_prompt, samples
from microgpt.status import EXIT_FAILED, EXIT_USAGE, StopSignals, interrupted_status, stream_status
from microgpt.train import Run, TrainConfig, documents_fingerprint

TRAIN_RENAMES = {"num": "samples"}  # `train --samples N` is `sample --num N`
TRAIN_GROUPS = [
    ("model (defaults: the original microgpt)", GPTConfig),
    ("training", TrainConfig),
    ("sampling after training", SampleConfig),
]
SAMPLE_LIMITS = ("max_checkpoint_size", "max_memory")
RESUMABLE = (GPTConfig, TrainConfig)  # not given on --resume: as in the checkpoint


def version_text() -> str:
    return f"microgpt {microgpt.__version__} (engine: {microgpt.backend.describe_engine()})"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        line = one_line(f"{self.prog}: error: {message} (see {self.prog} --help)")
        self.exit(EXIT_USAGE, line + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="microgpt", description="Train a tiny GPT on a list of documents and sample from it."
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_train(sub)
    _add_sample(sub)
    _add_tools(sub)
    plot.add_parser(sub)
    sweep.add_parser(sub)  # after train: it takes train's flags
    return parser


def _add_train(sub: Any) -> None:
    t = sub.add_parser("train", help="train a model, then print samples")
    t.add_argument("--data", help="documents, one per line: a file or http(s) URL (bundled names)")
    for title, cls in TRAIN_GROUPS:
        group = t.add_argument_group(title)
        st.add_flags(group, cls, unset_default=cls in RESUMABLE, renames=TRAIN_RENAMES)
    files = t.add_argument_group("files")
    files.add_argument("--out", metavar="CKPT", help="save a checkpoint (JSON) here at the end")
    files.add_argument("--resume", metavar="CKPT", help="continue a saved run (and save it there)")
    files.add_argument("--log", metavar="FILE", help="write each step's loss as JSON Lines")
    st.add_flags(files, DriverConfig)
    st.add_flags(t.add_argument_group("limits"), Limits)
    t.set_defaults(func=cmd_train)


def _add_sample(sub: Any) -> None:
    s = sub.add_parser("sample", help="print names sampled from a checkpoint")
    s.add_argument("checkpoint", metavar="CKPT")
    st.add_flags(s, SampleConfig)
    s.add_argument(
        "--seed",
        type=st.rule_of(TrainConfig, "seed").parse,
        metavar="N",
        help="seed (default: continue the checkpoint's random stream)",
    )
    st.add_flags(s.add_argument_group("limits"), Limits, only=SAMPLE_LIMITS)
    s.set_defaults(func=cmd_sample)


def _add_tools(sub: Any) -> None:
    g = sub.add_parser(
        "gradcheck",
        help="check the GPT's gradients against finite differences",
        description="Compare backward() with finite differences on sampled weights of a small "
        "GPT's loss on a few names. Prints a table and PASS or FAIL (exit status 0 or 1).",
    )
    st.add_flags(g, GradcheckConfig)
    g.set_defaults(func=cmd_gradcheck)

    lesson = sub.add_parser(
        "lesson",
        help="run a lesson (without a name: list them)",
        description="Run a lesson; arguments after its name go to the lesson "
        "(see: microgpt lesson NAME --help).",
    )
    lesson.add_argument("name", nargs="?", help="the lesson (leave out to list them)")
    lesson.add_argument("args", nargs=argparse.REMAINDER, help="the lesson's own arguments")
    lesson.set_defaults(func=cmd_lesson)


def settings_of(args: argparse.Namespace, cls: Any, renames: Any = None, **fixed: Any) -> Any:
    """`cls` built from the flags the user gave; a bad value names its flag."""
    try:
        return cls(**fixed, **st.given(args, cls))
    except st.SettingError as exc:
        raise st.in_flag_terms(exc, renames) from None


# --- train ---------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    # Everything that can be wrong with the input is checked before the first
    # line of output and before any file is written.
    limits, reporting = settings_of(args, Limits), settings_of(args, DriverConfig)
    sampling = settings_of(args, SampleConfig, TRAIN_RENAMES)
    if sampling.num and console.out is None:
        raise UsageError("stdout is closed, so the samples would be lost; pass --samples 0")
    out = args.out if args.out is not None else args.resume
    ckpt = checkpoint.load(args.resume, limits) if args.resume is not None else None
    if ckpt is None:
        check_fits(
            settings_of(args, GPTConfig, vocab_size=1), limits, "the model settings"
        )  # before any reading
    source = args.data if args.data is not None else ckpt.data["source"] if ckpt else DEFAULT_DATA
    with ExitStack() as stack:
        driver.claim_outputs(stack, out, args.log, data=source, resume=args.resume)
        run, docs = _resumed(args, ckpt, source, limits) if ckpt else _started(args, source, limits)
        if sampling.num:
            check_prompt(sampling.prompt, run.tokenizer, run.model.config.block_size)
        fingerprint = documents_fingerprint(docs)
        log = None
        if args.log is not None:
            header = driver.log_header(run, recorded_source(source), fingerprint)
            log = LossLog.open(args.log, run.step if ckpt else None, header=header)
            stack.callback(log.close)
        target = driver.SaveTarget(out, recorded_source(source), fingerprint) if out else None
        trainer = Trainer(run, reporting, save_to=target, log=log, say=console.message)
        opening = driver.describe_run(run, describe_source(source), docs)
        for line in filter(None, [version_text(), *opening, limits.memory_note()]):
            console.message(worded(line, st.flag_of))
        with StopSignals() as stop:
            outcome = trainer.train(stop)
    if outcome.status != "done":
        command = _resume_command(args, out, [reporting, sampling, limits]) if out else ""
        return _stopped(console, outcome, run.train_config.steps, command)
    for name in samples(
        run.model, run.tokenizer, run.rng, sampling.num, sampling.temperature, sampling.prompt
    ):
        console.result(name)
    return 0


def _started(args: argparse.Namespace, source: str, limits: Limits) -> tuple[Run, list[str]]:
    train_config = settings_of(args, TrainConfig)
    docs = load_documents(source, limits)
    config = settings_of(args, GPTConfig, vocab_size=Tokenizer.from_documents(docs).vocab_size)
    check_fits(config, limits, "the model settings", max(map(len, docs)) + 1)
    return Run.start(docs, train_config, **st.given(args, GPTConfig)), docs


def _resumed(
    args: argparse.Namespace, ckpt: checkpoint.Checkpoint, source: str, limits: Limits
) -> tuple[Run, list[str]]:
    where = f"--resume {show(ckpt.path)}"
    for name, value in {**st.given(args, GPTConfig), **st.given(args, TrainConfig)}.items():
        saved = ckpt.setting(name)
        if saved != value:
            flag = st.flag_of(name)
            raise UsageError(
                f"{where}: {flag} {value} contradicts the checkpoint ({flag} {saved}); "
                f"leave it out to continue the run as it was"
            )
    try:
        docs = load_documents(source, limits)
    except UsageError as exc:
        if args.data is not None:
            raise
        raise UsageError(
            f"{where}: cannot read the run's data ({exc}); pass it with --data"
        ) from None
    if documents_fingerprint(docs) != ckpt.data["sha256"]:
        raise UsageError(
            f"{where}: the data ({describe_source(source)}) is not the data this run was "
            f"trained on; pass the original with --data"
        )
    return ckpt.run(docs), docs


def _resume_command(args: argparse.Namespace, out: str, configs: list[Any]) -> str:
    """The command that continues this run with the same output settings."""
    words = ["microgpt", "train", "--resume", out]
    if args.resume is not None and args.data is not None:
        words += ["--data", args.data]  # the checkpoint's own source was not good enough
    if args.log is not None:
        words += ["--log", args.log]
    for config in configs:
        words += st.changed_flags(config, TRAIN_RENAMES)
    return shlex.join(words)


def _stopped(console: Console, outcome: driver.TrainingOutcome, total: int, command: str) -> int:
    how = f"resume with: {command}" if outcome.saved else "nothing saved (no --out given)"
    if outcome.stream is not None:
        console.try_message(
            f"microgpt: error: {outcome.stream}; stopped after step {outcome.step}/{total}; {how}"
        )
    else:
        console.try_message(f"interrupted after step {outcome.step}/{total}; {how}")
    return outcome.exit_status


# --- sample, gradcheck, lesson ------------------------------------------------------------


def cmd_sample(args: argparse.Namespace, console: Console) -> int:
    limits, sampling = settings_of(args, Limits), settings_of(args, SampleConfig)
    if sampling.num and console.out is None:
        raise UsageError("stdout is closed, so the samples would be lost")
    ckpt = checkpoint.load(args.checkpoint, limits)
    check_prompt(sampling.prompt, ckpt.tokenizer, ckpt.model_config.block_size)
    rng = random.Random(args.seed) if args.seed is not None else ckpt.rng()
    model = ckpt.model()
    for name in samples(
        model, ckpt.tokenizer, rng, sampling.num, sampling.temperature, sampling.prompt
    ):
        console.result(name)
    return 0


def cmd_gradcheck(args: argparse.Namespace, console: Console) -> int:
    config = settings_of(args, GradcheckConfig)
    result = gradcheck_gpt(config, console.result)
    return 0 if result.passed else 1


def cmd_lesson(args: argparse.Namespace, console: Console) -> int:
    if args.name is None:
        console.result(lessons.listing())
        return 0
    return lessons.run(args.name, args.args)


# --- entry point ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns its exit status (README, "Exit status")."""
    Console.prepare()
    console = Console()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.func(args, console))
    except UsageError as exc:
        return _failed(console, worded(exc, st.flag_of), EXIT_USAGE)
    except (TrainingFailed, SamplingFailed) as exc:
        return _failed(console, worded(exc, st.flag_of), EXIT_FAILED)
    except StreamFailed as exc:
        return _failed(console, str(exc), stream_status(exc.broken_pipe))
    except KeyboardInterrupt as exc:
        console.try_message("microgpt: interrupted")
        return interrupted_status(exc)
    except BrokenPipeError as exc:  # e.g. a lesson's print() into `| head`
        return _failed(console, str(console.fail("stdout", exc)), stream_status(True))
    except OSError as exc:
        # The system refused something mid-run (disk full, file gone...).
        where = f" {show(exc.filename)}" if exc.filename else ""
        return _failed(console, f"{exc.strerror or exc}{where}", EXIT_FAILED)


def _failed(console: Console, message: str, status: int) -> int:
    console.try_message(one_line(f"microgpt: error: {message}"))
    return status
