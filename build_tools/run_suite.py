"""Run the test suite against an installed microgpt-exact wheel, once per
engine: compiled, then MICROGPT_PURE=1 (what the README's test command runs
after its install). The wheels workflow and .ci/run use it.

    python run_suite.py TESTS_DIR [PYTEST_ARGS...]

Run it from a folder that holds the tests but not the sources, so that the
installed wheel is what gets imported; the tests that need the sources
(packaging, static checks) skip there. Works the same on every platform,
which `MICROGPT_PURE=1 python -m pytest` in a Windows shell would not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path


def installed_package() -> Path:
    """Where `import microgpt` finds the package, as the tests will."""
    code = "import microgpt; print(microgpt.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip()).parent


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    tests, pytest_args = argv[0], argv[1:]
    package = installed_package()
    site = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    if package.parent.resolve() not in site:
        print(f"error: microgpt is imported from {package}, not from the installed wheel")
        return 1
    base = {k: v for k, v in os.environ.items() if k != "MICROGPT_PURE"}
    # There is no pyproject.toml here: its pytest `pythonpath` (bench/, beside
    # the tests) is given on the command line instead.
    bench = Path(tests).resolve().parent / "bench"
    for engine_env in ({}, {"MICROGPT_PURE": "1"}):
        command = [sys.executable, "-m", "pytest", "-ra", "-p", "no:cacheprovider"]
        command += ["-o", f"pythonpath={bench}", tests]
        status = subprocess.run([*command, *pytest_args], env={**base, **engine_env}).returncode
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
