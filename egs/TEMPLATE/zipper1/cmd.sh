# Which job runner the stages use.  run.pl runs jobs on this machine; slurm.pl submits them as slurm job
# arrays (extra sbatch flags: export ZIPPER_SLURM_OPTS="--partition=gpu --account=me").
cmd_backend=local   # local | slurm

if [ "${cmd_backend}" = local ]; then
    train_cmd="run.pl"
    cuda_cmd="run.pl"
    decode_cmd="run.pl"
elif [ "${cmd_backend}" = slurm ]; then
    train_cmd="slurm.pl --mem 4G"
    cuda_cmd="slurm.pl --mem 16G --gpu 1"
    decode_cmd="slurm.pl --mem 4G"
else
    echo "$0: unknown cmd_backend '${cmd_backend}' in cmd.sh" >&2
    return 1
fi
