"""One logging format for every CLI, and the header every run starts with (config, environment)."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


def setup_logging(level: str | int = "INFO") -> None:
    """Configure the root logger once (idempotent: re-configures level/format when called again)."""
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True, stream=sys.stderr)


def git_hash(repo: Path | None = None) -> str:
    """Short git hash of the zipper checkout (with '-dirty' when it has local changes), or 'unknown'."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict[str, str]:
    """What a result depends on besides code and config: versions, host, device."""
    env = {
        "python": platform.python_version(),
        "host": platform.node(),
        "platform": platform.platform(),
        "git": git_hash(),
        "cpus": str(os.cpu_count()),
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return env


def log_run_header(name: str, config: Mapping[str, Any] | None = None) -> None:
    """First lines of a run: the command line, the resolved config and the environment."""
    logger = logging.getLogger(name)
    logger.info("command: %s", " ".join([Path(sys.executable).name, "-m", name] + sys.argv[1:]))
    if config:
        for key, value in config.items():
            logger.info("config: %s=%s", key, value)
    logger.info("environment: %s", " ".join(f"{k}={v}" for k, v in environment().items()))
