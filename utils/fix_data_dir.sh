#!/usr/bin/env bash
# Kaldi fix_data_dir.sh-compatible: fix_data_dir.sh DIR
# Keeps the utterances in every file, sorts, regenerates spk2utt; originals go to DIR/.backup/.
# Logic: zipper/bin/fix_data_dir.py (zipper.data.kaldi_dir.fix_data_dir).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}" exec python3 -m zipper.bin.fix_data_dir "$@"
