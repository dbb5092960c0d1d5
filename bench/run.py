"""Run every benchmark on the three engines and print the comparison.

    python bench/run.py            # the full run (6-8 minutes on 2 cores)
    python bench/run.py --fast     # a rough run (about 2 minutes)

Runs, one engine after the other for each group of benchmarks (so that a
change in the machine's load affects all three alike):

1. `benchmarks.py` under pyperf, appending to DIR/original.json, DIR/pure.json
   and DIR/compiled.json (DIR is `--out`, default bench/results/);
2. `measure.py` in a fresh process per engine and model config: nodes per
   step and peak memory per step, into DIR/measurements.json;
3. `python -m pyperf compare_to original.json pure.json compiled.json --table`;
4. a summary: medians, speedups, ns per graph node, memory, machine facts,
   also written to DIR/summary.md.

The Python that runs this script runs the benchmarks (`--python` to choose
another); it needs microgpt installed with its compiled engine, and pyperf.
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
ENGINES = ("original", "pure", "compiled")

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
    "sample": (
        ["-p", "2", "-n", "2", "-w", "1", "-l", "1"],
        ["-p", "1", "-n", "2", "-w", "1", "-l", "1"],
    ),
}
# The benchmarks in the order of the summary.
BENCHMARKS = (
    "graph_add_chain",
    "graph_mul_chain",
    "graph_dot_sum",
    "graph_dot_engine",
    "backward_step_default",
    "train_step_default",
    "train_step_large",
    "sample_20_names",
)
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


def check_engines(python: str, engines: list[str]) -> None:
    """Fails before any benchmark runs if an engine cannot run as asked."""
    code = (
        f"import sys; sys.path.insert(0, {str(BENCH_DIR)!r}); import workloads; "
        "workloads.require_engine(sys.argv[1])"
    )
    for engine in engines:
        run([python, "-c", code, engine], engine)


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


def summary(
    results: dict[str, dict[str, Any]],
    measurements: dict[str, dict[str, dict[str, Any]]],
    facts: dict[str, str],
    settings: str,
    data: str,
) -> list[str]:
    engines = [e for e in ENGINES if e in results]

    def median(engine: str, name: str) -> float | None:
        bench = results.get(engine, {}).get(name)
        return bench.median() if bench is not None else None

    def cell(engine: str, name: str) -> str:
        bench = results.get(engine, {}).get(name)
        if bench is None:
            return "-"
        spread = bench.stdev() / bench.mean() if bench.get_nvalue() > 1 else 0.0
        return f"{fmt_time(bench.median())} ±{spread:.0%}"

    lines = ["## Summary", ""]
    header = ["benchmark", *engines]
    if "original" in engines:
        header += [f"{e} vs original" for e in engines if e != "original"]
    if "pure" in engines and "compiled" in engines:
        header.append("compiled vs pure")
    rows = []
    for name in BENCHMARKS:
        if not any(name in results[e] for e in engines):
            continue
        row = [name] + [cell(e, name) for e in engines]
        if "original" in engines:
            ref_name = name if name in results["original"] else ORIGINAL_STAND_IN.get(name, name)
            mark = " *" if ref_name != name else ""
            for e in engines:
                if e != "original":
                    ratio = fmt_ratio(median("original", ref_name), median(e, name))
                    row.append(ratio + (mark if ratio != "-" else ""))
        if "pure" in engines and "compiled" in engines:
            row.append(fmt_ratio(median("pure", name), median("compiled", name)))
        rows.append(row)
    lines += table(header, rows)
    lines += [
        "",
        "Median of all values, ± the standard deviation as a share of the mean. "
        "`a vs b`: median of b / median of a (how many times faster a is).",
    ]
    if "original" in engines and any("graph_dot_engine" in results[e] for e in engines):
        lines.append(
            "* the original design has no dot(): compared with its graph_dot_sum, "
            "the same dot products written with sum()."
        )

    if measurements:
        lines += ["", "## Per training step", ""]
        rows = []
        for config in ("default", "large"):
            for engine in engines:
                m = measurements.get(engine, {}).get(config)
                step = median(engine, f"train_step_{config}")
                if m is None:
                    continue
                peak = m.get("tracemalloc_peak_bytes")
                rows.append(
                    [
                        config,
                        engine,
                        fmt_time(step) if step is not None else "-",
                        f"{m['nodes']:,}",
                        f"{m['constant_leaves']:,}",
                        f"{step / m['nodes'] * 1e9:.0f}" if step is not None else "-",
                        f"{m['first_step_gc_seconds'] / m['first_step_seconds']:.0%}",
                        fmt_bytes(m["rss_delta_bytes"]),
                        fmt_bytes(peak) if peak is not None else "-",
                    ]
                )
        lines += table(
            [
                "config",
                "engine",
                "step (median)",
                "nodes",
                "of which constants",
                "ns/node",
                "in cyclic GC",
                "peak RSS growth",
                "tracemalloc peak",
            ],
            rows,
        )
        lines += [
            "",
            "nodes: the loss graph of one step (microgpt: `len(loss.topological_order())`; "
            "the original design: its distinct nodes, including the numbers it wraps in "
            "constant leaf nodes). ns/node: the median step time / nodes. In cyclic GC: the "
            "share of the first step of a fresh process spent in the cyclic garbage "
            "collector. Peak RSS growth: during that first step. tracemalloc peak: the most memory "
            "allocated at once during a later step (default config only: it slows the "
            "large one down too much).",
        ]
        lines += same_numbers(measurements, engines)

    lines += ["", "## Machine and settings", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    lines += [f"- data: {data}", f"- pyperf settings: {settings}"]
    return lines


def same_numbers(
    measurements: dict[str, dict[str, dict[str, Any]]], engines: list[str]
) -> list[str]:
    """Whether every engine computed the same first loss and the same samples."""
    lines = [""]
    for config in ("default", "large"):
        found = {e: measurements[e][config] for e in engines if config in measurements.get(e, {})}
        if len(found) < 2:
            continue
        losses = {m["first_loss"] for m in found.values()}
        verdict = "the same" if len(losses) == 1 else "DIFFERENT"
        each = ", ".join(f"{engine} {m['first_loss']}" for engine, m in found.items())
        lines.append(f"First-step loss, {config} config: {verdict} on all engines ({each}).")
        samples = [tuple(m["samples"]) for m in found.values() if "samples" in m]
        if samples:
            verdict = "the same" if len(set(samples)) == 1 else "DIFFERENT"
            lines.append(f"The {len(samples[0])} sampled names: {verdict} on all engines.")
    return lines


# --- main --------------------------------------------------------------------


def main() -> None:
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
        help="comma-separated subset of %(default)s",
    )
    parser.add_argument(
        "--groups",
        default=",".join(SETTINGS),
        help="comma-separated subset of the benchmark groups %(default)s",
    )
    parser.add_argument("--no-measure", action="store_true", help="skip nodes and memory")
    parser.add_argument("--python", default=sys.executable, help="the Python to benchmark")
    args = parser.parse_args()
    engines = [e for e in ENGINES if e in args.engines.split(",")]
    groups = [g for g in SETTINGS if g in args.groups.split(",")]
    if not engines or not groups:
        parser.error("no engine or no group left to run")

    started = time.perf_counter()
    sys.path.insert(0, str(BENCH_DIR))
    import workloads

    data = os.path.abspath(args.data or workloads.default_data_path())
    if not os.path.isfile(data):
        parser.error(f"data file not found: {data}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in [f"{e}.json" for e in ENGINES] + ["measurements.json", "summary.md"]:
        (out / name).unlink(missing_ok=True)  # pyperf appends to what is there

    check_engines(args.python, engines)
    facts = machine_facts(args.python)
    facts["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"microgpt benchmarks: {', '.join(engines)}; data {data}; results in {out}", flush=True)

    mode = 1 if args.fast else 0
    for group in groups:
        for engine in engines:
            print(f"\n=== {group} / {engine}", flush=True)
            cmd = [str(BENCH_DIR / "benchmarks.py"), "--engine", engine, "--group", group]
            cmd += ["--data", data, "--append", str(out / f"{engine}.json"), "--quiet"]
            run([args.python, *cmd, *SETTINGS[group][mode]], engine)

    measurements: dict[str, dict[str, dict[str, Any]]] = {}
    if not args.no_measure:
        # --fast leaves out the large config (a minute for the original design)
        # and the check of the samples (the sampling again, on each engine)
        for config in ("default",) if args.fast else ("default", "large"):
            for engine in engines:
                print(f"\n=== nodes and memory: {config} / {engine}", flush=True)
                cmd = [args.python, str(BENCH_DIR / "measure.py"), "--engine", engine]
                cmd += ["--config", config, "--data", data]
                if config != "default":
                    cmd.append("--no-tracemalloc")
                elif not args.fast:
                    cmd.append("--samples")
                measurements.setdefault(engine, {})[config] = json.loads(
                    run(cmd, engine, capture=True)
                )
        (out / "measurements.json").write_text(json.dumps(measurements, indent=2) + "\n")

    files = [str(out / f"{e}.json") for e in engines if (out / f"{e}.json").exists()]
    if len(files) > 1:
        print(f"\n$ python -m pyperf compare_to {' '.join(files)} --table", flush=True)
        subprocess.run([args.python, "-m", "pyperf", "compare_to", *files, "--table"], check=False)
        if "original" in engines and "pure" in engines and "compiled" in engines:
            # against the original, compare_to leaves out what the original lacks
            rest = files[1:]
            print(f"\n$ python -m pyperf compare_to {' '.join(rest)} --table", flush=True)
            subprocess.run([args.python, "-m", "pyperf", "compare_to", *rest, "--table"])

    facts["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    elapsed = time.perf_counter() - started
    facts["total run time"] = f"{elapsed / 60:.1f} min"
    settings = "; ".join(f"{g}: {' '.join(SETTINGS[g][mode])}" for g in groups)
    lines = summary(load_results(out, engines), measurements, facts, settings, data)
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    print("\n" + text, end="")


if __name__ == "__main__":
    main()
