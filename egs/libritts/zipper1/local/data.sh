#!/usr/bin/env bash
# Stage 1 for LibriTTS: the corpora named in db.sh -> Kaldi data dirs under data/ (audio stays 24 kHz; stage 2
# resamples when the recipe asks for it):
#   dev, test, dev_other, test_other   dev-clean, test-clean, dev-other, test-other (paired; the last two only
#                                      when present)
#   train_paired_{100,10,1}pct         paired training data from --train_subsets; 1pct is inside 10pct is
#                                      inside 100pct (--paired_fractions)
#   train_speech                       unpaired speech: Libri-Light when LIBRILIGHT is set, else the audio of
#                                      the LibriTTS training subsets (no text)
#   train_text                         unpaired text: LIBRISPEECH_LM_TEXT when set, else the normalized text of
#                                      the training subsets not used as paired data; no dev/test sentence in it
# Utterance ids use '-' (19-198-000000-000000) so that Kaldi sorting works; utterances without (or with an
# empty) .normalized.txt are left out and counted.  The work is done by python -m zipper.bin.prepare_libritts.
# A finished set has a .done marker, so a re-run skips it (--force true redoes it); every set is validated at
# the end.
set -eo pipefail

help_message="Usage: local/data.sh [options]   (run in egs/libritts/zipper1; corpus paths come from db.sh)"

# <options>
nj=4                 # processes reading audio headers for utt2dur
train_subsets="train-clean-100 train-clean-360"  # LibriTTS subsets used as paired data
paired_fractions="1.0 0.1 0.01"  # fractions of the paired data, each a train_paired_<N>pct set (nested)
seed=1               # seed of the paired-fraction and unpaired-text sampling
max_text_sentences=2000000  # unpaired sentences kept (a seeded random sample; 0 keeps all)
text_subsets=""      # without LIBRISPEECH_LM_TEXT: subsets whose text is the unpaired text (empty: the training subsets not in train_subsets)
speech_subsets=""    # without LIBRILIGHT: subsets whose audio is the unpaired speech (empty: every training subset present)
librilight_subsets=""  # with LIBRILIGHT: Libri-Light subsets to use (empty: every one of small medium large present)
extra_eval_subsets="dev-other test-other"  # also prepared as evaluation sets (dev_other, test_other) when present
exclude_utts=""      # file of utterance ids (or wav paths) to leave out, e.g. a LibriTTS-R list of bad samples
data_dir=data        # where the data dirs go
force=false          # true: redo sets that are already prepared
allow_overlap=false  # true: only warn when a training set shares utterances or recordings with dev/test
# </options>

. ./path.sh
. ./db.sh
. utils/parse_options.sh
set -u

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') (data.sh) $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ $# -ne 0 ]; then
    echo "${help_message}" >&2
    die "unexpected arguments: $*"
fi

if [ -z "${LIBRITTS}" ]; then
    die "LIBRITTS is empty: set it in db.sh to the LibriTTS directory holding train-clean-100/, dev-clean/, ... (https://www.openslr.org/60)"
elif [ ! -d "${LIBRITTS}" ]; then
    die "LIBRITTS=${LIBRITTS} (db.sh) is not a directory: set it in db.sh to the LibriTTS directory holding train-clean-100/, dev-clean/, ..."
fi
if [ -n "${LIBRISPEECH_LM_TEXT}" ] && [ ! -f "${LIBRISPEECH_LM_TEXT}" ]; then
    die "LIBRISPEECH_LM_TEXT=${LIBRISPEECH_LM_TEXT} (db.sh) is not a file: set it in db.sh to librispeech-lm-norm.txt (https://www.openslr.org/11), or leave it empty"
fi
if [ -n "${LIBRILIGHT}" ] && [ ! -d "${LIBRILIGHT}" ]; then
    die "LIBRILIGHT=${LIBRILIGHT} (db.sh) is not a directory: set it in db.sh to the Libri-Light directory holding small/ medium/ large/, or leave it empty"
fi
if [ -n "${exclude_utts}" ] && [ ! -f "${exclude_utts}" ]; then
    die "--exclude_utts ${exclude_utts}: no such file"
fi
[ -n "${LIBRISPEECH_LM_TEXT}" ] || log "LIBRISPEECH_LM_TEXT is not set in db.sh: the unpaired text will be the normalized text of the LibriTTS training subsets not used as paired data"
[ -n "${LIBRILIGHT}" ] || log "LIBRILIGHT is not set in db.sh: the unpaired speech will be the LibriTTS training audio"

log "preparing data dirs in ${data_dir}/ from ${LIBRITTS}"
sets=$(python -m zipper.bin.prepare_libritts \
    --libritts "${LIBRITTS}" \
    --exclude_utts "${exclude_utts}" \
    --lm_text "${LIBRISPEECH_LM_TEXT}" \
    --librilight "${LIBRILIGHT}" \
    --librilight_subsets "${librilight_subsets}" \
    --train_subsets "${train_subsets}" \
    --paired_fractions "${paired_fractions}" \
    --text_subsets "${text_subsets}" \
    --speech_subsets "${speech_subsets}" \
    --extra_eval_subsets "${extra_eval_subsets}" \
    --max_text_sentences "${max_text_sentences}" \
    --seed "${seed}" \
    --nj "${nj}" \
    --force "${force}" \
    --allow_overlap "${allow_overlap}" \
    --out_dir "${data_dir}")

# Validate every set (text-only and speech-only sets have no wav.scp / text), then show what there is.  The
# training sets (paired and unpaired speech) must share no utterance, recording or audio content with an
# evaluation set (dev, test, ...): each evaluation set is a --disjoint_from of their validation.
paired=()
evals=()
disjoint=()
texts=()
speech=()
while read -r name kind; do
    case "${kind}" in
        paired)
            case "${name}" in
                train_*) paired+=("${data_dir}/${name}") ;;
                *) evals+=("${data_dir}/${name}"); disjoint+=(--disjoint_from "${data_dir}/${name}") ;;
            esac ;;
        text) texts+=("${data_dir}/${name}") ;;
        speech) speech+=("${data_dir}/${name}") ;;
        *) die "unexpected line from prepare_libritts: '${name} ${kind}'" ;;
    esac
done <<< "${sets}"
echo "Data dirs:"
python -m zipper.bin.validate_data_dir --summary true "${evals[@]}"
python -m zipper.bin.validate_data_dir --summary true --allow_overlap "${allow_overlap}" "${disjoint[@]}" "${paired[@]}"
python -m zipper.bin.validate_data_dir --summary true --allow_overlap "${allow_overlap}" "${disjoint[@]}" \
    --no_text "${speech[@]}"
python -m zipper.bin.validate_data_dir --summary true --no_wav "${texts[@]}"
