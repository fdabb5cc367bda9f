"""Kaldi-style job arrays: `run.pl JOB=1:4 log/x.JOB.log cmd ... JOB ...` on this machine or through slurm.

The interface is Kaldi's (`utils/run.pl`, `utils/slurm.pl`), so `cmd.sh` can switch backends and ESPnet users'
habits carry over; the implementation is ours, in Python, so that a failure prints the failing job's log.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

JOB_RANGE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+):(\d+)$")
JOB_SINGLE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+)$")
SHELL_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")
# A lone shell operator (`|`, `&&`, `;`, `>`, `2>&1`, ...) is left as it is, so that `cmd a \| sort` or `\> out`
# given to run.pl act as in Kaldi recipes; any other argument with special characters is quoted as one word.
SHELL_OPERATOR = re.compile(r"^(\|\|?|\|&|&&|;|&|[0-9]*(<|>|>>|>&|<&|&>|&>>)([0-9]+|-)?)$")
LOG_TAIL_LINES = 30


class JobSpecError(ValueError):
    pass


@dataclasses.dataclass
class JobArray:
    """What a run.pl/slurm.pl command line asks for."""

    var: str | None
    start: int
    end: int
    log_template: str
    command: str
    options: dict[str, str]

    def ids(self) -> list[int]:
        return list(range(self.start, self.end + 1))

    def substitute(self, text: str, job: int) -> str:
        return text.replace(self.var, str(job)) if self.var else text


def quote_command(args: Sequence[str]) -> str:
    """Join args into a bash command line, quoting only what needs it.

    As in Kaldi's run.pl, `run.pl log cmd a \\| sort` pipes (a lone operator is not quoted) and
    `run.pl log cmd "ark:gunzip -c x.gz |"` passes one word; unlike it, `'*.scp'` or `'f(x)'` stay literal.
    A single argument is taken as a whole command line (`run.pl log "a | b"`).
    """
    if len(args) == 1:
        return args[0]
    return " ".join(a if SHELL_SAFE.match(a) or SHELL_OPERATOR.match(a) else shlex.quote(a) for a in args)


def parse_args(argv: Sequence[str]) -> JobArray:
    """`[--opt value ...] [JOB=1:N] <log> <command ...>`, options as in Kaldi's queue scripts."""
    argv = list(argv)
    options: dict[str, str] = {}
    while argv and argv[0].startswith("--"):
        opt = argv.pop(0)[2:]
        if "=" in opt:
            opt, value = opt.split("=", 1)
        elif argv:
            value = argv.pop(0)
        else:
            raise JobSpecError(f"option --{opt} needs a value")
        options[opt.replace("_", "-")] = value  # only the name: a value may contain '_'
    if "max-jobs-run" in options:
        value = options["max-jobs-run"]
        if not value.isdigit() or int(value) < 1:
            raise JobSpecError(f"--max-jobs-run needs a positive integer, got '{value}'")
    if not argv:
        raise JobSpecError("missing <log> and <command>")
    var, start, end = None, 1, 1
    m = JOB_RANGE.match(argv[0]) or JOB_SINGLE.match(argv[0])
    if m:
        argv.pop(0)
        var, start = m.group(1), int(m.group(2))
        end = int(m.group(3)) if m.re is JOB_RANGE else start
        if end < start:
            raise JobSpecError(f"empty job range {var}={start}:{end}")
    if len(argv) < 2:
        raise JobSpecError("missing <command> after the log file")
    log_template, command = argv[0], quote_command(argv[1:])
    if var and var not in log_template and end > start:
        raise JobSpecError(f"the log file '{log_template}' must contain {var} so that jobs do not share it")
    return JobArray(var, start, end, log_template, command, options)


def _now() -> str:
    return datetime.datetime.now().strftime("%a %b %d %H:%M:%S %Y")


def run_one(array: JobArray, job: int) -> int:
    """Run one job with its output in its log; returns the exit code."""
    log = Path(array.substitute(array.log_template, job))
    command = array.substitute(array.command, job)
    begin = time.time()
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w", encoding="utf-8") as f:
            f.write(f"# {command}\n# Started at {_now()}\n#\n")
            f.flush()
            # no stdin: jobs run in parallel and must not wait on (or share) the terminal
            proc = subprocess.run(["bash", "-c", command], stdin=subprocess.DEVNULL, stdout=f,
                                  stderr=subprocess.STDOUT)
            elapsed = int(time.time() - begin)
            f.write(f"# Accounting: time={elapsed} threads=1\n# Ended (code {proc.returncode}) at {_now()}, "
                    f"elapsed time {elapsed} seconds\n")
    except OSError as e:
        sys.stderr.write(f"run.pl: cannot run job {job}: cannot write its log {log}: {e}\n")
        return 1
    return proc.returncode


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "".join(path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e})\n"


def report(array: JobArray, codes: dict[int, int], backend: str) -> int:
    failed = [job for job, code in sorted(codes.items()) if code != 0]
    if not failed:
        return 0
    shown = array.substitute(array.log_template, failed[0])
    if len(codes) == 1:
        sys.stderr.write(f"{backend}: job failed, log is in {shown}\n")
    else:
        pattern = array.log_template.replace(array.var, "*") if array.var else array.log_template
        sys.stderr.write(f"{backend}: {len(failed)} / {len(codes)} failed, log is in {pattern}\n")
    sys.stderr.write(f"{backend}: last lines of {shown}:\n{log_tail(Path(shown))}")
    return 1


def run_local(array: JobArray) -> int:
    """Run the array here, at most --max-jobs-run at once (default: every job at once, like run.pl)."""
    max_jobs = int(array.options.get("max-jobs-run", len(array.ids())))
    with ThreadPoolExecutor(max_workers=max(1, max_jobs)) as pool:
        codes = dict(zip(array.ids(), pool.map(lambda j: run_one(array, j), array.ids())))
    return report(array, codes, "run.pl")


def sbatch_options(options: dict[str, str]) -> list[str]:
    """Kaldi queue options -> sbatch flags.  Extra flags come from $ZIPPER_SLURM_OPTS."""
    flags = []
    for key, value in options.items():
        if key == "num-threads":
            flags.append(f"--cpus-per-task={value}")
        elif key == "mem":
            flags.append(f"--mem={value.upper().rstrip('B')}")
        elif key == "gpu":
            if not value.isdigit():
                raise JobSpecError(f"--gpu needs a number of GPUs, got '{value}'")
            if int(value) > 0:
                flags.append(f"--gres=gpu:{value}")
        elif key == "time":
            flags.append(f"--time={value}")
        elif key == "partition":
            flags.append(f"--partition={value}")
        elif key == "max-jobs-run":
            pass  # applied to the array spec
        else:
            raise JobSpecError(f"unknown option --{key}")
    flags.extend(shlex.split(os.environ.get("ZIPPER_SLURM_OPTS", "")))
    return flags


TASK_ID = '"${SLURM_ARRAY_TASK_ID}"'


def _shell_template(text: str, var: str | None) -> str:
    """`text` as one bash word, with every `var` replaced by the slurm task id and the rest taken literally."""
    if not var:
        return shlex.quote(text)
    return TASK_ID.join(shlex.quote(piece) for piece in text.split(var))


def slurm_script(array: JobArray, cwd: str) -> str:
    """The batch script every task of the array runs: its own log (run.pl's header and footer) and exit code.

    The command is kept in a variable and run with `bash -c`, exactly as run_one does, so quotes, pipes and
    `$` in it reach bash once, unchanged.
    """
    return f"""#!/bin/bash
cd {shlex.quote(cwd)} || exit 1
: "${{SLURM_ARRAY_TASK_ID:?must run as a slurm array task}}"
log={_shell_template(array.log_template, array.var)}
cmd={_shell_template(array.command, array.var)}
mkdir -p "$(dirname "$log")"
{{ printf '# %s\n' "$cmd"; echo "# Started at $(date) on $(hostname)"; echo "#"; }} > "$log"
start=$(date +%s)
bash -c "$cmd" >> "$log" 2>&1 < /dev/null
code=$?
elapsed=$(( $(date +%s) - start ))
echo "# Accounting: time=$elapsed threads=1" >> "$log"
echo "# Ended (code $code) at $(date), elapsed time $elapsed seconds" >> "$log"
echo "$code" > "$log.code"
exit "$code"
"""


def _read_code(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def run_slurm(array: JobArray) -> int:
    """Submit the array with `sbatch --wait` and report like run.pl (per-job logs, failing log printed).

    A task that leaves no exit code (killed by slurm, never started) counts as failed.
    """
    try:
        flags = sbatch_options(array.options)
    except JobSpecError as e:
        sys.stderr.write(f"slurm.pl: {e}\n")
        return 1
    logs = {job: Path(array.substitute(array.log_template, job)) for job in array.ids()}
    for log in logs.values():
        log.parent.mkdir(parents=True, exist_ok=True)
        Path(str(log) + ".code").unlink(missing_ok=True)
    queue_dir = logs[array.start].parent / "q"
    queue_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=queue_dir, prefix=f"{array.var or 'JOB'}.", suffix=".sh",
                                     delete=False) as f:
        f.write(slurm_script(array, os.getcwd()))
    os.chmod(f.name, 0o755)
    array_spec = f"{array.start}-{array.end}"
    if "max-jobs-run" in array.options:
        array_spec += f"%{array.options['max-jobs-run']}"
    cmd = ["sbatch", "--wait", "--parsable", f"--array={array_spec}", "--export=ALL",
           f"--output={queue_dir}/slurm-%A_%a.out"] + flags + [f.name]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as e:
        sys.stderr.write(f"slurm.pl: cannot run sbatch: {e}\n")
        return 1
    codes = {job: _read_code(Path(str(log) + ".code")) for job, log in logs.items()}
    if proc.returncode != 0 and all(c is None for c in codes.values()):
        sys.stderr.write(f"slurm.pl: sbatch failed (exit code {proc.returncode}) and no job ran: "
                         f"{proc.stderr.strip()}\n")
        return 1
    return report(array, {job: 1 if c is None else c for job, c in codes.items()}, "slurm.pl")
