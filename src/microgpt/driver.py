"""The training driver: a `Run` trained to its end, with checkpoints, a loss
log, progress lines and clean stops. The `microgpt train` command is this plus
argument parsing; from Python:

    run = Run.start(load_documents(), TrainConfig(steps=200))
    target = SaveTarget("ckpt.json", "bundled:names", documents_fingerprint(run.docs))
    outcome = Trainer(run, DriverConfig(save_every=50), save_to=target).train()

What it does between steps, in order: append the step to the log, save every
`save_every` steps, print progress every `log_every` steps (with the mean
loss of the last 100 steps), log the validation loss every `eval_every`
steps, and call any extra `hooks`; with `monitor_every`, it prints the
gradient report of every such step between backward() and the update. At
the end: the validation loss (if documents were held out) and a summary.
A stop request (Ctrl-C, SIGTERM, SIGHUP; see `status.StopSignals`) or a failed output
stream stops it between two steps, after saving the last completed one; a
loss or gradient that stops being a number saves the last good step and
raises `TrainingFailed`.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import microgpt
from microgpt import checkpoint
from microgpt.console import StreamFailed
from microgpt.errors import Name, Part, Text, UsageError, WordedError
from microgpt.files import OutputLock, refuse_same_file, show
from microgpt.monitor import gradient_report
from microgpt.runlog import LOG, LOG_FORMAT, MEAN_WINDOW, LossLog
from microgpt.settings import Rule, Settings, setting
from microgpt.status import EXIT_INTERRUPTED, EXIT_OK, StopSignals, signal_status, stream_status
from microgpt.train import NonFiniteLoss, Run, truncation_note

DIVERGED_HINT: tuple[Part, ...] = ("try a smaller ", Name("lr"), " or ", Name("grad_clip"))
StepHook = Callable[[Run, float, float], None]  # (run, loss, lr) after each step


@dataclass(frozen=True)
class DriverConfig(Settings):
    """When the driver saves and reports."""

    save_every: int | None = setting(
        None, "also save every N steps", Rule("int", low=1, optional=True)
    )
    log_every: int = setting(100, "progress line every N steps", Rule("int", low=1))
    eval_every: int | None = setting(
        None,
        "log the validation loss every N steps (needs --val-fraction)",
        Rule("int", low=1, optional=True),
    )
    monitor_every: int | None = setting(
        None, "print the gradient report every N steps", Rule("int", low=1, optional=True)
    )


@dataclass(frozen=True)
class SaveTarget:
    """Where checkpoints go, and what they record about the data."""

    path: str
    data_source: str
    fingerprint: str
    name: Name = checkpoint.OUT


class TrainingFailed(WordedError):
    """Training cannot go on (the loss diverged, an output cannot be written)."""


@dataclass(frozen=True)
class TrainingOutcome:
    """How `Trainer.train` ended: "done", "stopped" (a signal asked) or
    "stream" (stdout or stderr failed)."""

    status: str
    step: int
    saved: bool
    signal: int | None = None
    stream: StreamFailed | None = None

    @property
    def exit_status(self) -> int:
        """0 done; 128 + the signal if stopped (130 Ctrl-C, 143 SIGTERM); 141
        if a stream's reader went away, 1 if it failed otherwise."""
        if self.status == "stopped":
            return signal_status(self.signal) if self.signal is not None else EXIT_INTERRUPTED
        if self.stream is not None:
            return stream_status(self.stream.broken_pipe)
        return EXIT_OK


DATA = Name("data")
RESUME = Name("resume", "checkpoint to resume")


def claim_outputs(
    stack: ExitStack, out: str | None, log: str | None, data: str | None, resume: str | None
) -> None:
    """Check a run's checkpoint (`out`) and loss log (`log`) before anything
    is written, refuse either if it is one of the run's inputs (`data`, the
    checkpoint it resumes) or each other (a run's checkpoint may be the one
    it resumes), and lock both for this run until `stack` closes."""
    if out is not None:
        target = checkpoint.check_writable(out)
        refuse_same_file(checkpoint.OUT, out, [(DATA, data)])
        stack.callback(OutputLock(target, checkpoint.OUT, out).acquire().release)
    if log is not None:
        refuse_same_file(LOG, log, [(DATA, data), (RESUME, resume), (checkpoint.OUT, out)])
        target = LossLog.check(log)
        stack.callback(OutputLock(target, LOG, log).acquire().release)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Progress:
    """The progress line: the first step, every `every` steps, and the last.

    A step's loss is that of one document, so it jumps from step to step; the
    mean of the last 100 steps beside it is what shows whether training works.
    """

    def __init__(self, say: Callable[[str], None], run: Run, every: int) -> None:
        self.say = say
        self.total = run.train_config.steps
        self.every = every
        self.start_step = run.step
        self.started = time.perf_counter()
        self.recent: deque[float] = deque(maxlen=MEAN_WINDOW)

    def __call__(self, run: Run, loss: float, lr: float) -> None:
        self.recent.append(loss)
        step = run.step
        if step != self.start_step + 1 and step % self.every and not run.done:
            return
        elapsed, rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        self.say(
            f"step {step:{len(str(self.total))}d}/{self.total} | loss {loss:.4f} | "
            f"mean {self.mean():.4f} (last {len(self.recent)}) | {rate:.1f} steps/s | "
            f"ETA {duration(eta)}"
        )

    def rate(self, step: int) -> tuple[float, float]:
        """Seconds since the start, and steps per second."""
        elapsed = time.perf_counter() - self.started
        return elapsed, (step - self.start_step) / elapsed if elapsed > 0 else 0.0

    def mean(self) -> float:
        return sum(self.recent) / len(self.recent) if self.recent else float("nan")

    def summary(self, step: int, val_loss: float | None) -> str:
        elapsed, rate = self.rate(step)
        trained = step - self.start_step
        if not trained:  # a finished run, trained again from Python: no loss to average
            return f"done: nothing to train (all {step} steps were done)"
        line = (
            f"done: {trained} steps in {duration(elapsed)} ({rate:.1f} steps/s); "
            f"mean loss of the last {len(self.recent)} steps {self.mean():.4f}"
        )
        return line if val_loss is None else f"{line}; val loss {val_loss:.4f}"


class Validation:
    """Logs the loss on the held-out documents every `every` steps."""

    def __init__(self, say: Callable[[str], None], log: LossLog | None, every: int | None):
        self.say, self.log, self.every = say, log, every
        self.last: float | None = None

    def __call__(self, run: Run, loss: float, lr: float) -> None:
        if self.every and run.step % self.every == 0 and not run.done:
            self.measure(run)

    def measure(self, run: Run) -> float:
        self.last = run.val_loss()
        if self.log is not None:
            self.log.record({"step": run.step, "val_loss": self.last})
        self.say(f"step {run.step} | val loss {self.last:.4f} ({run.held_out()})")
        return self.last


def log_header(run: Run, data_source: str, fingerprint: str) -> dict[str, Any]:
    """The first record of a run's log: what produced it (see microgpt.runlog)."""
    settings = {**run.model.config.to_dict(), **run.train_config.to_dict()}
    return {
        "format": LOG_FORMAT,
        "header": {
            "settings": settings,
            "data": {"source": data_source, "sha256": fingerprint},
            "engine": microgpt.ENGINE_NAME,
            "version": microgpt.__version__,
        },
    }


def describe_run(run: Run, source: str, docs: list[str]) -> list[Text]:
    """What a run is about to do, in a line (and a note if documents will be cut)."""
    total, text_mode = run.train_config.steps, run.train_config.text_mode
    size = f"text of {len(docs[0]):,} characters" if text_mode else f"{len(docs)} documents"
    lines = [
        Text(
            f"data: {source} ({size}, vocabulary {run.tokenizer.vocab_size}); "
            f"parameters: {len(run.model.params)}; "
            + (f"steps {run.step + 1}..{total}" if not run.done else f"all {total} steps done")
        )
    ]
    note = truncation_note(docs, run.model.config.block_size, text_mode)
    return lines + [note] if note else lines


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class Trainer:
    """Trains `run` to its end (see the module's docstring)."""

    run: Run
    config: DriverConfig = field(default_factory=DriverConfig)
    save_to: SaveTarget | None = None
    log: LossLog | None = None
    say: Callable[[str], None] = _stderr
    hooks: Sequence[StepHook] = ()

    def __post_init__(self) -> None:
        if self.config.eval_every and not self.run.val_docs:
            raise UsageError(
                Name("eval_every"), " needs held-out documents: pass ", Name("val_fraction"), " too"
            )

    def train(self, stop: StopSignals | None = None) -> TrainingOutcome:
        run = self.run
        progress = Progress(self.say, run, self.config.log_every)
        validation = Validation(self.say, self.log, self.config.eval_every)
        hooks: list[StepHook] = [progress, validation, *self.hooks]
        try:
            while not run.done:
                if stop is not None and stop.requested is not None:
                    saved = self._save_on_exit("interrupted")
                    return TrainingOutcome("stopped", run.step, saved, signal=stop.requested)
                lr = run.lr_at(run.step)
                loss = self._step()
                self._record(loss, lr)
                every = self.config.save_every
                if every and run.step % every == 0 and not run.done:
                    self.save(f"every {every} steps")
                for hook in hooks:
                    hook(run, loss, lr)
            val_loss = validation.measure(run) if run.val_docs else None
            self.save("end of training")
            self.say(progress.summary(run.step, val_loss))
        except StreamFailed as failure:
            saved = self._save_on_exit("an output stream failed")
            return TrainingOutcome("stream", run.step, saved, stream=failure)
        return TrainingOutcome("done", run.step, self.save_to is not None)

    def _step(self) -> float:
        every = self.config.monitor_every
        monitor = every is not None and (self.run.step + 1) % every == 0
        try:
            return self.run.train_step(self._monitor) if monitor else self.run.train_step()
        except NonFiniteLoss as failure:  # the run is still at its last good step
            try:
                self.save("last good step")
            except TrainingFailed as exc:
                # The update before the bad loss already broke the weights.
                raise TrainingFailed(
                    f"{failure}; ", *exc.text.parts, " (", *DIVERGED_HINT, ")"
                ) from None
            raise TrainingFailed(f"{failure} (", *DIVERGED_HINT, ")") from None

    def _monitor(self, run: Run) -> None:
        """The gradient report of the step in progress (after backward)."""
        self.say(f"step {run.step + 1} gradients:")
        for line in gradient_report(run.model.state_dict).table().splitlines():
            self.say(f"  {line}")

    def _record(self, loss: float, lr: float) -> None:
        log = self.log
        if log is None:
            return
        try:
            log.step(self.run.step, loss, lr)
        except OSError as exc:
            self.log = None  # it cannot be synced either; save the checkpoint without it
            try:
                saved = self._save_on_exit("the log failed")
            except TrainingFailed:
                saved = False
            kept = f"; saved {show(self.save_to.path)}" if saved and self.save_to else ""
            raise TrainingFailed(
                log.name,
                f" {show(log.path)}: cannot write at step {self.run.step}: "
                f"{exc.strerror or exc}{kept}",
            ) from None

    def save(self, reason: str) -> None:
        """Save the run now (if there is a target); raises TrainingFailed."""
        target, run = self.save_to, self.run
        if target is None:
            return
        where = (target.name, f" {show(target.path)}")
        try:
            if self.log is not None:
                # The log must hold every step the checkpoint holds, even if the
                # process is killed right after the checkpoint is written.
                self.log.sync()
            checkpoint.save(run, target.path, target.data_source, target.fingerprint)
        except OSError as exc:
            raise TrainingFailed(
                *where, f": cannot save the checkpoint at step {run.step}: {exc.strerror or exc}"
            ) from None
        except checkpoint.UnsavableRun as exc:
            kept = "it is left as it was" if os.path.exists(target.path) else "nothing was saved"
            raise TrainingFailed(
                *where,
                f": cannot save the checkpoint at step {run.step}: the run diverged "
                f"({exc}); {kept}",
            ) from None
        self.say(f"saved {target.path} at step {run.step} ({reason})")

    def _save_on_exit(self, reason: str) -> bool:
        """Save on the way out: whether there was a target. The note about it is
        dropped if the stream for it is gone; a failed save raises TrainingFailed."""
        if self.save_to is None:
            return False
        try:
            self.save(reason)
        except StreamFailed:
            pass  # saved; only the note was lost
        return True
