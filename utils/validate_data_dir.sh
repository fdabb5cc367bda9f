#!/usr/bin/env bash
# Kaldi validate_data_dir.sh-compatible check: validate_data_dir.sh [--no-text] [--no-wav] [--check-audio] [--fs N]
#   [--disjoint-from EVAL_DIR]... [--allow-overlap] DIR...
# Translates Kaldi's dashed flags to zipper/bin/validate_data_dir.py, which does the checking.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage="Usage: $(basename "$0") [options] <data-dir> [<data-dir> ...]
Checks Kaldi data directories (sorted unique keys, utt2spk/spk2utt agreement, speaker-prefixed utterance ids
that sort the same way by speaker, every file covering the same utterances); exits 1 naming every problem.
Options:
  --no-text       the directory has no text (unpaired speech)
  --no-wav        the directory has no wav.scp (unpaired text)
  --check-audio   also open every recording
  --fs <N>        with --check-audio: the sample rate every recording must have
  --disjoint-from <dir>   an evaluation set that must share no utterance id, recording or audio content with
                  the DIRs (training sets); repeat for several
  --allow-overlap with --disjoint-from: only warn about shared utterances instead of failing
  --no-feats, --non-print   accepted for Kaldi compatibility (feats.scp is never required; no effect)"
args=()
dirs=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) echo "${usage}"; exit 0 ;;
        --no-text) args+=(--no_text) ;;
        --no-wav) args+=(--no_wav) ;;
        --check-audio) args+=(--check_audio true) ;;
        --fs=*) args+=(--fs "${1#--fs=}") ;;
        --fs)
            if [ $# -lt 2 ]; then echo "$(basename "$0"): --fs needs a value" >&2; exit 1; fi
            args+=(--fs "$2"); shift ;;
        --disjoint-from=*) args+=(--disjoint_from "${1#--disjoint-from=}") ;;
        --disjoint-from)
            if [ $# -lt 2 ]; then echo "$(basename "$0"): --disjoint-from needs a value" >&2; exit 1; fi
            args+=(--disjoint_from "$2"); shift ;;
        --allow-overlap) args+=(--allow_overlap true) ;;
        --no-feats|--non-print) ;;
        -*) args+=("$1") ;;  # zipper's own spelling (--check_audio true, --log_level DEBUG) or an error there
        *) args+=("$1"); dirs=$((dirs + 1)) ;;
    esac
    shift
done
if [ "${dirs}" -eq 0 ]; then
    echo "${usage}" >&2
    exit 1
fi
PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}" exec python3 -m zipper.bin.validate_data_dir "${args[@]}"
