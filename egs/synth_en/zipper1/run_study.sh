#!/usr/bin/env bash
# The data-efficiency study on the built-in corpus (1 % / 10 % / 100 % aligned data x Zipper speech-unfrozen,
# Zipper speech-frozen, single-decoder baseline, plus ablations: no text input projection, cross layers every 2nd
# block, one cross layer, no cross-attention positions = the paper's f_cross): ./run_study.sh [study.sh options]
# The 1 % and 10 % sets (35 and 350 pairs) are validated every 20 updates instead of 100, the same 1,000 updates:
# they are learnt by heart within the first 100, and the checkpoint is chosen on dev.
# On a GPU: ./run_study.sh --run_opts "--ngpu 1 --speech_tower_config conf/tower_m.yaml ..."
set -euo pipefail

./study.sh \
    --run_script ./run.sh \
    --aligned_sets "train_paired_1pct train_paired_10pct train_paired_100pct" \
    --zipper_configs "conf/zipper_xs_rope.yaml conf/zipper_xs_rope_frozen.yaml" \
    --baseline_config conf/vocabexp_xs.yaml \
    --ablation_configs "conf/zipper_xs_rope_no_text_inproj.yaml conf/zipper_xs_rope_interval2.yaml conf/zipper_xs_rope_1cross.yaml conf/zipper_xs.yaml" \
    --decode_sets test \
    --small_set_fusion_opts "--num_iters_per_epoch 20 --max_epoch 50" \
    "$@"
