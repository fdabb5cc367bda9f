#!/usr/bin/env bash
# Built-in corpus: synthesised English (espeak-ng + flite voices over Debian text), runs on CPU.
set -euo pipefail

./zipper.sh \
    --nj 2 \
    --text_train_set train_text \
    --speech_train_set train_speech \
    --paired_train_sets "train_paired_100pct train_paired_10pct train_paired_1pct" \
    --dev_set dev \
    --test_sets "test" \
    --feats_config conf/feats_mfcc.yaml \
    --n_clusters 256 \
    --text_vocab_size 1000 \
    "$@"
