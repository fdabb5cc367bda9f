#!/usr/bin/env bash
# Make a new recipe dir wired to the shared stage script: egs/TEMPLATE/zipper1/setup.sh egs/<corpus>/zipper1
# It links zipper.sh, path.sh and utils/, copies cmd.sh, and writes a run.sh, a db.sh and a local/data.sh to fill in.
set -euo pipefail
if [ $# -ne 1 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
    sed -n '2,3p' "$0" | sed 's/^# //'
    [ $# -eq 1 ] && [ "$1" != --help ] && [ "$1" != -h ] && exit 1
    exit 0
fi
target=$1
template=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
if [ -e "${target}" ]; then
    echo "$0: ${target} already exists; refusing to overwrite it" >&2
    exit 1
fi
mkdir -p "${target}/local" "${target}/conf"
rel() { python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$2"; }
ln -s "$(rel "${template}/zipper.sh" "${target}")" "${target}/zipper.sh"
ln -s "$(rel "${template}/path.sh" "${target}")" "${target}/path.sh"
ln -s "$(rel "${template}/study.sh" "${target}")" "${target}/study.sh"
ln -s "$(rel "${template}/../../../utils" "${target}")" "${target}/utils"
cp "${template}/cmd.sh" "${target}/cmd.sh"
cp "${template}/../../synth_en/zipper1/conf/feats_mfcc.yaml" "${target}/conf/feats_mfcc.yaml"
cat > "${target}/db.sh" <<'DB'
# Where this recipe's corpus is (read by local/data.sh); an exported value wins over the default.
CORPUS=${CORPUS:-}
DB
cat > "${target}/local/data.sh" <<'DATA'
#!/usr/bin/env bash
# Stage 1: write Kaldi data dirs data/{train_text,train_speech,train_paired_100pct,train_paired_10pct,
# train_paired_1pct,dev,test} from the corpus in db.sh, then validate them (utils/validate_data_dir.sh), the
# training sets with --disjoint-from data/dev --disjoint-from data/test (no utterance of dev/test in training).
set -euo pipefail
# <options>
nj=4   # parallel jobs
# </options>
. ./path.sh
. ./db.sh
. utils/parse_options.sh
echo "$0: write the data preparation of this corpus here (see egs/librispeech/zipper1/local/data.sh)" >&2
exit 1
DATA
chmod +x "${target}/local/data.sh"
cat > "${target}/run.sh" <<'RUN'
#!/usr/bin/env bash
set -euo pipefail

./zipper.sh \
    --nj 4 \
    --feats_config conf/feats_mfcc.yaml \
    "$@"
RUN
chmod +x "${target}/run.sh"
echo "made ${target}: fill in db.sh and local/data.sh, then run ./run.sh"
