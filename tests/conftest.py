"""Fixtures every test may use: where the repo is, and an environment in which `utils/*.pl|sh` run as in a recipe."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def env_with_utils(repo_root: Path) -> dict[str, str]:
    """os.environ with the venv's bin (so `python3` is the one running the tests) and utils/ first on PATH,
    the repo on PYTHONPATH and C-locale sorting, as a recipe's path.sh sets them."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)  # not resolved: a venv's python is a symlink
    env["PATH"] = os.pathsep.join([venv_bin, str(repo_root / "utils"), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(repo_root), env.get("PYTHONPATH", "")] if p)
    env["LC_ALL"] = "C"
    env["PYTHONIOENCODING"] = "UTF-8"
    return env
