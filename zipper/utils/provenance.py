"""Where a token inventory came from, so that a run can refuse one that does not match instead of mis-decoding.

A provenance is a flat JSON dict stored as `provenance.json` next to what it describes (k-means model, unit
set, token list).  `check_provenance` compares the keys that identify an inventory and names every mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from zipper.utils.atomic import atomic_write_json

PROVENANCE_FILE = "provenance.json"


class ProvenanceError(RuntimeError):
    """An inventory (units, k-means, token list) does not come from what the caller expects."""


def short_hash(obj: Any, length: int = 8) -> str:
    """Stable hash of a JSON-able object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha1(blob).hexdigest()[:length]


def hash_lines(lines: Iterable[str], length: int = 12) -> str:
    digest = hashlib.sha1()
    for line in lines:
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:length]


def hash_file(path: str | os.PathLike, length: int = 12) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def read_provenance(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / PROVENANCE_FILE
    if not path.exists():
        raise ProvenanceError(f"{path} is missing: cannot tell where {directory} came from")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_provenance(directory: str | os.PathLike, provenance: Mapping[str, Any], overwrite: bool = False) -> None:
    """Write `provenance.json`; refuse to replace a different one unless `overwrite`."""
    path = Path(directory) / PROVENANCE_FILE
    if path.exists() and not overwrite:
        old = read_provenance(directory)
        if old != dict(provenance):
            raise ProvenanceError(
                f"{path} already describes a different inventory; refusing to overwrite it.\n"
                + describe_mismatch(old, provenance, old.keys() | provenance.keys())
                + "\nRemove the directory (or pass --force) to rebuild it."
            )
        return
    atomic_write_json(path, dict(provenance))


def describe_mismatch(have: Mapping[str, Any], want: Mapping[str, Any], keys: Iterable[str]) -> str:
    lines = [f"  {k}: found {have.get(k)!r}, expected {want.get(k)!r}" for k in sorted(keys)
             if have.get(k) != want.get(k)]
    return "\n".join(lines)


def check_provenance(have: Mapping[str, Any], want: Mapping[str, Any], keys: Iterable[str], what: str) -> None:
    """Raise ProvenanceError naming each key of `keys` on which `have` and `want` differ."""
    keys = list(keys)
    diff = describe_mismatch(have, want, keys)
    if diff:
        raise ProvenanceError(f"{what} does not match:\n{diff}")
