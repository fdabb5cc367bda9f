#!/usr/bin/env bash
# Kaldi slurm.pl-compatible runner: same arguments as run.pl, each job array submitted with `sbatch --wait`.
# Queue options: --num-threads, --mem, --gpu, --time, --partition; more sbatch flags in $ZIPPER_SLURM_OPTS.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}" exec python3 -m zipper.bin.run_jobs slurm "$@"
