#!/usr/bin/env bash
# Speed of training and decoding on this machine (python -m zipper.bin.benchmark): our tower, a Zipper of the
# same total size and the same-size HF Llama (tokens/s, MFU, peak memory; eager and compiled); decoding with
# our caches, without, and with HF generate (batch 1 and 32); the Zipper ASR real-time factor.  Run from a
# recipe dir (egs/<corpus>/zipper1); every option is the Python module's (local/benchmark.sh --help).
# The table is also written to exp/benchmark/<date>.txt (and every figure to <date>.json).
#   local/benchmark.sh                                    # CUDA: sizes m and l; CPU: size s, a few minutes
#   local/benchmark.sh --sizes s --num_threads 1 --compile true
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
for arg in "$@"; do
    if [ "${arg}" = --help ] || [ "${arg}" = -h ]; then
        exec python -m zipper.bin.benchmark --help
    fi
done
out_dir=exp/benchmark
mkdir -p "${out_dir}"
stamp=$(date +%Y%m%dT%H%M%S)
python -m zipper.bin.benchmark --output_json "${out_dir}/${stamp}.json" "$@" | tee "${out_dir}/${stamp}.txt"
echo "$0: table in ${out_dir}/${stamp}.txt" >&2
