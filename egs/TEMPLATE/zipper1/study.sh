#!/usr/bin/env bash
# The data-efficiency study of the paper (PAPER.md §3): Zipper with the speech tower unfrozen and frozen, and
# the single-decoder (vocabulary-expansion) baseline, each fine-tuned on every aligned fraction, decoded for
# ASR and TTS and scored; plus ablations on one fraction.  Every run is the recipe's own run.sh (stages 9-12
# with another --aligned_set / --zipper_config), so each experiment is an ordinary exp/ dir; at the end
# RESULTS.md is regenerated from all of them, with the table and plot of WER against the aligned fraction.
# Stages 1-8 (data, units, towers) are run first if they have not been (they are shared by every run).
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
help_message="Usage: $0 [options]   (a recipe's run_study.sh passes its own defaults)"

# <options>
run_script=./run.sh        # the recipe's run.sh (stages are run through it, with its corpus options)
run_opts=""                # options for every run.sh call, e.g. "--ngpu 1 --speech_tower_config conf/tower_m.yaml"
aligned_sets="train_paired_1pct train_paired_10pct train_paired_100pct"  # aligned fractions, as data sets
zipper_configs="conf/zipper_s.yaml conf/zipper_s_frozen.yaml"  # Zipper variants run on every fraction
baseline_config=conf/vocabexp_s.yaml   # the single-decoder baseline, on every fraction ("" to skip)
ablation_configs="conf/zipper_s_no_text_inproj.yaml conf/zipper_s_interval3.yaml"  # Zipper ablations, one fraction
ablation_set=train_paired_100pct       # the fraction the ablations are trained on
small_set_fusion_opts=""  # extra stage-9 options for every aligned set but the last (largest) of --aligned_sets,
                          # e.g. "--num_iters_per_epoch 20 --max_epoch 50": the same updates, validated (and the
                          # checkpoint chosen on dev) 5x as often, since a small set is memorised within 100 updates
decode_sets=test           # sets decoded and scored in the study
results_file=RESULTS.md    # regenerated at the end from every experiment in exp/
# </options>
invocation="$0$(printf " %q" "$@")"
log "${invocation}"
. utils/parse_options.sh
. ./path.sh
mkdir -p exp  # the history of runs over exp/ (zipper.sh appends its own runs), which RESULTS.md shows
printf '%s  # %s\n' "${invocation}" "$(date '+%Y-%m-%dT%H:%M:%S')" >> exp/commands.log
eval "run_opts_array=(${run_opts})"

run() {  # run <stage> <stop_stage> [options]: the recipe's stages with the study's shared options
    local first=$1 last=$2; shift 2
    "${run_script}" --stage "${first}" --stop_stage "${last}" ${run_opts:+"${run_opts_array[@]}"} "$@"
}

log "Stages 1-8 (shared by every run of the study; a no-op when done)"
run 1 8

largest=${aligned_sets##* }
for aligned in ${aligned_sets}; do
    baseline=${baseline_config}
    extra=()
    if [ "${aligned}" != "${largest}" ] && [ -n "${small_set_fusion_opts}" ]; then
        extra=(--fusion_train_opts "${small_set_fusion_opts}")
    fi
    for config in ${zipper_configs}; do
        log "Study: $(basename "${config}" .yaml)${baseline:+ and $(basename "${baseline}" .yaml)} on ${aligned}"
        run 9 12 --aligned_set "${aligned}" --zipper_config "${config}" --baseline_config "${baseline}" \
            --decode_sets "${decode_sets}" --results_file "${results_file}" ${extra[@]+"${extra[@]}"}
        baseline=""  # the baseline does not depend on the Zipper variant: once per fraction
    done
done
for config in ${ablation_configs}; do
    log "Ablation: $(basename "${config}" .yaml) on ${ablation_set}"
    run 9 12 --aligned_set "${ablation_set}" --zipper_config "${config}" --baseline_config "" \
        --decode_sets "${decode_sets}" --results_file "${results_file}"
done

python -m zipper.bin.show_results --exp_root exp --output "${results_file}" --command "${invocation}" \
    --test_sets ${decode_sets}
log "Study done in ${SECONDS}s: ${results_file} and images/wer_vs_aligned.png"
