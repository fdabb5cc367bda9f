"""Write-then-rename, and `.done` markers: an interrupted step never leaves a file that looks finished."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it onto `path` only if the block succeeds.

    Works for files and directories (whatever the block creates at the temporary path).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the block decides whether it is a file or a directory
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp} for {path}")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """What atomic_write_json wrote."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def done_marker(directory: str | os.PathLike, name: str = "") -> Path:
    return Path(directory) / (f".done.{name}" if name else ".done")


def is_done(directory: str | os.PathLike, name: str = "") -> bool:
    return done_marker(directory, name).exists()


def mark_done(directory: str | os.PathLike, name: str = "", info: dict[str, Any] | None = None) -> None:
    """Written last, after every output of the step is in place."""
    atomic_write_json(done_marker(directory, name), info or {})


def clear_done(directory: str | os.PathLike, name: str = "") -> None:
    marker = done_marker(directory, name)
    if marker.exists():
        marker.unlink()
