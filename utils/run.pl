#!/usr/bin/env bash
# Kaldi run.pl-compatible local job runner: run.pl [--max-jobs-run N] [JOB=1:N] log/x.JOB.log cmd args...
# The logic is in zipper/utils/jobs.py; this name is kept so cmd.sh files and habits carry over.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}" exec python3 -m zipper.bin.run_jobs local "$@"
