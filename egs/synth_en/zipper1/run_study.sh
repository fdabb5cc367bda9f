#!/usr/bin/env bash
# The data-efficiency study on the built-in corpus (1 % / 10 % / 100 % aligned data x Zipper speech-unfrozen,
# Zipper speech-frozen, single-decoder baseline, plus ablations): ./run_study.sh [study.sh options]
# On a GPU: ./run_study.sh --run_opts "--ngpu 1 --speech_tower_config conf/tower_m.yaml ..."
set -euo pipefail

./study.sh \
    --run_script ./run.sh \
    --aligned_sets "train_paired_1pct train_paired_10pct train_paired_100pct" \
    --decode_sets test \
    "$@"
