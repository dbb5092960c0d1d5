"""Build script: the metadata lives in pyproject.toml; this adds the optional
Cython extension (see build_tools/cython_build.py for the switches)."""

import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "build_tools"))
from cython_build import COMMANDS, extensions  # noqa: E402

setup(ext_modules=extensions(), cmdclass=COMMANDS)
