"""Run a Kaldi-style job array (the logic behind utils/run.pl and utils/slurm.pl).

Usage: python -m zipper.bin.run_jobs {local,slurm} [--max-jobs-run N] [--num-threads N] [--mem 4G] [--gpu N]
       [JOB=1:N] <log-file> <command ...>
Every occurrence of JOB in the log name and the command is replaced by the job id.  Exit 1 if any job failed,
after printing the last lines of the first failing job's log.
"""

from __future__ import annotations

import sys
from typing import Sequence

from zipper.utils.jobs import JobSpecError, parse_args, run_local, run_slurm


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in ("local", "slurm"):
        sys.stdout.write(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 1
    backend, rest = argv[0], argv[1:]
    name = "run.pl" if backend == "local" else "slurm.pl"
    if not rest or rest[0] in ("-h", "--help"):
        sys.stdout.write(__doc__.replace("python -m zipper.bin.run_jobs {local,slurm}", f"utils/{name}"))
        return 0
    try:
        array = parse_args(rest)
    except JobSpecError as e:
        sys.stderr.write(f"{name}: {e}\n")
        return 1
    return run_local(array) if backend == "local" else run_slurm(array)


if __name__ == "__main__":
    sys.exit(main())
