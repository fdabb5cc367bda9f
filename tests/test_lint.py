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


def test_no_module_imports_from_zipper_bin():
    """bin/ only parses and calls: shared code lives in zipper/<area>/, and no module (a bin neither) imports a bin."""
    import ast

    offenders = []
    for path in sorted((REPO / "zipper").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n == "zipper.bin" or n.startswith("zipper.bin.") for n in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == [], f"imports from zipper.bin: {offenders}"
