"""Sweeps: train every combination of a grid of settings, then compare.

    microgpt sweep --grid n-embd=8,16 --grid lr=0.01,0.02 --steps 500 --out runs

Each run is `microgpt train` in a process of its own, with the sweep's train
flags plus one value of each grid key, so its losses are exactly those of
the same `microgpt train` command. The sweep's folder holds:

    runs/sweep.json                the marker: a sweep of this grid
    runs/results.csv               a row per finished run
    runs/loss.png                  the runs' loss curves (with the plot extra)
    runs/n-embd=8_lr=0.01/         a folder per run, named by its grid values:
        checkpoint.json  log.jsonl    the run's checkpoint and loss log
        samples.txt  stderr.txt       what `microgpt train` printed
        run.json                      its record: train flags, seconds, result

Running the same command again continues the sweep: finished runs are kept,
unfinished ones resume from their checkpoints (saved every 100 steps unless
--save-every says otherwise), and nothing is retrained. docs/sweeps.md has
the rules a sweep keeps (its folder, stops, secrets, Dask).

The parts, each readable on its own: `plan` (grid -> runs), `folder` (the
sweep's folder and its checks), `record` (a run's typed record), `process`
and `child` (one run's process), `running` (executor, signals, progress),
`report` (results.csv, table, plot) and `cli` (the flags).
"""

from microgpt.sweep.cli import add_parser, main
from microgpt.sweep.plan import run_name

__all__ = ["add_parser", "main", "run_name"]
