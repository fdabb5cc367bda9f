#!/usr/bin/env bash
# Kaldi split_scp.pl-compatible: split_scp.pl [--utt2spk=FILE] in.scp out1 out2 ...  (or -j N K in.scp)
# Contiguous, balanced parts; with --utt2spk a speaker stays in one part.  Logic: zipper/bin/split_scp.py.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}" exec python3 -m zipper.bin.split_scp "$@"
