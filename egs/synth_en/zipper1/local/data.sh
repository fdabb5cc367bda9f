#!/usr/bin/env bash
# Stage 1 of the synth_en recipe: English sentences from Debian text packages, read by espeak-ng and flite,
# allocated to disjoint sets (see README.md).  Run from egs/synth_en/zipper1; `local/data.sh --help` lists
# the options.  Resumable (existing wavs are kept); a finished run is a no-op unless --force true.
set -e
set -o pipefail

# <options>
nj=2                                   # parallel synthesis jobs
seed=777                               # seed of the sentence and voice allocation
local_dir=data/local/synth_en          # sentence pool (cache), voices.txt, utt2source, plans, logs
data_dir=data                          # where the Kaldi data directories go
wav_dir=                               # where the wavs go (<spk>/<utt>.wav); empty: ${SYNTH_EN}/wav (db.sh)
sources=bible,fortunes,gcide,wordnet   # text sources of the sentence pool (their paths: db.sh)
min_words=5                            # shortest sentence kept (words)
max_words=20                           # longest sentence kept (words)
min_word_count=2                       # drop sentences with a word seen fewer times in the whole pool
max_vocab=2000                         # keep sentences whose words are all among the N most frequent (0: all)
engines=espeak,flite                   # synthesizers
heldout_voices=8                       # voices heard only in test (at least one per engine)
flite_share=0.2                        # share of each set's utterances read by flite voices
train_text_words=70000                 # words of unpaired text (train_text)
train_speech_utts=7000                 # utterances of unpaired speech (train_speech)
train_paired_utts=3500                 # utterances of paired speech+text (train_paired_100pct)
paired_fractions=0.1,0.01              # nested subsets of train_paired_100pct (train_paired_10pct, _1pct)
dev_utts=300                           # dev utterances (seen voices)
test_utts=400                          # test utterances
test_heldout_share=0.5                 # share of test read by held-out voices
vocoder_utts=2500                      # train_vocoder: the vocoder's voice reads this many train_speech sentences again
vocoder_speaker=fl-rms                 # that voice (stage 11's --vocoder_speaker; 0 utterances: no train_vocoder)
force=false                            # redo everything: rebuild the pool, resynthesise every wav
allow_overlap=false                    # true: only warn when a training set shares utterances or audio with dev/test
# </options>

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (local/data.sh) $*"; }

[ -f ./path.sh ] && . ./path.sh
[ -f ./cmd.sh ] && . ./cmd.sh
[ -f ./db.sh ] && . ./db.sh
. utils/parse_options.sh || exit 1
set -u
[ -n "${wav_dir}" ] || wav_dir=${SYNTH_EN:-downloads/synth_en}/wav
FORTUNES=${FORTUNES:-/usr/share/games/fortunes}
GCIDE=${GCIDE:-/usr/share/dictd/gcide.dict.dz}
WORDNET=${WORDNET:-/usr/share/wordnet}
BIBLE_CMD=${BIBLE_CMD:-bible}
if [ $# -ne 0 ]; then
    echo "Usage: $0 [--nj 2] [--force true] [options]   (see $0 --help)" >&2
    exit 1
fi

start=${SECONDS}
opts=(--local_dir "${local_dir}" --data_dir "${data_dir}" --wav_dir "${wav_dir}" --seed "${seed}"
      --sources "${sources}" --fortune_dir "${FORTUNES}" --gcide "${GCIDE}" --wordnet_dir "${WORDNET}"
      --bible_cmd "${BIBLE_CMD}" --min_words "${min_words}" --max_words "${max_words}"
      --min_word_count "${min_word_count}" --max_vocab "${max_vocab}" --engines "${engines}" --heldout_voices "${heldout_voices}"
      --flite_share "${flite_share}" --train_text_words "${train_text_words}"
      --train_speech_utts "${train_speech_utts}" --train_paired_utts "${train_paired_utts}"
      --paired_fractions "${paired_fractions}" --dev_utts "${dev_utts}" --test_utts "${test_utts}"
      --test_heldout_share "${test_heldout_share}" --vocoder_utts "${vocoder_utts}" --vocoder_speaker "${vocoder_speaker}")

if [ "${force}" != true ] && python -m zipper.bin.prepare_synth_en "${opts[@]}" --check_done true; then
    log "synth_en is already complete with these options (${local_dir}/.done.synth_en); --force true redoes it"
    cat "${local_dir}/summary.txt"
    exit 0
fi

log "1/4 sentence pool, voices, set allocation and synthesis plan"
python -m zipper.bin.prepare_synth_en "${opts[@]}" --nj "${nj}" --force "${force}"

log "2/4 synthesis: ${nj} jobs, logs in ${local_dir}/log/synth.*.log"
synth_start=${SECONDS}
${train_cmd} JOB=1:"${nj}" "${local_dir}/log/synth.JOB.log" \
    python -m zipper.bin.synthesize_synth_en "${local_dir}/split${nj}/plan.JOB.tsv"
grep -h "synthesised" "${local_dir}"/log/synth.*.log | sed 's/^.*INFO: /  /' || true
log "synthesis took $((SECONDS - synth_start)) s"

log "3/4 data directories"
python -m zipper.bin.finish_synth_en --local_dir "${local_dir}" > /dev/null

log "4/4 validation"
# the sets finish_synth_en wrote are the first column of its summary; the training sets (paired and unpaired
# speech) must share no utterance, recording or audio content with an evaluation set (dev, test)
set_names=$(awk 'NR > 1 {print $1}' "${local_dir}/summary.txt")
disjoint=(--allow_overlap "${allow_overlap}")
for set_name in ${set_names}; do
    case "${set_name}" in
        train_*) ;;
        *) disjoint+=(--disjoint_from "${data_dir}/${set_name}") ;;
    esac
done
for set_name in ${set_names}; do
    case "${set_name}" in
        train_text) python -m zipper.bin.validate_data_dir --no_wav "${data_dir}/${set_name}" ;;
        train_speech|train_vocoder) python -m zipper.bin.validate_data_dir --no_text "${disjoint[@]}" "${data_dir}/${set_name}" ;;
        train_*) python -m zipper.bin.validate_data_dir "${disjoint[@]}" "${data_dir}/${set_name}" ;;
        *) python -m zipper.bin.validate_data_dir "${data_dir}/${set_name}" ;;
    esac
done

log "synth_en done in $((SECONDS - start)) s; sets (hours of audio, words of text):"
cat "${local_dir}/summary.txt"
