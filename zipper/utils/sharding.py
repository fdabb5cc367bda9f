"""Split per-utterance work into `nj` jobs that each find their own share (no split files to keep in sync).

A stage runs `${cmd} JOB=1:N ... --nj N --job JOB`, then once more with `--merge true`.  Each finished job
leaves a marker keyed by what it was given, so an interrupted stage re-runs only the jobs that did not finish.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence, TypeVar

from zipper.utils.atomic import atomic_write_json
from zipper.utils.provenance import hash_lines, short_hash

logger = logging.getLogger(__name__)

T = TypeVar("T")


def shard(items: Sequence[T], nj: int, job: int) -> list[T]:
    """The `job`-th (1-based) of `nj` contiguous, balanced parts (empty when nj > len(items))."""
    if not 1 <= job <= nj:
        raise ValueError(f"job {job} is not in 1..{nj}")
    base, extra = divmod(len(items), nj)
    start = (job - 1) * base + min(job - 1, extra)
    return list(items[start:start + base + (1 if job - 1 < extra else 0)])


def job_dir(out_dir: str | os.PathLike, nj: int, job: int) -> Path:
    return Path(out_dir) / f"split{nj}" / f"job{job}"


def job_key(**what) -> str:
    return short_hash(what, 12)


def job_finished(directory: Path, key: str) -> bool:
    marker = directory / ".done"
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("key") == key
    except (OSError, ValueError):
        return False


def mark_job_finished(directory: Path, key: str) -> None:
    atomic_write_json(directory / ".done", {"key": key})


def add_sharding_options(parser) -> None:
    from zipper.utils.cli import positive_int, str2bool

    parser.add_argument("--nj", type=positive_int, default=1, help="number of jobs the work is split into")
    parser.add_argument("--job", type=positive_int, default=1, help="which job (1..nj) this process runs")
    parser.add_argument("--merge", type=str2bool, default=False,
                        help="instead of a job: merge the nj jobs' outputs (after they all finished)")


def finished_job_dirs(out_dir: str | os.PathLike, nj: int) -> list[Path]:
    """The nj job dirs, checking that every job finished (else the merge would silently lose utterances)."""
    dirs = [job_dir(out_dir, nj, j) for j in range(1, nj + 1)]
    unfinished = [str(d) for d in dirs if not (d / ".done").exists()]
    if unfinished:
        raise RuntimeError(f"cannot merge: {len(unfinished)} job(s) did not finish: {', '.join(unfinished[:3])}")
    return dirs


def pending_job(out_dir: str | os.PathLike, nj: int, job: int, utts: Sequence[str],
                **inputs) -> tuple[list[str], Path, str] | None:
    """This job's utterances, its dir and its key; None when it already finished on the same inputs."""
    mine = shard(utts, nj, job)
    directory = job_dir(out_dir, nj, job)
    key = job_key(utts=hash_lines(mine), **inputs)
    if job_finished(directory, key):
        logger.info("job %d/%d already finished; nothing to do", job, nj)
        return None
    return mine, directory, key
