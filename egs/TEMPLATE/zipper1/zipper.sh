#!/usr/bin/env bash
# The one stage script behind every Zipper recipe: data -> audio -> features -> k-means -> units -> tokens
# (-> towers -> fusion -> decoding -> vocoder -> scoring).  A recipe's run.sh sets names and configs and
# passes "$@"; every option below can be given as --name value.  Stage numbers are an API: never renumbered.
#
#   1  data prep (local/data.sh)                     data/<set>/
#   2  format audio, filter by duration              dump/audio/<set>/
#   3  features from an s3prl upstream               dump/feats/<feat_tag>/<set>/feats.scp
#      (+ with --unit_encoder_config: a CTC unit encoder on the aligned pairs, and its states as the features
#       stages 4-5 cluster: exp/unit_encoder_<tag>/, dump/feats/<feat_tag>_<tag>/<set>/feats.scp)
#   4  k-means on a portion of the speech set        exp/kmeans/<feat_tag>_k<K>_<hash>/
#   5  semantic units (int32, kaldiio)               dump/units/<km_tag>/<set>/units.scp
#   6  text tokenizer + token lists of both towers   data/token_list/{text_*,speech_<km_tag>}/
#   7  speech-tower pre-training                     exp/tower_speech_<tag>/
#   8  text-tower pre-training (or HF LM import)     exp/tower_text_<tag>/
#   9  Zipper fusion + vocabulary-expansion baseline exp/zipper_<tag>/, exp/vocabexp_<tag>/
#  10  decoding (ASR text, TTS units)                exp/<model>/decode_<task>_<tag>/<set>/
#  11  vocoder, units -> waveform, Whisper judge     exp/vocoder_<tag>/, <decode dir>/wav.scp
#  12  scoring, TTS judge, RESULTS.md, plots         <decode dir>/score_*/, exp/judge_<tag>/, RESULTS.md
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }
SECONDS=0
last_stage=12

help_message="Usage: $0 [options]   (normally called by a recipe's run.sh, which passes its own defaults)"

# <options>
stage=1                   # first stage to run
stop_stage=12             # last stage to run
skip_stages=""            # stages not to run even when in --stage..--stop_stage, e.g. "11"
nj=4                      # parallel jobs for the CPU stages
ngpu=0                    # GPUs to use (0: CPU)
force=false               # redo steps even if their .done marker says they are finished
dumpdir=dump              # where formatted audio, features and units go
expdir=exp                # where experiments (k-means, models) go
local_data_opts=""        # options passed to local/data.sh (stage 1)
text_train_set=train_text         # unpaired text, for the text tower and the text tokenizer
speech_train_set=train_speech     # unpaired speech, for the speech tower and k-means
paired_train_sets="train_paired_100pct train_paired_10pct train_paired_1pct"  # aligned sets, largest first; the others must be its subsets
dev_set=dev               # validation set (paired)
test_sets="test"          # evaluation sets (paired)
fs=16000                  # sample rate of the audio after stage 2
resample=false            # stage 2: convert recordings at another rate (else it is an error)
min_duration=0.3          # stage 2: drop utterances shorter than this (seconds)
max_duration=30           # stage 2: drop utterances longer than this (seconds)
feats_config=conf/feats_mfcc.yaml  # stage 3: s3prl upstream, layer and options (YAML, keys = extract_feats options)
feats_opts=""             # stage 3: extra extract_feats options, e.g. "--upstream_conf '{ckpt: /path/hubert}'"
feat_tag=""               # stage 3: name of the features (default: feats_config's name without feats_ and .yaml)
unit_encoder_config=""    # stage 3: train a CTC unit encoder on the aligned pairs' features and cluster its states
                          #   instead of the features (supervised units, a deviation: docs/learning.md U10); "": off
unit_encoder_tag=""       # stage 3: exp/unit_encoder_<tag> (default: the preset's name without unit_encoder_ + feat_tag)
n_clusters=256            # stage 4: codebook size K (number of speech units)
kmeans_portion=0.1        # stage 4: fraction of the speech set's utterances to fit k-means on
kmeans_max_frames=500000  # stage 4: cap on frames to fit on
kmeans_seed=0             # stage 4: seed of the sample and of k-means
kmeans_algorithm=faiss    # stage 4: faiss or sklearn
kmeans_remove_position=0  # stage 4: subtract what N sinusoids of the frame index predict of a frame (0: off; whisper: 16)
text_vocab_size=1000      # stage 6: sentencepiece vocabulary size (with the 8 reserved slots)
text_model_type=unigram   # stage 6: sentencepiece model type (unigram, bpe, char)
speech_tower_config=conf/tower_s.yaml  # stage 7: tower preset (size + training options; keys = tower_train options)
text_tower_config=conf/tower_s.yaml    # stage 8: the same for the text tower
text_tower_hf_model=""    # stage 8: import this Hugging Face causal LM (name or local dir) as the text tower instead
speech_tower_tag=""       # stage 7: exp/tower_speech_<tag> (default: preset name + k-means tag)
text_tower_tag=""         # stage 8: exp/tower_text_<tag> (default: preset name + tokenizer name, or the HF model)
tower_train_opts=""       # stages 7-8: extra tower_train options, e.g. "--max_epoch 2"
aligned_set=""            # stage 9: the aligned training set (default: the largest of paired_train_sets)
zipper_config=conf/zipper_s.yaml       # stage 9: Zipper preset (intervals, projections, which towers are frozen, ...)
baseline_config=conf/vocabexp_s.yaml   # stage 9: vocabulary-expansion baseline preset ("" to skip the baseline)
zipper_tag=""             # stage 9: exp/zipper_<tag> (default: preset name + aligned set)
baseline_tag=""           # stage 9: exp/vocabexp_<tag> (default: preset name + aligned set)
fusion_train_opts=""      # stage 9: extra zipper_train options for both models
decode_config=conf/decode.yaml         # stage 10: search settings per output modality (text: ASR, speech: TTS)
decode_tasks="asr tts"    # stage 10: what to decode
decode_sets=""            # stage 10: sets to decode (default: dev_set and test_sets)
decode_nj=2               # stage 10: parallel decoding jobs per set
decode_opts=""            # stage 10: extra zipper_inference options
vocoder_config=conf/vocoder_s.yaml  # stage 11: vocoder preset (s: WORLD parameters on CPU; hifigan: unit HiFi-GAN, --ngpu 1)
vocoder_train_set=""      # stage 11: audio + units it learns from (default: speech_train_set); stages 2-5 process it too
vocoder_parallel_set=""   # stage 11: other voices reading vocoder_train_set's sentences (ids <spk>-<sentence>): their
                          # units in, the target voice's frames out, aligned by DTW, as extra training pairs
vocoder_speaker=""        # stage 11: target voice (default: the speaker with most audio)
vocoder_tag=""            # stage 11: exp/vocoder_<tag> (default: preset name + training set + units tag)
vocoder_train_opts=""     # stage 11: extra vocoder_train options
synth_nj=2                # stage 11: parallel synthesis / Whisper jobs per set
whisper_model=base        # stage 11: Whisper judge (packaged base / tiny.en, or a CTranslate2 model dir)
whisper_opts=""           # stage 11: extra whisper_transcribe options (--beam_size, --compute_type)
judge_config=conf/judge_s.yaml  # stage 12: unit-level TTS judge preset (CTC over units; keys = judge_train options)
judge_train_set=""        # stage 12: set the judge learns from (default: the largest of paired_train_sets)
judge_tag=""              # stage 12: exp/judge_<tag> (default: preset name + k-means tag, + _lex with a lexicon)
judge_lexicon=""          # stage 12: a Kaldi text file whose words are the only ones the judge reads (a lexicon beam
                          #   search over its CTC posteriors, e.g. data/<text_train_set>/text); "": greedy spelling
results_file=RESULTS.md   # stage 12: where show_results writes the tables (generated, never hand-edited)
# </options>

invocation="$0$(printf " %q" "$@")"
log "${invocation}"
. utils/parse_options.sh

# First use on a fresh machine: make tools/venv (tools/install.sh is idempotent and quick once done).
main_root=$(cd "$(dirname "$(readlink -f "$0")")/../../.." && pwd)
if [ ! -x "${main_root}/tools/venv/bin/python" ]; then
    log "No tools/venv yet: running tools/install.sh (first use; takes a few minutes)"
    "${main_root}/tools/install.sh"
fi
. ./path.sh
mkdir -p "${expdir}"  # the history of runs over this exp dir, which RESULTS.md shows
printf '%s  # %s\n' "${invocation}" "$(date '+%Y-%m-%dT%H:%M:%S')" >> "${expdir}/commands.log"
. ./cmd.sh

if [ "${stop_stage}" -gt "${last_stage}" ]; then
    log "Error: there is no stage ${stop_stage} (stages are 1-${last_stage})"
    exit 1
fi

[ -n "${feat_tag}" ] || feat_tag=$(basename "${feats_config}" .yaml | sed 's/^feats_//')
km_feat_tag=${feat_tag}  # the features stages 4-5 cluster: the upstream's, or the unit encoder's states of them
if [ -n "${unit_encoder_config}" ]; then
    [ -n "${unit_encoder_tag}" ] || unit_encoder_tag=$(basename "${unit_encoder_config}" .yaml | sed 's/^unit_encoder_//')_${feat_tag}
    unit_encoder_exp=${expdir}/unit_encoder_${unit_encoder_tag}
    km_feat_tag=${feat_tag}_ue_${unit_encoder_tag%_"${feat_tag}"}
fi
eval "feats_opts_array=(${feats_opts})"  # a string of options, quoted as on a command line
read -r -a paired_sets <<< "${paired_train_sets}"
paired_main_set=${paired_sets[0]}
# Sets whose audio is processed; the smaller paired sets reuse the largest one's units.  A vocoder set of its
# own (--vocoder_train_set) is processed with them, so that stage 11 finds its units whenever it is run.
audio_sets="${speech_train_set} ${paired_main_set} ${dev_set} ${test_sets}"
for set in ${vocoder_train_set} ${vocoder_parallel_set}; do
    [[ " ${audio_sets} " == *" ${set} "* ]] || audio_sets="${audio_sets} ${set}"
done
device=cpu; [ "${ngpu}" -gt 0 ] && device=cuda
text_token_dir=data/token_list/text_${text_model_type}${text_vocab_size}
eval "tower_train_opts_array=(${tower_train_opts})"

# A config path is taken relative to the recipe dir, else to the repository (the shared presets in conf/).
resolve_conf() {
    if [ -f "$1" ]; then echo "$1"
    elif [ -f "${MAIN_ROOT}/$1" ]; then echo "${MAIN_ROOT}/$1"
    else log "Error: config $1 not found (in $(pwd) or ${MAIN_ROOT})"; exit 1; fi
}
preset_name() { basename "$1" .yaml | sed 's/^tower_//'; }

run_stage() {  # run_stage <n>: n is within --stage..--stop_stage and not in --skip_stages
    [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ] && [[ " ${skip_stages} " != *" $1 "* ]]
}

done_or_forced() {  # done_or_forced <dir>: true when <dir> is finished and --force is not given
    [ "${force}" != true ] && [ -f "$1/.done" ]
}

# A sharded python step: <max_jobs> jobs through <cmd> (JOB=1:N, one log each), then one merge run whose output
# goes to <log_dir>/<verb>.merge.log (its tail is shown on failure):
#   sharded <cmd> <max_jobs> <log_dir> <n_utts> <module> <args...>
sharded() {
    local cmd=$1 max_jobs=$2 logdir=$3 nutts=$4 module=$5; shift 5
    local _nj; _nj=$(min "${max_jobs}" "${nutts}")
    # The jobs share the cores: torch's default of one thread per core in every job oversubscribes them, and
    # OpenMP threads waiting on each other slowed a 2-job decoding down 10x.  OMP_NUM_THREADS set by the user wins.
    local threads=$(( $(nproc) / _nj )); [ "${threads}" -ge 1 ] || threads=1
    mkdir -p "${logdir}"
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-${threads}} ${cmd} JOB=1:"${_nj}" "${logdir}/${module##*.}.JOB.log" \
        python -m "${module}" "$@" --nj "${_nj}" --job JOB
    python -m "${module}" "$@" --nj "${_nj}" --merge true > "${logdir}/${module##*.}.merge.log" 2>&1 || {
        log "Error: merging failed; see ${logdir}/${module##*.}.merge.log:"; tail -n 20 "${logdir}/${module##*.}.merge.log"; exit 1; }
}

num_utts() { wc -l < "$1"; }

# A training CLI into <exp_dir> (its log: <exp_dir>/train.log), unless that experiment is done; resumes an
# interrupted one, starts over with --force:   train_once <exp_dir> <module> <args...>
train_once() {
    local exp=$1 module=$2; shift 2
    if done_or_forced "${exp}"; then log "  ${exp} is done"; return 0; fi
    local resume=true; [ "${force}" = true ] && resume=false
    mkdir -p "${exp}"
    ${cuda_cmd} --gpu "${ngpu}" "${exp}/train.log" python -m "${module}" "$@" \
        --output_dir "${exp}" --ngpu "${ngpu}" --resume "${resume}"
}

[ -n "${aligned_set}" ] || aligned_set=${paired_main_set}
[ -n "${decode_sets}" ] || decode_sets="${dev_set} ${test_sets}"
eval "fusion_train_opts_array=(${fusion_train_opts})"
eval "decode_opts_array=(${decode_opts})"
eval "vocoder_train_opts_array=(${vocoder_train_opts})"
eval "whisper_opts_array=(${whisper_opts})"
if [ -n "${text_tower_hf_model}" ]; then
    [ -n "${text_tower_tag}" ] || text_tower_tag=hf_$(basename "${text_tower_hf_model}")
else
    [ -n "${text_tower_tag}" ] || text_tower_tag=$(preset_name "${text_tower_config}")_$(basename "${text_token_dir}")
fi
text_exp=${expdir}/tower_text_${text_tower_tag}
[ -n "${zipper_tag}" ] || zipper_tag=$(basename "${zipper_config}" .yaml | sed 's/^zipper_//')_${aligned_set}
zipper_exp=${expdir}/zipper_${zipper_tag}
if [ -n "${baseline_config}" ]; then
    [ -n "${baseline_tag}" ] || baseline_tag=$(basename "${baseline_config}" .yaml | sed 's/^vocabexp_//')_${aligned_set}
    baseline_exp=${expdir}/vocabexp_${baseline_tag}
else
    baseline_exp=""
fi
speech_exp_of() {  # the speech tower experiment for k-means tag $1
    local tag=${speech_tower_tag}
    [ -n "${tag}" ] || tag=$(preset_name "${speech_tower_config}")_$1
    echo "${expdir}/tower_speech_${tag}"
}

if run_stage 1; then
    log "Stage 1: data preparation: local/data.sh ${local_data_opts} -> data/"
    # shellcheck disable=SC2086
    local/data.sh ${local_data_opts}
fi

if run_stage 2; then
    log "Stage 2: format audio at ${fs} Hz, keep ${min_duration}-${max_duration} s: data/<set> -> ${dumpdir}/audio/<set>"
    for set in ${audio_sets}; do
        out=${dumpdir}/audio/${set}
        if done_or_forced "${out}"; then log "  ${out} is done"; continue; fi
        [ "${force}" = true ] && rm -rf "${out}/split"* "${out}/.done"
        sharded "${train_cmd}" "${nj}" "${out}/log" "$(num_utts "data/${set}/wav.scp")" zipper.bin.format_audio \
            --in_dir "data/${set}" --out_dir "${out}" --fs "${fs}" --resample "${resample}" \
            --min_duration "${min_duration}" --max_duration "${max_duration}"
        log "  ${out}: $(num_utts "${out}/wav.scp") utterances"
    done
fi

if run_stage 3; then
    log "Stage 3: features (${feats_config}): ${dumpdir}/audio/<set> -> ${dumpdir}/feats/${feat_tag}/<set>"
    for set in ${audio_sets}; do
        out=${dumpdir}/feats/${feat_tag}/${set}
        if done_or_forced "${out}"; then log "  ${out} is done"; continue; fi
        [ "${force}" = true ] && rm -rf "${out}/split"* "${out}/.done"
        sharded "${train_cmd}" "${nj}" "${out}/log" "$(num_utts "${dumpdir}/audio/${set}/wav.scp")" zipper.bin.extract_feats \
            --config "${feats_config}" --data_dir "${dumpdir}/audio/${set}" --out_dir "${out}" --device "${device}" \
            ${feats_opts:+"${feats_opts_array[@]}"}
        log "  ${out}/feats.scp: $(num_utts "${out}/feats.scp") utterances"
    done
    if [ -n "${unit_encoder_config}" ]; then
        log "  unit encoder (${unit_encoder_config}) on ${paired_main_set}: -> ${unit_encoder_exp}"
        train_once "${unit_encoder_exp}" zipper.bin.train_unit_encoder --config "$(resolve_conf "${unit_encoder_config}")" \
            --train_feats "${dumpdir}/feats/${feat_tag}/${paired_main_set}" --train_text "data/${paired_main_set}" \
            --valid_feats "${dumpdir}/feats/${feat_tag}/${dev_set}" --valid_text "data/${dev_set}"
        log "  ${unit_encoder_exp}: $(tr -d '\n ' < "${unit_encoder_exp}/.done")"
        for set in ${audio_sets}; do
            out=${dumpdir}/feats/${km_feat_tag}/${set}
            if done_or_forced "${out}"; then log "  ${out} is done"; continue; fi
            [ "${force}" = true ] && rm -f "${out}/.done"
            ${train_cmd} "${out}/log/encode_feats.log" python -m zipper.bin.encode_feats \
                --encoder_dir "${unit_encoder_exp}" --feats_dir "${dumpdir}/feats/${feat_tag}/${set}" --out_dir "${out}"
            log "  ${out}/feats.scp: $(num_utts "${out}/feats.scp") utterances"
        done
    fi
fi

kmeans_opts=(--feats_dir "${dumpdir}/feats/${km_feat_tag}/${speech_train_set}" --feat_tag "${km_feat_tag}"
             --exp_root "${expdir}/kmeans" --n_clusters "${n_clusters}" --portion "${kmeans_portion}"
             --max_frames "${kmeans_max_frames}" --seed "${kmeans_seed}" --algorithm "${kmeans_algorithm}"
             --remove_position "${kmeans_remove_position}")
km_tag() { python -m zipper.bin.train_kmeans "${kmeans_opts[@]}" --print_tag true; }

if run_stage 4; then
    km_dir=${expdir}/kmeans/$(km_tag)
    log "Stage 4: k-means K=${n_clusters} on ${kmeans_portion} of ${speech_train_set}: -> ${km_dir}"
    if done_or_forced "${km_dir}"; then
        log "  ${km_dir} is done"
    else
        rm -f "${km_dir}/.done"
        mkdir -p "${km_dir}"
        ${train_cmd} "${km_dir}/train.log" python -m zipper.bin.train_kmeans "${kmeans_opts[@]}"
        log "  ${km_dir}: $(tr -d '\n ' < "${km_dir}/.done")"
    fi
fi

if run_stage 5; then
    km=$(km_tag)
    log "Stage 5: units (${km}): ${dumpdir}/feats/${km_feat_tag}/<set> -> ${dumpdir}/units/${km}/<set>"
    for set in ${audio_sets}; do
        out=${dumpdir}/units/${km}/${set}
        if done_or_forced "${out}"; then log "  ${out} is done"; continue; fi
        [ "${force}" = true ] && rm -rf "${out}/split"* "${out}/.done"
        sharded "${train_cmd}" "${nj}" "${out}/log" "$(num_utts "${dumpdir}/feats/${km_feat_tag}/${set}/feats.scp")" zipper.bin.dump_units \
            --feats_dir "${dumpdir}/feats/${km_feat_tag}/${set}" --kmeans_dir "${expdir}/kmeans/${km}" --out_dir "${out}"
    done
    for set in "${paired_sets[@]:1}"; do
        out=${dumpdir}/units/${km}/${set}
        if done_or_forced "${out}"; then log "  ${out} is done"; continue; fi
        python -m zipper.bin.subset_units --src_dir "${dumpdir}/units/${km}/${paired_main_set}" \
            --data_dir "data/${set}" --out_dir "${out}"
    done
fi

if run_stage 6; then
    km=$(km_tag)
    log "Stage 6: token lists: data/${text_train_set}/text -> ${text_token_dir}; ${km} -> data/token_list/speech_${km}"
    python -m zipper.bin.train_text_tokenizer --text "data/${text_train_set}/text" --out_dir "${text_token_dir}" \
        --vocab_size "${text_vocab_size}" --model_type "${text_model_type}" --force "${force}"
    unit_dirs=()
    for set in ${audio_sets} "${paired_sets[@]:1}"; do unit_dirs+=("${dumpdir}/units/${km}/${set}"); done
    python -m zipper.bin.make_unit_token_list --kmeans_dir "${expdir}/kmeans/${km}" \
        --out_dir "data/token_list/speech_${km}" --units_dirs "${unit_dirs[@]}" --force "${force}"
fi

if run_stage 7; then
    km=$(km_tag)
    speech_exp=$(speech_exp_of "${km}")
    log "Stage 7: speech tower: ${dumpdir}/units/${km}/${speech_train_set} -> ${speech_exp}"
    train_once "${speech_exp}" zipper.bin.tower_train \
        --config "$(resolve_conf "${speech_tower_config}")" --modality speech \
        --train_data "${dumpdir}/units/${km}/${speech_train_set}" --valid_data "${dumpdir}/units/${km}/${dev_set}" \
        --token_list "data/token_list/speech_${km}" ${tower_train_opts:+"${tower_train_opts_array[@]}"}
    log "  $(grep -h "dev perplexity" "${speech_exp}/train.log" | tail -n 1)"
fi

if run_stage 8; then
    if [ -n "${text_tower_hf_model}" ]; then
        text_opts=(--tower hf --hf_model "${text_tower_hf_model}" --max_epoch 0)
    else
        text_opts=(--config "$(resolve_conf "${text_tower_config}")" --token_list "${text_token_dir}")
    fi
    log "Stage 8: text tower: data/${text_train_set} -> ${text_exp}"
    train_once "${text_exp}" zipper.bin.tower_train \
        "${text_opts[@]}" --modality text --train_data "data/${text_train_set}" --valid_data "data/${dev_set}" \
        ${tower_train_opts:+"${tower_train_opts_array[@]}"}
    log "  $(grep -h "dev perplexity" "${text_exp}/train.log" | tail -n 1)"
fi

if run_stage 9; then
    km=$(km_tag)
    speech_exp=$(speech_exp_of "${km}")
    log "Stage 9: fusion on ${aligned_set}: ${speech_exp} + ${text_exp} -> ${zipper_exp}${baseline_exp:+, ${text_exp} -> ${baseline_exp}}"
    for model_exp in ${zipper_exp} ${baseline_exp}; do
        if [ "${model_exp}" = "${zipper_exp}" ]; then model_config=${zipper_config}; else model_config=${baseline_config}; fi
        train_once "${model_exp}" zipper.bin.zipper_train \
            --config "$(resolve_conf "${model_config}")" --text_tower_exp "${text_exp}" --speech_tower_exp "${speech_exp}" \
            --speech_token_list "data/token_list/speech_${km}" \
            --train_units "${dumpdir}/units/${km}/${aligned_set}" --train_text "data/${aligned_set}" \
            --valid_units "${dumpdir}/units/${km}/${dev_set}" --valid_text "data/${dev_set}" \
            ${fusion_train_opts:+"${fusion_train_opts_array[@]}"}
        log "  $(grep -h "^${model_exp}: " "${model_exp}/train.log" | tail -n 1)"
    done
fi

if run_stage 10; then
    km=$(km_tag)
    decode_tag=$(basename "${decode_config}" .yaml)
    log "Stage 10: decoding (${decode_tasks}) of ${decode_sets}: ${zipper_exp}${baseline_exp:+ ${baseline_exp}} -> <exp>/decode_<task>_${decode_tag}/<set>"
    for model_exp in ${zipper_exp} ${baseline_exp}; do
        for task in ${decode_tasks}; do
            for set in ${decode_sets}; do
                out=${model_exp}/decode_${task}_${decode_tag}/${set}
                if done_or_forced "${out}"; then log "  ${out} is done"; continue; fi
                [ "${force}" = true ] && rm -rf "${out}/split"* "${out}/.done"
                sharded "${decode_cmd}" "${decode_nj}" "${out}/log" "$(num_utts "data/${set}/text")" \
                    zipper.bin.zipper_inference --exp_dir "${model_exp}" --task "${task}" \
                    --units_dir "${dumpdir}/units/${km}/${set}" --data_dir "data/${set}" --output_dir "${out}" \
                    --decode_config "$(resolve_conf "${decode_config}")" --device "${device}" \
                    ${decode_opts:+"${decode_opts_array[@]}"}
                log "  $(tail -n 1 "${out}/log/zipper_inference.merge.log" | sed 's/^.*INFO: //')"
            done
        done
    done
fi

if run_stage 11; then
    km=$(km_tag)
    decode_tag=$(basename "${decode_config}" .yaml)
    [ -n "${vocoder_train_set}" ] || vocoder_train_set=${speech_train_set}
    [ -n "${vocoder_tag}" ] || vocoder_tag=$(basename "${vocoder_config}" .yaml | sed 's/^vocoder_//')_${vocoder_train_set}${vocoder_parallel_set:+_${vocoder_parallel_set}}_${km}
    vocoder_exp=${expdir}/vocoder_${vocoder_tag}
    wj=judge_whisper_$(basename "${whisper_model}")
    log "Stage 11: vocoder ${dumpdir}/{audio,units/${km}}/${vocoder_train_set} -> ${vocoder_exp}; units -> wav/; Whisper judge (${whisper_model})"
    train_once "${vocoder_exp}" zipper.bin.vocoder_train \
        --config "$(resolve_conf "${vocoder_config}")" \
        --train_units "${dumpdir}/units/${km}/${vocoder_train_set}" --train_audio "${dumpdir}/audio/${vocoder_train_set}" \
        --valid_units "${dumpdir}/units/${km}/${dev_set}" --valid_audio "${dumpdir}/audio/${dev_set}" \
        --target_speaker "${vocoder_speaker}" ${vocoder_parallel_set:+--parallel_units "${dumpdir}/units/${km}/${vocoder_parallel_set}" \
            --parallel_audio "${dumpdir}/audio/${vocoder_parallel_set}" --parallel_centroids "${expdir}/kmeans/${km}/centroids.npy"} \
        ${vocoder_train_opts:+"${vocoder_train_opts_array[@]}"}
    log "  $(grep -h "^${vocoder_exp}: " "${vocoder_exp}/train.log" | tail -n 1)"
    synth() {  # synth <units_dir> <out_dir>: units.scp -> <out_dir>/wav/*.wav + wav.scp
        if [ "${force}" != true ] && [ -f "$2/.done.synthesis" ]; then return 0; fi
        sharded "${decode_cmd}" "${synth_nj}" "$2/log" "$(num_utts "$1/units.scp")" zipper.bin.vocoder_synthesize \
            --vocoder_dir "${vocoder_exp}" --units_dir "$1" --output_dir "$2" --dedup auto --device "${device}"
    }
    judge() {  # judge <wav.scp> <out_dir> <set> [<target text>]: Whisper transcripts, scored against
               # data/<set>/text (score_wer/) and, for TTS, against Whisper on vocoded gold units (score_wer_target/)
        if done_or_forced "$2"; then return 0; fi
        sharded "${decode_cmd}" "${synth_nj}" "$2/log" "$(num_utts "$1")" zipper.bin.whisper_transcribe \
            --wav_scp "$1" --output_dir "$2" --model "${whisper_model}" --ref_text "data/$3/text" --score_name "$3" \
            ${4:+--target_text "$4"} ${whisper_opts:+"${whisper_opts_array[@]}"}
        log "  $(tail -n 1 "$2/log/whisper_transcribe.merge.log")"
    }
    for set in ${decode_sets}; do
        synth "${dumpdir}/units/${km}/${set}" "${vocoder_exp}/resynth_${set}"                       # vocoded gold units
        judge "${vocoder_exp}/resynth_${set}/wav.scp" "${vocoder_exp}/resynth_${set}/${wj}" "${set}"  # the oracle row
        judge "${dumpdir}/audio/${set}/wav.scp" "${expdir}/${wj}/recordings_${set}" "${set}"          # original audio
    done
    for model_exp in ${zipper_exp} ${baseline_exp}; do
        for set in ${decode_sets}; do
            d=${model_exp}/decode_tts_${decode_tag}/${set}
            [ -f "${d}/units.scp" ] || continue
            v=${d}/vocoded_${vocoder_tag}  # each vocoder's audio apart: a second vocoder never reuses the first's
            synth "${d}" "${v}"
            judge "${v}/wav.scp" "${v}/${wj}" "${set}" "${vocoder_exp}/resynth_${set}/${wj}/text"
        done
    done
fi

if run_stage 12; then
    km=$(km_tag)
    decode_tag=$(basename "${decode_config}" .yaml)
    [ -n "${judge_train_set}" ] || judge_train_set=${paired_main_set}
    [ -n "${judge_tag}" ] || judge_tag=$(basename "${judge_config}" .yaml | sed 's/^judge_//')_${km}${judge_lexicon:+_lex}
    judge_exp=${expdir}/judge_${judge_tag}
    log "Stage 12: scoring of ${decode_sets} (ASR WER; TTS by the unit judge ${judge_exp}) -> <decode dir>/score_*, ${results_file}"
    if [[ " ${decode_tasks} " == *" tts "* ]]; then
        train_once "${judge_exp}" zipper.bin.judge_train \
            --config "$(resolve_conf "${judge_config}")" \
            --train_units "${dumpdir}/units/${km}/${judge_train_set}" --train_text "data/${judge_train_set}" \
            --valid_units "${dumpdir}/units/${km}/${dev_set}" --valid_text "data/${dev_set}" \
            ${judge_lexicon:+--lexicon "${judge_lexicon}"}
        log "  $(tail -n 1 "${judge_exp}/train.log")"
    fi
    for model_exp in ${zipper_exp} ${baseline_exp}; do
        for task in ${decode_tasks}; do
            for set in ${decode_sets}; do
                dir=${model_exp}/decode_${task}_${decode_tag}/${set}
                [ -f "${dir}/.done" ] || { log "Error: ${dir} is not decoded: run stage 10 first"; exit 1; }
                score_dir=${dir}/score_wer; [ "${task}" = tts ] && score_dir=${dir}/score_unit_gold
                if done_or_forced "${score_dir}"; then log "  ${score_dir} is done"; continue; fi
                [ "${force}" = true ] && rm -rf "${dir}"/score_unit_* "${dir}"/score_wer "${dir}"/judge_unit
                python -m zipper.bin.score --decode_dir "${dir}" --judge_exp "${judge_exp}" --device "${device}" \
                    > "${dir}/log/score.log" 2>&1 || { log "Error: see ${dir}/log/score.log"; tail -n 20 "${dir}/log/score.log"; exit 1; }
                log "  $(tail -n 1 "${dir}/log/score.log")"
            done
        done
        # what fusion cost each tower: its modality alone, before vs after (the baseline has no speech LM)
        modalities="text speech"; [ "${model_exp}" = "${baseline_exp}" ] && modalities=text
        for modality in ${modalities}; do
            out=${model_exp}/fused_lm_${modality}.json
            if [ -f "${out}" ] && [ "${force}" != true ]; then continue; fi
            data=data/${dev_set}; [ "${modality}" = speech ] && data=${dumpdir}/units/${km}/${dev_set}
            python -m zipper.bin.lm_score --exp_dir "${model_exp}" --modality "${modality}" --data "${data}" \
                --device "${device}" --output "${out}" > "${model_exp}/log_lm_score_${modality}.log" 2>&1 || {
                log "Error: see ${model_exp}/log_lm_score_${modality}.log"; tail -n 20 "${model_exp}/log_lm_score_${modality}.log"; exit 1; }
        done
    done
    python -m zipper.bin.show_results --exp_root "${expdir}" --output "${results_file}" --command "${invocation}"
    log "  ${results_file} written"
fi

if [ "${stop_stage}" -ge 6 ]; then
    km=$(km_tag)
    log "Outputs:"
    log "  data dirs:        data/{${text_train_set},${speech_train_set},${paired_train_sets// /,},${dev_set},${test_sets// /,}}"
    log "  audio:            ${dumpdir}/audio/<set>/wav.scp"
    log "  features:         ${dumpdir}/feats/${feat_tag}/<set>/feats.scp"
    if [ -n "${unit_encoder_config}" ]; then
        log "  unit encoder:     ${unit_encoder_exp}/ (scores.json, images/); its states: ${dumpdir}/feats/${km_feat_tag}/<set>/feats.scp"
    fi
    log "  k-means:          ${expdir}/kmeans/${km}/ (centroids.npy, cluster_sizes.png)"
    log "  units:            ${dumpdir}/units/${km}/<set>/units.scp"
    log "  text tokens:      ${text_token_dir}/{sentencepiece.model,tokens.txt}"
    log "  speech tokens:    data/token_list/speech_${km}/tokens.txt"
    if [ "${stop_stage}" -ge 7 ]; then log "  speech tower:     $(speech_exp_of "${km}")/ (valid.loss.ave.pth, scores.json, images/)"; fi
    if [ "${stop_stage}" -ge 8 ]; then log "  text tower:       ${text_exp}/ (scores.json, images/)"; fi
    if [ "${stop_stage}" -ge 9 ]; then log "  fused models:     ${zipper_exp}/${baseline_exp:+ and ${baseline_exp}/} (gates.json, scores.json)"; fi
    if [ "${stop_stage}" -ge 10 ]; then log "  decodings:        <model exp>/decode_<task>_${decode_tag:-decode}/<set>/{text,units.scp}"; fi
    if [ "${stop_stage}" -ge 12 ]; then log "  scores:           <decode dir>/score_wer/result.txt (ASR), score_unit_{gold,target}/ (TTS); ${results_file}"; fi
fi
log "Successfully finished stages ${stage}-${stop_stage} in ${SECONDS}s [elapsed]"
