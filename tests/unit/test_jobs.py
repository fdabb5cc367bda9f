"""zipper.utils.jobs: Kaldi run.pl/slurm.pl job arrays, run here and through a fake `sbatch`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from zipper.utils.jobs import JobArray, JobSpecError, parse_args, quote_command, run_local, run_slurm

# A stand-in for slurm's sbatch: it runs every task of --array=S-E[%M] here, one after the other, with
# SLURM_ARRAY_TASK_ID set, and (as `sbatch --wait` does) returns only when they have ended, with a non-zero
# code if any failed.  It refuses to run without --wait, since the caller reads the results right after.
# FAKE_SBATCH_ARGS: file to record its arguments in; FAKE_SBATCH_REJECT: fail without running anything;
# FAKE_SBATCH_SKIP: a task id never to run (as if slurm killed it before it could write its exit code).
FAKE_SBATCH = r"""#!/usr/bin/env bash
printf '%s\n' "$@" > "${FAKE_SBATCH_ARGS:-/dev/null}"
if [ -n "${FAKE_SBATCH_REJECT:-}" ]; then echo "sbatch: error: ${FAKE_SBATCH_REJECT}" >&2; exit 1; fi
array="" wait=0 out="" script=""
for arg in "$@"; do
    case "${arg}" in
        --array=*) array="${arg#--array=}" ;;
        --wait) wait=1 ;;
        --output=*) out="${arg#--output=}" ;;
        -*) ;;
        *) script="${arg}" ;;
    esac
done
if [ "${wait}" -ne 1 ]; then echo "fake sbatch: only --wait is supported" >&2; exit 2; fi
range="${array%%%*}"
first="${range%-*}" last="${range#*-}"
code=0
for ((task = first; task <= last; task++)); do
    [ "${task}" != "${FAKE_SBATCH_SKIP:-}" ] || { code=1; continue; }
    task_out="${out//%A/4242}"
    SLURM_ARRAY_TASK_ID="${task}" bash "${script}" > "${task_out//%a/${task}}" 2>&1 || code=1
done
echo 4242
exit "${code}"
"""


@pytest.fixture
def fake_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the fake sbatch first on PATH; returns the file it records its arguments in.  Runs in tmp_path."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(FAKE_SBATCH)
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IXUSR)
    args_file = tmp_path / "sbatch.args"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_ARGS", str(args_file))
    monkeypatch.delenv("ZIPPER_SLURM_OPTS", raising=False)
    monkeypatch.chdir(tmp_path)
    return args_file


def body(log: Path) -> list[str]:
    """A job log without run.pl's '#' header and footer lines."""
    return [line for line in log.read_text().splitlines() if not line.startswith("#")]


def concurrency(events: Path) -> int:
    """Most jobs running at once, from the 's'/'e' lines they appended at start and end."""
    running = most = 0
    for event in events.read_text().split():
        running += 1 if event == "s" else -1
        most = max(most, running)
    return most


# --- parsing -------------------------------------------------------------------------------------------------

def test_parse_array_and_options():
    array = parse_args(["--max-jobs-run", "2", "--partition=gpu_short", "JOB=1:4", "log/x.JOB.log",
                        "echo", "JOB"])
    assert (array.var, array.start, array.end) == ("JOB", 1, 4)
    assert array.ids() == [1, 2, 3, 4]
    assert array.log_template == "log/x.JOB.log"
    assert array.command == "echo JOB"
    # names are normalised to dashes, values are left alone
    assert array.options == {"max-jobs-run": "2", "partition": "gpu_short"}
    assert parse_args(["--max_jobs_run=3", "log/a.log", "true"]).options == {"max-jobs-run": "3"}


def test_parse_single_job_forms():
    plain = parse_args(["log/one.log", "echo", "hi"])
    assert (plain.var, plain.ids(), plain.log_template, plain.command) == (None, [1], "log/one.log", "echo hi")
    fixed = parse_args(["JOB=3", "log/one.log", "echo", "JOB"])  # one job: the log may lack JOB
    assert (fixed.var, fixed.ids()) == ("JOB", [3])
    other_var = parse_args(["N=2:3", "log/x.N.log", "echo", "N"])
    assert (other_var.var, other_var.ids()) == ("N", [2, 3])


@pytest.mark.parametrize("argv, message", [
    (["JOB=1:4", "log/x.log", "echo", "JOB"], "the log file 'log/x.log' must contain JOB"),
    (["JOB=3:1", "log/x.JOB.log", "echo"], "empty job range JOB=3:1"),
    (["JOB=1:2", "log/x.JOB.log"], "missing <command>"),
    ([], "missing <log> and <command>"),
    (["--mem"], "option --mem needs a value"),
    (["--max-jobs-run", "0", "log/x.log", "true"], "--max-jobs-run needs a positive integer, got '0'"),
    (["--max-jobs-run", "two", "log/x.log", "true"], "--max-jobs-run needs a positive integer, got 'two'"),
])
def test_parse_rejects_bad_specs(argv, message):
    with pytest.raises(JobSpecError) as excinfo:
        parse_args(argv)
    assert message in str(excinfo.value)


def test_quote_command():
    # a lone operator is left as it is, so an escaped `\|` on the command line is a pipe again (as in Kaldi)
    assert quote_command(["cat", "a.txt", "|", "sort", "-k2", "2>&1", ">", "b.txt", "&&", "echo", "ok"]) \
        == "cat a.txt | sort -k2 2>&1 > b.txt && echo ok"
    # anything else with special characters is one literal word
    assert quote_command(["copy", "ark:gunzip -c x.gz |", "it's", "*.scp", "f(x)", "$HOME", ">out"]) \
        == "copy 'ark:gunzip -c x.gz |' 'it'\"'\"'s' '*.scp' 'f(x)' '$HOME' '>out'"
    assert quote_command(["echo", ""]) == "echo ''"
    assert quote_command(["echo a | tr a b"]) == "echo a | tr a b"  # a lone argument is a whole command line


# --- run.pl ---------------------------------------------------------------------------------------------------

def test_run_local_substitutes_job_and_writes_logs(tmp_path: Path):
    array = parse_args(["JOB=1:3", f"{tmp_path}/log/x.JOB.log", "echo", "job", "JOB", "of", "x.JOB"])
    assert run_local(array) == 0
    for job in (1, 2, 3):
        lines = (tmp_path / f"log/x.{job}.log").read_text().splitlines()
        assert lines[0] == f"# echo job {job} of x.{job}"
        assert lines[1].startswith("# Started at ")
        assert lines[2] == "#"
        assert lines[3] == f"job {job} of x.{job}"
        assert lines[4].startswith("# Accounting: time=")
        assert lines[5].startswith("# Ended (code 0) at ") and lines[5].endswith(" seconds")
        assert len(lines) == 6


def test_run_local_shell_syntax(tmp_path: Path):
    log = tmp_path / "log/p.JOB.log"
    assert run_local(parse_args(["JOB=1:2", str(log), "printf", "%s\\n", "a b", "it's", "|", "sort", "-r"])) == 0
    assert body(tmp_path / "log/p.2.log") == ["it's", "a b"]
    assert run_local(parse_args([str(tmp_path / "one.log"), "echo \"x y\" | tr x z; echo '$HOME'"])) == 0
    assert body(tmp_path / "one.log") == ["z y", "$HOME"]


def test_run_local_does_not_wait_on_stdin(tmp_path: Path):
    assert run_local(parse_args([str(tmp_path / "cat.log"), "cat"])) == 0
    assert body(tmp_path / "cat.log") == []


@pytest.mark.parametrize("limit, expected", [("2", 2), (None, 4)])
def test_run_local_max_jobs_run(tmp_path: Path, limit, expected):
    events = tmp_path / "events"
    argv = ["--max-jobs-run", limit] if limit else []
    argv += ["JOB=1:4", str(tmp_path / "log/s.JOB.log"), f"echo s >> {events}; sleep 0.4; echo e >> {events}"]
    assert run_local(parse_args(argv)) == 0
    assert concurrency(events) == expected


def test_run_local_failure_reports_the_failing_log(tmp_path: Path, capsys: pytest.CaptureFixture):
    array = parse_args(["JOB=1:3", f"{tmp_path}/log/f.JOB.log",
                        "echo output of JOB; if [ JOB = 2 ]; then echo boom JOB >&2; exit 3; fi"])
    assert run_local(array) == 1
    err = capsys.readouterr().err
    assert f"run.pl: 1 / 3 failed, log is in {tmp_path}/log/f.*.log" in err
    assert f"run.pl: last lines of {tmp_path}/log/f.2.log:" in err
    assert "boom 2" in err and "# Ended (code 3)" in err
    assert "output of 1" not in err  # only the failing job's log
    assert body(tmp_path / "log/f.2.log") == ["output of 2", "boom 2"]
    assert "# Ended (code 0)" in (tmp_path / "log/f.3.log").read_text()


def test_run_local_single_job(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert run_local(parse_args([str(tmp_path / "one.log"), "echo", "JOB", "hi"])) == 0
    assert body(tmp_path / "one.log") == ["JOB hi"]  # no array: JOB is just text
    assert run_local(parse_args([str(tmp_path / "bad.log"), "echo nope; false"])) == 1
    err = capsys.readouterr().err
    assert f"run.pl: job failed, log is in {tmp_path}/bad.log" in err
    assert "nope" in err


def test_run_local_unwritable_log(tmp_path: Path, capsys: pytest.CaptureFixture):
    (tmp_path / "file").write_text("")
    assert run_local(parse_args([str(tmp_path / "file/x.log"), "true"])) == 1
    assert "cannot write its log" in capsys.readouterr().err


# --- slurm.pl through a fake sbatch -------------------------------------------------------------------------

def test_run_slurm_runs_every_task_with_its_log(fake_sbatch: Path):
    array = parse_args(["--max-jobs-run", "2", "--num-threads", "4", "--mem", "2GB", "--gpu", "1",
                        "JOB=1:3", "log/s.JOB.log",
                        "echo \"it's JOB\" | tr a-z A-Z; echo '$HOME' `echo JOB`; echo JOB > out.JOB"])
    assert run_slurm(array) == 0
    for job in (1, 2, 3):
        lines = Path(f"log/s.{job}.log").read_text().splitlines()
        assert lines[0] == f"# echo \"it's {job}\" | tr a-z A-Z; echo '$HOME' `echo {job}`; echo {job} > out.{job}"
        assert lines[1].startswith("# Started at ")
        assert lines[3:5] == [f"IT'S {job}", f"$HOME {job}"]
        assert lines[-1].startswith("# Ended (code 0) at ")
        assert Path(f"out.{job}").read_text() == f"{job}\n"  # ran in the submitting directory
    sent = fake_sbatch.read_text().splitlines()
    assert sent[:4] == ["--wait", "--parsable", "--array=1-3%2", "--export=ALL"]
    assert {"--cpus-per-task=4", "--mem=2G", "--gres=gpu:1"} <= set(sent)
    script = Path(sent[-1])
    assert script.parent.resolve() == Path("log/q").resolve() and script.name.startswith("JOB.")


def test_run_slurm_single_job_and_extra_flags(fake_sbatch: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZIPPER_SLURM_OPTS", "--account=abc --qos 'high prio'")
    assert run_slurm(parse_args(["one.log", "echo JOB $((1 + 2))"])) == 0
    assert body(Path("one.log")) == ["JOB 3"]
    sent = fake_sbatch.read_text().splitlines()
    assert "--array=1-1" in sent
    assert sent[-3:-1] == ["--qos", "high prio"] and "--account=abc" in sent


def test_run_slurm_failure_reports_the_failing_log(fake_sbatch: Path, capsys: pytest.CaptureFixture):
    array = parse_args(["JOB=1:3", "log/f.JOB.log", "echo out JOB; [ JOB -ne 3 ] || { echo broken JOB; exit 7; }"])
    assert run_slurm(array) == 1
    err = capsys.readouterr().err
    assert "slurm.pl: 1 / 3 failed, log is in log/f.*.log" in err
    assert "slurm.pl: last lines of log/f.3.log:" in err
    assert "broken 3" in err and "# Ended (code 7)" in err
    assert Path("log/f.3.log.code").read_text() == "7\n"
    assert Path("log/f.1.log.code").read_text() == "0\n"


def test_run_slurm_task_that_never_ran_counts_as_failed(fake_sbatch: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture):
    Path("log").mkdir()
    Path("log/k.2.log.code").write_text("0\n")  # left over from an earlier run: must not count
    monkeypatch.setenv("FAKE_SBATCH_SKIP", "2")
    assert run_slurm(parse_args(["JOB=1:3", "log/k.JOB.log", "true"])) == 1
    err = capsys.readouterr().err
    assert "slurm.pl: 1 / 3 failed" in err and "log/k.2.log" in err


def test_run_slurm_sbatch_rejects(fake_sbatch: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.setenv("FAKE_SBATCH_REJECT", "invalid partition specified: nope")
    assert run_slurm(parse_args(["--partition", "nope", "JOB=1:2", "log/r.JOB.log", "true"])) == 1
    err = capsys.readouterr().err
    assert "slurm.pl: sbatch failed (exit code 1) and no job ran" in err
    assert "invalid partition specified: nope" in err
    assert "--partition=nope" in fake_sbatch.read_text().splitlines()


def test_run_slurm_bad_options(fake_sbatch: Path, capsys: pytest.CaptureFixture):
    assert run_slurm(parse_args(["--colour", "red", "log/x.log", "true"])) == 1
    assert "slurm.pl: unknown option --colour" in capsys.readouterr().err
    assert run_slurm(parse_args(["--gpu", "all", "log/x.log", "true"])) == 1
    assert "--gpu needs a number of GPUs, got 'all'" in capsys.readouterr().err
    assert not fake_sbatch.exists()  # nothing was submitted


def test_run_slurm_without_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert run_slurm(JobArray(None, 1, 1, "x.log", "true", {})) == 1
    assert "slurm.pl: cannot run sbatch" in capsys.readouterr().err
