"""The `microgpt` command: train, sample, and the learning tools.

stdout carries only results (sampled names); progress and messages go to
stderr. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any, NoReturn

import microgpt
from microgpt import checkpoint, learn_cli
from microgpt.data import DEFAULT_DATA, is_url, load_documents
from microgpt.errors import UsageError
from microgpt.sample import check_prompt, check_temperature, sample_many
from microgpt.train import NonFiniteLoss, Run, TrainConfig, documents_fingerprint

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def version_text() -> str:
    """The version and the engine in use; for the interpreted one, why."""
    if microgpt.COMPILED:
        engine = f"compiled, Cython {microgpt.backend.engine.CYTHON_VERSION}"
    else:
        engine = f"pure Python, {microgpt.backend.PURE_REASON}"
    return f"microgpt {microgpt.__version__} (engine: {engine})"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- argument types that name the problem --------------------------------------


def _whole_number(text: str, minimum: int, requirement: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1, "at least 1")


def nonnegative_int(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


def positive_float(text: str) -> float:
    value = _float(text)
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def fraction(text: str) -> float:
    value = _float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


# --- the parser ------------------------------------------------------------------

# Model and optimiser flags, with the original microgpt's defaults. On --resume
# they default to None, meaning "as in the checkpoint".
MODEL_FLAGS: dict[str, tuple[Any, Any, str]] = {
    "n_layer": (positive_int, 1, "number of transformer blocks"),
    "n_embd": (positive_int, 16, "embedding width (divisible by --n-head)"),
    "n_head": (positive_int, 4, "attention heads per block"),
    "block_size": (positive_int, 16, "context length in characters"),
    "norm": (str, "rmsnorm", "normalisation: rmsnorm (original) or layernorm"),
    "activation": (str, "relu", "MLP nonlinearity: relu (original) or gelu"),
    "dropout": (fraction, 0.0, "dropout probability while training (original: 0)"),
}
TRAIN_FLAGS: dict[str, tuple[Any, Any, str]] = {
    "steps": (positive_int, 1000, "training steps, one document each"),
    "lr": (positive_float, 0.01, "peak learning rate (decays linearly to 0)"),
    "beta1": (fraction, 0.85, "Adam beta1"),
    "beta2": (fraction, 0.99, "Adam beta2"),
    "eps": (positive_float, 1e-8, "Adam epsilon"),
    "grad_clip": (positive_float, None, "clip the global gradient norm to this (off)"),
    "seed": (int, 42, "random seed (shuffle, weights, samples)"),
}


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    """The flags `train` and `sample` share for drawing names."""
    parser.add_argument(
        "--temperature", type=positive_float, default=0.5, help="sampling temperature (0.5)"
    )
    parser.add_argument("--prompt", default="", help="start every sample with this text")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="microgpt",
        description="Train a tiny GPT on a list of documents and sample from it.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="train a model, then print samples")
    t.add_argument(
        "--data",
        default=None,
        help="documents, one per line: a file or http(s) URL (default: the bundled names)",
    )
    group = t.add_argument_group("model (defaults: the original microgpt)")
    for name, (kind, default, help_text) in MODEL_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        choices = {"norm": ["rmsnorm", "layernorm"], "activation": ["relu", "gelu"]}.get(name)
        group.add_argument(
            flag, type=kind, default=None, choices=choices, help=f"{help_text} ({default})"
        )
    group = t.add_argument_group("training")
    for name, (kind, default, help_text) in TRAIN_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        group.add_argument(flag, type=kind, default=None, help=f"{help_text} ({default})")
    t.add_argument(
        "--samples", type=nonnegative_int, default=20, help="names to print after training (20)"
    )
    add_sampling_flags(t)
    t.add_argument(
        "--out",
        default=None,
        metavar="CKPT",
        help="save a checkpoint (JSON) here at the end (with --resume: the resumed file)",
    )
    t.add_argument("--save-every", type=positive_int, default=None, help="also save every N steps")
    t.add_argument("--resume", default=None, metavar="CKPT", help="continue a saved run")
    t.add_argument(
        "--log", default=None, metavar="FILE", help="write each step's loss as JSON Lines"
    )
    t.add_argument(
        "--log-every", type=positive_int, default=100, help="progress line every N steps (100)"
    )
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="print names sampled from a checkpoint")
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("--num", type=nonnegative_int, default=20, help="how many (20)")
    add_sampling_flags(s)
    s.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed (default: continue the checkpoint's random stream)",
    )
    s.set_defaults(func=cmd_sample)

    learn_cli.register(sub)
    return parser


# --- train ---------------------------------------------------------------------------


class _Interrupt:
    """Turns the first Ctrl-C (or SIGTERM, as sent by `kill` and job
    schedulers) into a flag checked between steps, so a step is never left
    half applied; a second one stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: int | None = None  # the signal received
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupt:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signum

    @property
    def exit_status(self) -> int:
        """128 + the signal number, as a shell reports a process it stopped."""
        return 128 + (self.requested or signal.SIGINT)


def _settings(args: argparse.Namespace, flags: dict[str, tuple[Any, Any, str]]) -> dict[str, Any]:
    """The flags the user gave (None ones left out)."""
    return {name: getattr(args, name) for name in flags if getattr(args, name) is not None}


def cmd_train(args: argparse.Namespace) -> int:
    err = sys.stderr
    # A resumed run keeps saving where it was saved unless told otherwise.
    out = args.out if args.out is not None else args.resume
    model_settings = _settings(args, MODEL_FLAGS)
    train_settings = _settings(args, TRAIN_FLAGS)

    # Everything that can be wrong with the input is checked before the first
    # line of output and before any file is touched.
    ckpt = checkpoint.load(args.resume) if args.resume is not None else None
    if out is not None:
        checkpoint.check_writable(out)
    if args.log is not None:
        _check_log_writable(args.log)
        _check_log_is_not(args.log, [args.data, out, args.resume])
    if ckpt is not None:
        _check_resume_flags(ckpt, model_settings, train_settings)
        data_source = args.data if args.data is not None else ckpt.data["source"]
        docs = _load_resumed_documents(args.resume, data_source, given=args.data is not None)
        fingerprint = documents_fingerprint(docs)
        if fingerprint != ckpt.data["sha256"]:
            raise UsageError(
                f"--resume {args.resume}: the data ({data_source}) is not the data this run "
                f"was trained on; pass the original with --data"
            )
        run = ckpt.run(docs)
    else:
        _check_heads(model_settings)
        data_source = args.data if args.data is not None else DEFAULT_DATA
        docs = load_documents(data_source)
        fingerprint = documents_fingerprint(docs)
        run = Run.start(docs, TrainConfig(**train_settings), **model_settings)
    # Saved as an absolute path, so that --resume works from any folder.
    recorded_source = data_source
    if data_source != DEFAULT_DATA and not is_url(data_source):
        recorded_source = os.path.abspath(data_source)

    config = run.model.config
    if args.samples:
        check_prompt(args.prompt, run.tokenizer, config.block_size)
    log = _open_log(args.log, run.step if args.resume is not None else None)

    total = run.train_config.steps
    print(
        f"{version_text()}\ndata: {describe_data(data_source)} ({len(docs)} documents, vocabulary "
        f"{run.tokenizer.vocab_size}); parameters: {len(run.model.params)}; "
        + (f"steps {run.step + 1}..{total}" if not run.done else f"all {total} steps done"),
        file=err,
    )
    note = truncation_note(docs, config.block_size)
    if note:
        print(note, file=err)

    def save(reason: str) -> None:
        if out is None:
            return
        if log is not None:
            # The log must hold every step the checkpoint holds, even if the
            # process is killed right after the checkpoint is written.
            log.flush()
            os.fsync(log.fileno())
        try:
            checkpoint.save(run, out, recorded_source, fingerprint)
        except OSError as exc:
            raise TrainingFailed(
                f"cannot save checkpoint {out} at step {run.step}: {exc.strerror or exc}"
            ) from None
        except checkpoint.UnsavableRun as exc:
            kept = f"{out} is left as it was" if os.path.exists(out) else "nothing was saved"
            raise TrainingFailed(
                f"cannot save checkpoint {out} at step {run.step}: the run diverged ({exc}); {kept}"
            ) from None
        print(f"saved {out} at step {run.step} ({reason})", file=err)

    start_step, started = run.step, time.perf_counter()
    try:
        with _Interrupt() as interrupt:
            while not run.done:
                if interrupt.requested is not None:
                    save("interrupted")
                    how = (
                        f"resume with: {_resume_command(args, out)}"
                        if out is not None
                        else "nothing saved (no --out given)"
                    )
                    print(f"interrupted after step {run.step}/{total}; {how}", file=err)
                    return interrupt.exit_status
                lr_t = run.lr_at(run.step)
                try:
                    loss = run.train_step()
                except NonFiniteLoss as failure:  # the run is still at its last good step
                    hint = "try a smaller --lr or --grad-clip"
                    try:
                        save("last good step")
                    except TrainingFailed as exc:
                        # The update before the bad loss already broke the weights.
                        raise TrainingFailed(f"{failure}; {exc} ({hint})") from None
                    print(f"microgpt: error: {failure} ({hint})", file=err)
                    return EXIT_FAILED
                if log is not None:
                    log.write(json.dumps({"step": run.step, "loss": loss, "lr": lr_t}) + "\n")
                if args.save_every and run.step % args.save_every == 0 and not run.done:
                    save(f"every {args.save_every} steps")
                if run.step == start_step + 1 or run.step % args.log_every == 0 or run.done:
                    elapsed = time.perf_counter() - started
                    rate = (run.step - start_step) / elapsed if elapsed > 0 else 0.0
                    eta = (total - run.step) / rate if rate > 0 else 0.0
                    print(
                        f"step {run.step:{len(str(total))}d}/{total} | loss {loss:.4f} | "
                        f"{rate:.1f} steps/s | ETA {_duration(eta)}",
                        file=err,
                    )
            save("end of training")
    finally:
        if log is not None:
            log.close()
    names = sample_many(
        run.model, run.tokenizer, run.rng, args.samples, args.temperature, args.prompt
    )
    for name in names:
        print(name)
    return 0


class TrainingFailed(Exception):
    """Training cannot go on (e.g. a checkpoint cannot be written): exit status 1."""


def describe_data(source: str) -> str:
    return "the bundled names dataset" if source == DEFAULT_DATA else source


def truncation_note(docs: list[str], block_size: int) -> str:
    """A note on documents that do not fit in the context, or ''."""
    too_long = [d for d in docs if len(d) >= block_size]
    if not too_long:
        return ""
    longest = max(len(d) for d in too_long)
    return (
        f"note: {len(too_long)} of {len(docs)} documents have {block_size} or more characters "
        f"(longest {longest}) and are truncated, as in the original: training predicts only "
        f"their first {block_size} characters, never where they end (a --block-size of "
        f"{longest + 1} would fit them all)"
    )


def _check_heads(model_settings: dict[str, Any]) -> None:
    n_embd = model_settings.get("n_embd", MODEL_FLAGS["n_embd"][1])
    n_head = model_settings.get("n_head", MODEL_FLAGS["n_head"][1])
    if n_embd % n_head != 0:
        raise UsageError(
            f"--n-embd {n_embd} is not divisible by --n-head {n_head} "
            f"(the heads split the embedding evenly)"
        )


def _load_resumed_documents(ckpt_path: str, source: str, given: bool) -> list[str]:
    if given:
        return load_documents(source)
    try:
        return load_documents(source)
    except UsageError as exc:
        raise UsageError(
            f"--resume {ckpt_path}: cannot read the run's data ({exc}); pass it with --data"
        ) from None


def _check_log_writable(path: str) -> None:
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--log {path} is a directory; give a file name")
    folder = target.parent
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--log {path}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise UsageError(f"--log {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"--log {path}: not writable")


def _check_log_is_not(log: str, others: list[str | None]) -> None:
    """--log truncates its file: it must not be the data or a checkpoint."""
    for other in others:
        if other is not None and not is_url(other) and _same_file(log, other):
            raise UsageError(f"--log {log} is the same file as {other}; give the log its own file")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.abspath(a) == os.path.abspath(b)


def _open_log(path: str | None, resumed_step: int | None) -> IO[str] | None:
    """Open the loss log: a new one, or on --resume the old one cut back to the
    checkpoint's step (a killed run may have logged steps it never saved)."""
    if path is None:
        return None
    try:
        if resumed_step is None:
            return open(path, "w", encoding="utf-8")  # noqa: SIM115
        keep = _log_bytes_through(path, resumed_step)
        if keep is not None:
            os.truncate(path, keep)
        return open(path, "a", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"--log {path}: cannot open: {exc.strerror or exc}") from None


def _log_bytes_through(path: str, last_step: int) -> int | None:
    """How many leading bytes of the log hold whole entries up to `last_step`
    (None if there is no log yet)."""
    keep = 0
    try:
        with open(path, "rb") as old:
            for line in old:
                try:
                    step = json.loads(line)["step"]
                except (ValueError, TypeError, KeyError):
                    break  # a line torn by a kill, or not a log entry: cut here
                if not line.endswith(b"\n") or not isinstance(step, int) or step > last_step:
                    break
                keep += len(line)
    except FileNotFoundError:
        return None
    return keep


def _resume_command(args: argparse.Namespace, out: str) -> str:
    """The command that continues this run with the same output settings."""
    words = ["microgpt", "train", "--resume", out]
    if args.save_every:
        words += ["--save-every", str(args.save_every)]
    if args.log is not None:
        words += ["--log", args.log]
    defaults = {"samples": 20, "temperature": 0.5, "prompt": ""}
    for name, default in defaults.items():
        value = getattr(args, name)
        if value != default:
            words += ["--" + name.replace("_", "-"), str(value)]
    return shlex.join(words)


def _check_resume_flags(
    ckpt: checkpoint.Checkpoint, model_settings: dict[str, Any], train_settings: dict[str, Any]
) -> None:
    saved = {**ckpt.model_config.to_dict(), **ckpt.train_config.to_dict()}
    for name, value in {**model_settings, **train_settings}.items():
        if saved[name] != value:
            flag = "--" + name.replace("_", "-")
            raise UsageError(
                f"--resume {ckpt.path}: {flag} {value} contradicts the checkpoint "
                f"({flag} {saved[name]}); leave it out to continue the run as it was"
            )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# --- sample ---------------------------------------------------------------------------


def cmd_sample(args: argparse.Namespace) -> int:
    ckpt = checkpoint.load(args.checkpoint)
    check_temperature(args.temperature)
    check_prompt(args.prompt, ckpt.tokenizer, ckpt.model_config.block_size)
    model = ckpt.model()
    rng = random.Random(args.seed) if args.seed is not None else ckpt.rng()
    for name in sample_many(model, ckpt.tokenizer, rng, args.num, args.temperature, args.prompt):
        print(name)
    return 0


# --- entry point ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"microgpt: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingFailed as exc:
        print(f"microgpt: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("microgpt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # e.g. `microgpt sample ... | head`: the reader is gone, which is fine.
        # Point stdout at devnull so the flush at exit does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        # The system refused something mid-run (disk full, file gone...).
        print(f"microgpt: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
