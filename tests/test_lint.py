"""pyflakes over the package and the tests: unused imports, undefined names, shadowed variables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_pyflakes_is_clean():
    result = subprocess.run([sys.executable, "-m", "pyflakes", "zipper", "tests"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.stdout + result.stderr == ""
