"""The `microgpt` command: train, sample, and the learning tools.

stdout carries only results (sampled names); progress and messages go to
stderr. Bad input is one line on stderr and exit status 2. The flags come
from the settings dataclasses (see `microgpt.settings`); the work is done by
the library (`driver.Trainer`, `sample.samples`, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import microgpt
from microgpt import checkpoint, driver, evaluate, gradcheck, lessons, parsing, plot, sample, sweep
from microgpt import settings as st
from microgpt.console import Console, StreamFailed
from microgpt.data import DEFAULT_DATA, Tokenizer, describe_source, load_data, recorded_source
from microgpt.driver import DriverConfig, Trainer, TrainingFailed
from microgpt.errors import UsageError, one_line, worded
from microgpt.files import show
from microgpt.limits import Limits, check_fits
from microgpt.nn import GPTConfig
from microgpt.runlog import LossLog
from microgpt.sample import SampleConfig, SamplingFailed, prepare_prompt, printed
from microgpt.status import EXIT_FAILED, EXIT_USAGE, StopSignals, interrupted_status, stream_status
from microgpt.train import Run, TrainConfig, documents_fingerprint

TRAIN_RENAMES = {"num": "samples"}  # `train --samples N` is `sample --num N`
TRAIN_GROUPS = [
    ("model (defaults: the original microgpt)", GPTConfig),
    ("training", TrainConfig),
    ("sampling after training", SampleConfig),
]
SAMPLE_LIMITS = ("max_checkpoint_size", "max_memory", "max_data_size")  # data: --prompt-file
RESUMABLE = (GPTConfig, TrainConfig)  # not given on --resume: as in the checkpoint


def version_text() -> str:
    return f"microgpt {microgpt.__version__} (engine: {microgpt.backend.describe_engine()})"


def build_parser() -> argparse.ArgumentParser:
    parser = parsing.Parser(
        prog="microgpt", description="Train a tiny GPT on a list of documents and sample from it."
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=parsing.Parser)
    sub.required = True
    _add_train(sub)
    sample.add_parser(sub)
    _add_tools(sub)
    evaluate.add_parser(sub)
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


def _add_tools(sub: Any) -> None:
    gradcheck.add_parser(sub)
    lesson = sub.add_parser(
        "lesson",
        help="run a lesson (without a name: list them)",
        description="Run a lesson; arguments after its name go to the lesson\n"
        "(see: microgpt lesson NAME --help).",
        epilog=lessons.listing(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lesson.add_argument("name", nargs="?", help="the lesson (leave out to list them)")
    lesson.add_argument("args", nargs=argparse.REMAINDER, help="the lesson's own arguments")
    lesson.set_defaults(func=cmd_lesson)


settings_of = st.from_flags  # `cls` from the flags given; a bad value names its flag


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
        # before any reading: the settings, and a lower bound of the memory
        model, training = settings_of(args, GPTConfig, vocab_size=1), settings_of(args, TrainConfig)
        check_fits(model, limits, "the model settings", batch=training.batch_size)
    else:
        ckpt = _resumable(args, ckpt)
    source = args.data if args.data is not None else ckpt.data["source"] if ckpt else DEFAULT_DATA
    with ExitStack() as stack:
        driver.claim_outputs(stack, out, args.log, data=source, resume=args.resume)
        run, docs = _resumed(args, ckpt, source, limits) if ckpt else _started(args, source, limits)
        if run.done:  # resumed without more steps
            return _finished(console, run, str(args.resume), sampling, limits)
        text_mode, block_size = run.train_config.text_mode, run.model.config.block_size
        prompt = ""
        if sampling.num:
            prompt = prepare_prompt(
                sampling, run.tokenizer, block_size, text_mode, limits.max_data_size
            )
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
    for text in printed(run.model, run.tokenizer, run.rng, sampling, prompt, text_mode):
        console.result(text)
    return 0


def _started(args: argparse.Namespace, source: str, limits: Limits) -> tuple[Run, list[str]]:
    train_config = settings_of(args, TrainConfig)
    docs = load_data(source, limits, train_config.data_mode)
    config = settings_of(args, GPTConfig, vocab_size=Tokenizer.from_documents(docs).vocab_size)
    positions = None if train_config.text_mode else max(map(len, docs)) + 1  # text: full windows
    check_fits(config, limits, "the model settings", positions, train_config.batch_size)
    return Run.start(docs, train_config, **st.given(args, GPTConfig)), docs


def _resumable(args: argparse.Namespace, ckpt: checkpoint.Checkpoint) -> checkpoint.Checkpoint:
    """The checkpoint's run as it continues: its settings, but a larger --steps."""
    given = {**st.given(args, GPTConfig), **st.given(args, TrainConfig)}
    steps = given.pop("steps", None)
    for name, value in given.items():
        saved = ckpt.setting(name)
        if saved != value:
            flag = st.flag_of(name)
            raise UsageError(
                f"--resume {show(ckpt.path)}: {flag} {value} contradicts the checkpoint "
                f"({flag} {saved}); leave it out to continue the run as it was"
            )
    if steps is None:
        return ckpt
    try:
        extended = ckpt.train_config.extended(steps, ckpt.step)
    except st.SettingError as exc:
        raise st.in_flag_terms(exc) from None
    return dataclasses.replace(ckpt, train_config=extended)


def _finished(console: Console, run: Run, path: str, sampling: SampleConfig, limits: Limits) -> int:
    """A finished run resumed without more steps: say so, change nothing
    (its samples are those its training printed: the same random stream)."""
    total, text_mode = run.train_config.steps, run.train_config.text_mode
    console.message(
        f"--resume {show(path)}: the run is finished (all {total} steps done); nothing trained "
        f"or saved (--steps N with N above {total} trains it further)"
    )
    block_size = run.model.config.block_size
    prompt = prepare_prompt(sampling, run.tokenizer, block_size, text_mode, limits.max_data_size)
    for text in printed(run.model, run.tokenizer, run.rng, sampling, prompt, text_mode):
        console.result(text)
    return 0


def _resumed(
    args: argparse.Namespace, ckpt: checkpoint.Checkpoint, source: str, limits: Limits
) -> tuple[Run, list[str]]:
    where = f"--resume {show(ckpt.path)}"
    try:
        docs = load_data(source, limits, ckpt.train_config.data_mode)
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


# --- lesson ------------------------------------------------------------


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
