"""Run every benchmark on the four engines and print the comparison.

    python bench/run.py            # the full run (6-8 minutes on 2 cores)
    python bench/run.py --fast     # a rough run (about 2 minutes)

Runs, one engine after the other for each group of benchmarks (so that a
change in the machine's load affects all of them alike):

1. `benchmarks.py` under pyperf, appending to DIR/original.json, DIR/pure.json,
   DIR/compiled.json and DIR/torch.json (DIR is `--out`, default bench/results/);
2. `measure.py` in a fresh process per engine and model config: nodes per
   step and peak memory per step, into DIR/measurements.json;
3. `python -m pyperf compare_to original.json pure.json compiled.json
   torch.json --table`;
4. a summary: medians, speedups, compiled against PyTorch, ns per graph node,
   memory, machine facts, also written to DIR/summary.md.

The Python that runs this script runs the benchmarks (`--python` to choose
another); it needs microgpt installed with its compiled engine, and pyperf.
PyTorch is optional: without it, the torch engine is left out, with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ENGINES = ("original", "pure", "compiled", "torch")
OPTIONAL = ("torch",)  # left out, with a note, where it cannot run

# pyperf settings for each group of benchmarks: (full run, --fast run).
# The fast graph benchmarks get more worker processes; the slow ones (a step
# of the original design at the large config takes over 10 s here) get few
# processes and a fixed single loop, so that no calibration run is needed.
SETTINGS: dict[str, tuple[list[str], list[str]]] = {
    "graph": (["-p", "8", "-n", "3", "-w", "1"], ["-p", "2", "-n", "3", "-w", "1"]),
    "step": (["-p", "8", "-n", "3", "-w", "1"], ["-p", "2", "-n", "2", "-w", "1"]),
    "large": (
        ["-p", "2", "-n", "2", "-w", "1", "-l", "1"],
        ["-p", "1", "-n", "1", "-w", "1", "-l", "1"],
    ),
    "long": (
        ["-p", "2", "-n", "3", "-w", "1", "-l", "1"],
        ["-p", "1", "-n", "2", "-w", "1", "-l", "1"],
    ),
    "sample": (  # (more values than for the large step: a sampling run varies more)
        ["-p", "4", "-n", "3", "-w", "1", "-l", "1"],
        ["-p", "1", "-n", "2", "-w", "1", "-l", "1"],
    ),
}
# A step of the original design at the long config takes about 25 s here:
# it gets one process of one value (a full run and --fast alike).
SLOWEST = {("long", "original"): ["-p", "1", "-n", "1", "-w", "1", "-l", "1"]}
# The benchmarks in the order of the summary.
BENCHMARKS = (
    "graph_add_chain",
    "graph_mul_chain",
    "graph_dot_sum",
    "graph_dot_engine",
    "backward_step_default",
    "train_step_default",
    "train_step_large",
    "train_step_long",
    "sample_20_names",
)
# The model configs of the training steps (bench/workloads.py), in that order.
STEP_CONFIGS = ("default", "large", "long")
# The original design has no dot(): its dot products are written with sum().
ORIGINAL_STAND_IN = {"graph_dot_engine": "graph_dot_sum"}


def engine_env(engine: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MICROGPT_PURE"}
    if engine == "pure":
        env["MICROGPT_PURE"] = "1"
    return env


def run(cmd: list[str], engine: str, capture: bool = False) -> str:
    """Runs cmd with the environment that selects `engine`; stops on failure."""
    done = subprocess.run(
        cmd, env=engine_env(engine), text=True, stdout=subprocess.PIPE if capture else None
    )
    if done.returncode != 0:
        sys.exit(
            f"run.py: failed ({engine} engine, exit status {done.returncode}): {' '.join(cmd)}"
        )
    return done.stdout if capture else ""


def engines_that_run(python: str, engines: list[str]) -> tuple[list[str], list[str]]:
    """The engines to run, and a note for each optional one left out because it
    cannot run. Fails before any benchmark runs if another engine cannot run
    as asked."""
    code = (
        f"import sys; sys.path.insert(0, {str(BENCH_DIR)!r}); import workloads; "
        "workloads.require_engine(sys.argv[1])"
    )
    usable, notes = [], []
    for engine in engines:
        if engine not in OPTIONAL:
            run([python, "-c", code, engine], engine)
            usable.append(engine)
            continue
        done = subprocess.run(
            [python, "-c", code, engine], env=engine_env(engine), text=True, capture_output=True
        )
        if done.returncode == 0:
            usable.append(engine)
        else:
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            notes.append(f"{engine} left out: {reason}")
    return usable, notes


def machine_facts(python: str) -> dict[str, str]:
    facts = {"cpu": "unknown", "cores": str(os.cpu_count())}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        facts["cpu"] = platform.processor() or "unknown"
    facts["os"] = platform.platform()
    facts["python"] = run(
        [python, "-c", "import platform, sys; print(platform.python_version(), sys.executable)"],
        "compiled",
        capture=True,
    ).strip()
    facts["microgpt"] = run([python, "-m", "microgpt", "--version"], "compiled", capture=True)
    facts["microgpt"] = facts["microgpt"].strip()
    facts["pyperf"] = run(
        [python, "-c", "import pyperf; print(pyperf.__version__)"], "compiled", capture=True
    ).strip()
    return facts


def torch_version(python: str) -> str:
    code = (
        f"import sys; sys.path.insert(0, {str(BENCH_DIR)!r}); import torch_design as t; "
        "print(t.torch.__version__)"
    )
    version = run([python, "-c", code], "torch", capture=True).strip()
    return f"{version} (float64, 1 thread)"


# --- formatting --------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    raise AssertionError


def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def fmt_ratio(reference: float | None, value: float | None) -> str:
    if reference is None or value is None:
        return "-"
    return f"{reference / value:.2f}x"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, its columns padded to line up as plain text too."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [
        line(r) for r in rows
    ]


# --- the summary -------------------------------------------------------------


def load_results(out: Path, engines: list[str]) -> dict[str, dict[str, Any]]:
    """engine -> benchmark name -> pyperf Benchmark."""
    import pyperf

    results: dict[str, dict[str, Any]] = {}
    for engine in engines:
        path = out / f"{engine}.json"
        if path.exists():
            suite = pyperf.BenchmarkSuite.load(str(path))
            results[engine] = {b.get_name(): b for b in suite.get_benchmarks()}
    return results


class Results:
    """The pyperf results of every engine, by engine and benchmark name."""

    def __init__(self, results: dict[str, dict[str, Any]]) -> None:
        self.by_engine = results
        self.engines = [e for e in ENGINES if e in results]

    def has(self, engine: str, name: str) -> bool:
        return name in self.by_engine.get(engine, {})

    def median(self, engine: str, name: str) -> float | None:
        bench = self.by_engine.get(engine, {}).get(name)
        return bench.median() if bench is not None else None

    def cell(self, engine: str, name: str) -> str:
        bench = self.by_engine.get(engine, {}).get(name)
        if bench is None:
            return "-"
        spread = bench.stdev() / bench.mean() if bench.get_nvalue() > 1 else 0.0
        return f"{fmt_time(bench.median())} ±{spread:.0%}"

    def time_ratio(self, engine: str, other: str, name: str) -> str:
        """The median time of `engine` / that of `other` (below 1: engine is faster)."""
        mine, theirs = self.median(engine, name), self.median(other, name)
        return "-" if mine is None or theirs is None else f"{mine / theirs:.2f}"


def speed_table(res: Results) -> list[str]:
    """Medians of every benchmark, and how the engines compare."""
    engines = res.engines
    header = ["benchmark", *engines]
    if "original" in engines:
        header += [f"{e} vs original" for e in engines if e != "original"]
    if "pure" in engines and "compiled" in engines:
        header.append("compiled vs pure")
    if "compiled" in engines and "torch" in engines:
        header.append("compiled time / torch time")
    rows = []
    for name in BENCHMARKS:
        if any(res.has(e, name) for e in engines):
            rows.append(speed_row(res, name, header))
    legend = "Median of all values, ± the standard deviation as a share of the mean."
    if any(" vs " in h for h in header):
        legend += " `a vs b`: median of b / median of a (how many times faster a is)."
    if "compiled time / torch time" in header:
        legend += " `compiled time / torch time`: below 1, microgpt's compiled engine is faster."
    lines = [*table(header, rows), "", legend]
    if "original" in engines and any(res.has(e, "graph_dot_engine") for e in engines):
        lines.append(
            "* the original design has no dot(): compared with its graph_dot_sum, "
            "the same dot products written with sum()."
        )
    return lines


def speed_row(res: Results, name: str, header: list[str]) -> list[str]:
    engines = res.engines
    row = [name] + [res.cell(e, name) for e in engines]
    if "original" in engines:
        has_own = res.has("original", name)
        ref_name = name if has_own else ORIGINAL_STAND_IN.get(name, name)
        for e in engines:
            if e != "original":
                ratio = fmt_ratio(res.median("original", ref_name), res.median(e, name))
                row.append(ratio + (" *" if ratio != "-" and not has_own else ""))
    if "compiled vs pure" in header:
        row.append(fmt_ratio(res.median("pure", name), res.median("compiled", name)))
    if "compiled time / torch time" in header:
        row.append(res.time_ratio("compiled", "torch", name))
    return row


def against_torch(res: Results) -> list[str]:
    """The training-step time of the compiled engine over PyTorch's, stated."""
    if not ("compiled" in res.engines and "torch" in res.engines):
        return []
    ratios = [
        f"{config} config {res.time_ratio('compiled', 'torch', f'train_step_{config}')}"
        for config in STEP_CONFIGS
        if res.has("torch", f"train_step_{config}")
    ]
    if not ratios:
        return []
    return [
        "",
        "Training step, compiled time / PyTorch time (median over median): "
        + ", ".join(ratios)
        + ". Below 1: microgpt's compiled engine trains faster than PyTorch (float64, one "
        "thread, the same model and weights).",
    ]


def step_row(res: Results, engine: str, config: str, m: dict[str, Any]) -> list[str]:
    step = res.median(engine, f"train_step_{config}")
    nodes = m["nodes"]  # None for torch: no scalar nodes
    peak = m.get("tracemalloc_peak_bytes")
    return [
        config,
        engine,
        fmt_time(step) if step is not None else "-",
        f"{nodes:,}" if nodes is not None else "-",
        f"{m['constant_leaves']:,}" if nodes is not None else "-",
        f"{step / nodes * 1e9:.0f}" if step is not None and nodes else "-",
        f"{m['first_step_gc_seconds'] / m['first_step_seconds']:.0%}",
        fmt_bytes(m["rss_delta_bytes"]),
        fmt_bytes(peak) if peak is not None else "-",
    ]


def per_step_table(res: Results, measurements: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    rows = [
        step_row(res, engine, config, measurements[engine][config])
        for config in STEP_CONFIGS
        for engine in res.engines
        if config in measurements.get(engine, {})
    ]
    header = ["config", "engine", "step (median)", "nodes", "of which constants", "ns/node"]
    header += ["in cyclic GC", "peak RSS growth", "tracemalloc peak"]
    return [
        "## Per training step",
        "",
        *table(header, rows),
        "",
        "nodes: the loss graph of one step (microgpt: `len(loss.topological_order())`; "
        "the original design: its distinct nodes, including the numbers it wraps in "
        "constant leaf nodes; torch: none, its graph is of tensor operations). ns/node: the "
        "median step time / nodes. In cyclic GC: the share of the first step of a fresh "
        "process spent in the cyclic garbage collector. Peak RSS growth: during that first "
        "step (for torch, it includes setting up its kernels). tracemalloc peak: the most "
        "memory allocated at once during a later step (default config only: it slows the "
        "large one down too much; not for torch, whose memory tracemalloc does not see).",
    ]


def summary(
    results: dict[str, dict[str, Any]],
    measurements: dict[str, dict[str, dict[str, Any]]],
    facts: dict[str, str],
    notes: list[str],
) -> list[str]:
    res = Results(results)
    lines = ["## Summary", "", *speed_table(res), *against_torch(res)]
    for note in notes:
        lines += ["", f"Note: {note}."]
    if measurements:
        lines += ["", *per_step_table(res, measurements), *same_numbers(measurements, res.engines)]
    lines += ["", "## Machine and settings", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    return lines


def same_numbers(
    measurements: dict[str, dict[str, dict[str, Any]]], engines: list[str]
) -> list[str]:
    """Whether the exact engines computed the same first loss, how close
    PyTorch's is, and whether every engine sampled the same names."""
    lines = [""]
    for config in STEP_CONFIGS:
        found = {e: measurements[e][config] for e in engines if config in measurements.get(e, {})}
        exact = {e: m["first_loss"] for e, m in found.items() if e not in OPTIONAL}
        if len(exact) > 1:
            verdict = "the same" if len(set(exact.values())) == 1 else "DIFFERENT"
            each = ", ".join(f"{engine} {loss}" for engine, loss in exact.items())
            lines.append(f"First-step loss, {config} config: {verdict} on {each}.")
        if "torch" in found and exact:
            lines.append(torch_loss_line(config, found["torch"]["first_loss"], exact))
        sampled = {e: tuple(m["samples"]) for e, m in found.items() if "samples" in m}
        if len(sampled) > 1:
            verdict = "the same" if len(set(sampled.values())) == 1 else "DIFFERENT"
            count = len(next(iter(sampled.values())))
            lines.append(f"The {count} sampled names: {verdict} on {', '.join(sampled)}.")
    return lines


def torch_loss_line(config: str, torch_loss: str, exact: dict[str, str]) -> str:
    engine, loss = next(iter(exact.items()))
    difference = abs(float(torch_loss) - float(loss)) / abs(float(loss))
    return (
        f"First-step loss, {config} config, torch: {torch_loss}, {difference:.1e} relative "
        f"from {engine}'s (not bit for bit: its kernels add in other orders; the tests "
        "require 1e-12 over 50 steps)."
    )


# --- main --------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="fewer processes and values")
    parser.add_argument(
        "--out", default=str(BENCH_DIR / "results"), help="results folder (default: %(default)s)"
    )
    parser.add_argument(
        "--data",
        default=None,
        help="the names file (default: $MICROGPT_BENCH_DATA, else the original's names "
        "file if found, else microgpt's bundled dataset)",
    )
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="comma-separated subset of %(default)s (torch is left out if it does not import)",
    )
    parser.add_argument(
        "--groups",
        default=",".join(SETTINGS),
        help="comma-separated subset of the benchmark groups %(default)s",
    )
    parser.add_argument("--no-measure", action="store_true", help="skip nodes and memory")
    parser.add_argument("--python", default=sys.executable, help="the Python to benchmark")
    args = parser.parse_args()
    unknown = sorted(set(args.engines.split(",")) - set(ENGINES) - {""})
    if unknown:
        parser.error(f"unknown engine(s): {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    args.engines = [e for e in ENGINES if e in args.engines.split(",")]
    args.groups = [g for g in SETTINGS if g in args.groups.split(",")]
    if not args.engines or not args.groups:
        parser.error("no engine or no group left to run")
    return args


def run_benchmarks(args: argparse.Namespace, engines: list[str], data: str, out: Path) -> None:
    mode = 1 if args.fast else 0
    for group in args.groups:
        for engine in engines:
            print(f"\n=== {group} / {engine}", flush=True)
            cmd = [str(BENCH_DIR / "benchmarks.py"), "--engine", engine, "--group", group]
            cmd += ["--data", data, "--append", str(out / f"{engine}.json"), "--quiet"]
            settings = SLOWEST.get((group, engine), SETTINGS[group][mode])
            run([args.python, *cmd, *settings], engine)


def run_measurements(
    args: argparse.Namespace, engines: list[str], data: str
) -> dict[str, dict[str, dict[str, Any]]]:
    measurements: dict[str, dict[str, dict[str, Any]]] = {}
    # --fast leaves out the large config (a minute for the original design)
    # and the check of the samples (the sampling again, on each engine)
    for config in ("default",) if args.fast else STEP_CONFIGS:
        for engine in engines:
            print(f"\n=== nodes and memory: {config} / {engine}", flush=True)
            cmd = [args.python, str(BENCH_DIR / "measure.py"), "--engine", engine]
            cmd += ["--config", config, "--data", data]
            if config != "default":
                cmd.append("--no-tracemalloc")
            elif not args.fast:
                cmd.append("--samples")
            measurements.setdefault(engine, {})[config] = json.loads(run(cmd, engine, capture=True))
    return measurements


def print_comparisons(python: str, files: list[str], engines: list[str]) -> None:
    """`pyperf compare_to` over all files, then again without the original's:
    against a reference, compare_to leaves out what the reference lacks."""
    runs = [files] if len(files) > 1 else []
    if "original" in engines and len(files) > 2:
        runs.append(files[1:])
    for chosen in runs:
        print(f"\n$ python -m pyperf compare_to {' '.join(chosen)} --table", flush=True)
        subprocess.run([python, "-m", "pyperf", "compare_to", *chosen, "--table"], check=False)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    sys.path.insert(0, str(BENCH_DIR))
    import workloads

    data = os.path.abspath(args.data or workloads.default_data_path())
    if not os.path.isfile(data):
        sys.exit(f"run.py: data file not found: {data}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in [f"{e}.json" for e in ENGINES] + ["measurements.json", "summary.md"]:
        (out / name).unlink(missing_ok=True)  # pyperf appends to what is there

    engines, notes = engines_that_run(args.python, args.engines)
    for note in notes:
        print(f"run.py: {note}", flush=True)
    if not engines:
        sys.exit("run.py: no engine left to run")
    facts = machine_facts(args.python)
    if "torch" in engines:
        facts["torch"] = torch_version(args.python)
    facts["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"microgpt benchmarks: {', '.join(engines)}; data {data}; results in {out}", flush=True)

    run_benchmarks(args, engines, data, out)
    measurements = {} if args.no_measure else run_measurements(args, engines, data)
    if measurements:
        (out / "measurements.json").write_text(json.dumps(measurements, indent=2) + "\n")
    files = [str(out / f"{e}.json") for e in engines if (out / f"{e}.json").exists()]
    print_comparisons(args.python, files, engines)

    facts["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    facts["total run time"] = f"{(time.perf_counter() - started) / 60:.1f} min"
    facts["data"] = data
    mode = 1 if args.fast else 0
    facts["pyperf settings"] = "; ".join(f"{g}: {' '.join(SETTINGS[g][mode])}" for g in args.groups)
    text = "\n".join(summary(load_results(out, engines), measurements, facts, notes)) + "\n"
    (out / "summary.md").write_text(text)
    print("\n" + text, end="")


if __name__ == "__main__":
    main()
