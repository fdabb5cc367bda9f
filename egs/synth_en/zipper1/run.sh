#!/usr/bin/env bash
# Built-in corpus: synthesised English (espeak-ng + flite voices over Debian text), runs on CPU.
# Stage 11 (vocoder training, ~34 min on 2 cores, and the Whisper judge, ~11 min) is skipped, for the 2-core time
# budget of the main job; run it with   ./run.sh --stage 11 --stop_stage 11 --skip_stages ""
# It learns from train_vocoder, 2.1 h of one voice that local/data.sh makes for it (--vocoder_speaker there,
# fl-rms by default: docs/vocoder.md measured it), so its voice is pinned here too; and from the other voices'
# readings of the same sentences in train_speech, aligned to it by DTW (--vocoder_parallel_set, docs/vocoder.md V13).
set -euo pipefail

./zipper.sh \
    --nj 2 \
    --text_train_set train_text \
    --speech_train_set train_speech \
    --paired_train_sets "train_paired_100pct train_paired_10pct train_paired_1pct" \
    --dev_set dev \
    --test_sets "test" \
    --feats_config conf/feats_whisper.yaml \
    --unit_encoder_config conf/unit_encoder_s.yaml \
    --kmeans_remove_position 0 \
    --n_clusters 256 \
    --text_model_type char \
    --text_vocab_size 36 \
    --speech_tower_config conf/tower_xs.yaml \
    --text_tower_config conf/tower_xs.yaml \
    --zipper_config conf/zipper_xs_rope.yaml \
    --baseline_config conf/vocabexp_xs.yaml \
    --decode_config conf/decode_lexicon.yaml \
    --judge_lexicon data/train_text/text \
    --vocoder_speaker fl-rms \
    --vocoder_train_set train_vocoder \
    --vocoder_parallel_set train_speech \
    --skip_stages 11 \
    "$@"
