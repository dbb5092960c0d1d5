"""Running: what is left of a sweep goes to an executor, one `microgpt train`
process per run (see `process`), then the sweep reports on all its runs.

The executor is one from `concurrent.futures`: this machine's thread pool,
or a Dask cluster's executor; the sweep submits to either the same way. The
first Ctrl-C, SIGTERM or SIGHUP (a closed terminal) asks every running run
to save and stop, through the stop file; a second stops the sweep at once
(the runs still save). A sweep killed outright stops its runs too (see
`child`).
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from microgpt.console import Console
from microgpt.errors import Name, UsageError
from microgpt.limits import Limits
from microgpt.runlog import MEAN_WINDOW
from microgpt.status import EXIT_FAILED, StopSignals, signal_status, stream_status
from microgpt.sweep import folder as sweep_folder
from microgpt.sweep import record, report
from microgpt.sweep.plan import RunSpec
from microgpt.sweep.process import POLL_SECONDS, Attempt, train_process

DASK_HINT = 'pip install "microgpt-exact[dask]"'
DASK = Name("dask", "Dask scheduler")  # the setting that names the cluster


class Sweep:
    """Runs what is left of a sweep, then reports on all of it."""

    def __init__(self, folder: Path, specs: list[RunSpec], limits: Limits, console: Console):
        self.console = console
        self.folder = folder
        self.specs = specs
        self.limits = limits
        self.failed: list[str] = []
        self.stopped_by: int | None = None

    def say(self, line: str) -> None:
        """Progress and notes on stderr; lost, not fatal, if stderr is gone (a
        closed terminal): the runs and the results matter more."""
        self.console.try_message(line)

    def run(self, executor: cf.Executor, where: str) -> int:
        todo = [(spec, record.progress(spec, self.limits)) for spec in self.specs]
        todo = [(spec, at) for spec, at in todo if at is None or at[0] < at[1]]
        resumed = sum(at is not None for _, at in todo)
        self.say(
            f"sweep: {len(self.specs)} runs of microgpt train in {self.folder}: "
            f"{len(self.specs) - len(todo)} finished before, {resumed} to resume, "
            f"{len(todo) - resumed} to start; {where}"
        )
        with StopSignals() as stop:
            futures: dict[cf.Future[Attempt], RunSpec] = {}
            try:
                futures = {self._submit(executor, spec, at): spec for spec, at in todo}
                self._wait(futures, stop)
            except BaseException:
                # A second Ctrl-C, or an error: start nothing more, and have the
                # running runs save (the next sweep removes the stop file).
                (self.folder / sweep_folder.STOP_FILE).touch()
                for future in futures:
                    future.cancel()
                raise
        (self.folder / sweep_folder.STOP_FILE).unlink(missing_ok=True)
        return self.report()

    def _wait(self, futures: dict[cf.Future[Attempt], RunSpec], stop: StopSignals) -> None:
        pending, done_count = set(futures), 0
        while pending:
            done, pending = cf.wait(pending, POLL_SECONDS, cf.FIRST_COMPLETED)
            if stop.requested is not None and self.stopped_by is None:
                self.stopped_by = stop.requested
                (self.folder / sweep_folder.STOP_FILE).touch()
                self.say("sweep: stopping; running runs save their checkpoints")
            for future in done:
                done_count += 1
                self._finished(futures[future], future, f"[{done_count}/{len(futures)}]")

    def _submit(self, executor: cf.Executor, spec: RunSpec, at: tuple[int, int] | None) -> Any:
        if at is None:  # a fresh start: nothing of an earlier attempt is kept
            sweep_folder.start_over(spec)
        return executor.submit(train_process, spec.train_args(at is not None), str(spec.folder))

    def _finished(self, spec: RunSpec, future: cf.Future[Attempt], counter: str) -> None:
        try:
            attempt = future.result()
        except cf.CancelledError:
            return
        except Exception as exc:  # e.g. a cluster worker died: the run is not lost
            self.failed.append(spec.name)
            self.say(f"{counter} {spec.name}: failed to run: {exc}")
            return
        if attempt.returncode is None:
            self.say(f"{counter} {spec.name}: not started (stopping)")
            return
        saved = record.read(spec.folder) or record.RunRecord(tuple(spec.public_flags))
        saved = saved.attempted(attempt.seconds, attempt.where)  # host:worker process
        record.write(spec.folder, saved)
        at = record.progress(spec, self.limits)
        result = record.finished_result(spec, self.limits, self.say)
        if attempt.returncode == 0 and result is not None:
            self.say(
                f"{counter} {spec.name}: done in {saved.seconds:.1f}s, loss "
                f"{result.final_loss:.4f}, mean of the last "
                f"{min(MEAN_WINDOW, result.checkpoint_step)} steps {result.mean_loss:.4f}"
            )
        elif self.stopped_by is not None and at is not None:
            self.say(f"{counter} {spec.name}: stopped, saved at step {at[0]}/{at[1]}")
        else:
            self.failed.append(spec.name)
            error = attempt.error  # train's own last line: it names no secret
            self.say(f"{counter} {spec.name}: failed (exit {attempt.returncode}): {error}")

    def report(self) -> int:
        """results.csv, the table, the picture; the exit status."""
        finished: list[tuple[RunSpec, report.Row]] = []
        for spec in self.specs:
            result = record.finished_result(spec, self.limits, self.say)
            if result is not None:
                saved = record.read(spec.folder) or record.RunRecord(())
                finished.append((spec, report.row(spec, result, saved)))
        rows = [row for _, row in finished]
        report.write_results(self.folder, list(self.specs[0].values), rows)
        report.draw(self.folder, [s for s, _ in finished], self.limits.max_data_size, self.say)
        for line in report.markdown_table(rows).splitlines():
            self.console.result(line)
        unfinished = len(self.specs) - len(rows)
        if self.stopped_by is not None:
            self.say(
                f"sweep: stopped with {unfinished} runs unfinished; run the same "
                f"command again to continue"
            )
            return signal_status(self.stopped_by)
        if self.console.failed is not None:  # stderr went away: the notes were lost
            return stream_status(self.console.failed.broken_pipe)
        if self.failed or unfinished:
            failed = self.failed or ["see the notes above"]
            self.say(
                f"sweep: {unfinished} of {len(self.specs)} runs not finished "
                f"({', '.join(failed)}); see their stderr.txt"
            )
            return EXIT_FAILED
        return 0


@contextmanager
def dask_client(address: str | None) -> Iterator[Any]:
    """A client of the Dask cluster whose scheduler is at `address`, reached
    now, before the sweep touches its folder; None without an address."""
    if address is None:
        yield None
        return
    try:
        # imported by name: distributed has no type hints, and is optional
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        raise UsageError(
            DASK, f" needs the Dask extra, which is not installed: {DASK_HINT}"
        ) from None
    try:
        client = distributed.Client(address, timeout="10s")
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(DASK, f" {address}: cannot reach the scheduler ({exc})") from None
    try:
        yield client
    finally:
        client.close()


@contextmanager
def executor_for(client: Any, workers: int | None) -> Iterator[tuple[cf.Executor, str]]:
    """The Dask cluster's executor, or this machine's pool of `workers`
    threads; leaving waits for the runs that are still saving."""
    if client is not None:
        count = len(client.scheduler_info()["workers"])
        where = f"on the Dask cluster at {client.scheduler.address} ({count} workers)"
        yield client.get_executor(pure=False), where
        return
    count = workers or os.cpu_count() or 1
    with cf.ThreadPoolExecutor(max_workers=count) as pool:
        yield pool, f"{count} at a time on this machine"
