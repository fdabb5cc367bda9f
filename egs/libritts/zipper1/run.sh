#!/usr/bin/env bash
# LibriTTS (TTS; 24 kHz audio resampled to 16 kHz in stage 2; speech tower on LibriLight or LibriTTS audio).
# Corpus roots and the HuBERT checkpoint are set in db.sh.
set -euo pipefail
. ./db.sh

if [ -n "${HUBERT_CKPT}" ]; then
    feats=(--feats_config conf/feats_hubert.yaml --feats_opts "--upstream_conf '{ckpt: ${HUBERT_CKPT}}'")
else
    echo "$0: HUBERT_CKPT is not set in db.sh: using MFCC units (set it for units that mean something)" >&2
    feats=(--feats_config conf/feats_mfcc.yaml)
fi

./zipper.sh \
    --nj 8 \
    --text_train_set train_text \
    --speech_train_set train_speech \
    --paired_train_sets "train_paired_100pct train_paired_10pct train_paired_1pct" \
    --dev_set dev \
    --test_sets "test" \
    "${feats[@]}" \
    --n_clusters 1024 \
    --kmeans_portion 0.1 \
    --max_duration 35 \
    --resample true \
    --text_vocab_size 5000 \
    "$@"
