#!/usr/bin/env bash
# Make tools/venv with everything the recipes need, without letting pip trade our torch for a CUDA build.
#
# Usage: tools/install.sh [--python python3] [--venv tools/venv] [--system_packages auto|yes|no] [--force]
#
# Why it is not one `pip install`:
#  * espnet pins setuptools<74 while torch 2.13 needs setuptools>=77.0.3; left to itself pip "solves" that by
#    downgrading torch to a CUDA build (GBs).  We install espnet's dependency list ourselves, without that pin,
#    then espnet with --no-deps, all under a constraints file that holds torch where it is.
#  * torchaudio has no CPU build on PyPI.  Its pure-Python parts (compliance.kaldi, functional, transforms) work
#    on a CPU torch; its compiled extension does not load there, so on a CPU-only torch we remove it.
#  * s3prl 0.4.18 declares torchaudio/transformers ranges that would move torch; it goes in with --no-deps and
#    zipper.tokens.s3prl_compat patches the two torchaudio APIs it still calls.
# A torch that the base interpreter already has (say the user's own CUDA build) is kept: the venv then sees the
# system site-packages and the constraint pins that version.
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "${tools_dir}")

python=python3              # interpreter the venv is made from
venv=${tools_dir}/venv      # where the venv goes
system_packages=auto        # install espeak-ng/flite/sox + Debian text packages: auto (if missing), yes, no
torch_version=2.13.0        # torch to install when the base interpreter has none
espnet_version=202511       # espnet release (installed with --no-deps)
torchaudio_version=2.11.0   # torchaudio release (pure-Python parts used on CPU torch)
s3prl_version=0.4.18        # s3prl release (installed with --no-deps)
force=false                 # redo every step even if its stamp says it is done

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --python) python=$2; shift 2 ;;
        --venv) venv=$2; shift 2 ;;
        --system_packages) system_packages=$2; shift 2 ;;
        --torch_version) torch_version=$2; shift 2 ;;
        --force) force=true; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "$0: unknown option '$1'" >&2; usage >&2; exit 1 ;;
    esac
done

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (install.sh) $*"; }
die() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (install.sh) ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------------------
# 1. Debian packages: synthesizers for the built-in corpus and the text it is drawn from.
# ---------------------------------------------------------------------------------------------------------
apt_packages="espeak-ng flite sox fortunes bible-kjv dict-gcide wordnet-base"
missing_system() {
    local missing=""
    command -v espeak-ng >/dev/null || missing+=" espeak-ng"
    command -v flite >/dev/null || missing+=" flite"
    command -v sox >/dev/null || missing+=" sox"
    [ -d /usr/share/games/fortunes ] || missing+=" fortunes"
    command -v bible >/dev/null || missing+=" bible-kjv"
    [ -f /usr/share/dictd/gcide.dict.dz ] || missing+=" dict-gcide"
    [ -f /usr/share/wordnet/data.noun ] || missing+=" wordnet-base"
    echo "${missing}"
}
if [ "${system_packages}" != no ]; then
    missing=$(missing_system)
    if [ -n "${missing}" ] || [ "${system_packages}" = yes ]; then
        log "Debian packages missing:${missing:- none (forced)}"
        if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
        if [ "${sudo}" = none ] || ! command -v apt-get >/dev/null; then
            die "cannot install${missing} (needs root and apt-get). Ask an administrator to run:
    apt-get install -y ${apt_packages}
or re-run with --system_packages no if you only use your own corpora (the built-in synth_en recipe needs them)."
        fi
        ${sudo} apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed; trying the install anyway"
        DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq ${apt_packages} >/dev/null \
            || die "apt-get install ${apt_packages} failed"
        missing=$(missing_system)
        [ -z "${missing}" ] || die "still missing after apt-get:${missing}"
    fi
    log "Debian packages: ok"
fi

# ---------------------------------------------------------------------------------------------------------
# 2. The venv, with the base interpreter's torch if it has one.
# ---------------------------------------------------------------------------------------------------------
"${python}" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
    || die "${python} must be Python >= 3.10"
system_torch=$("${python}" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
stamp_dir=${venv}/.zipper_install
if [ "${force}" = true ] && [ -d "${venv}" ]; then
    log "--force: removing ${venv}"
    rm -rf "${venv}"
fi
if [ ! -x "${venv}/bin/python" ]; then
    if [ -n "${system_torch}" ]; then
        log "base interpreter has torch ${system_torch}: the venv will use it (--system-site-packages)"
        "${python}" -m venv --system-site-packages "${venv}"
    else
        "${python}" -m venv "${venv}"
    fi
fi
mkdir -p "${stamp_dir}"
vpy=${venv}/bin/python
pip() { "${vpy}" -m pip --disable-pip-version-check -q "$@" 2>&1 | { grep -v -E "is ignored: it is neither" || true; }; return "${PIPESTATUS[0]}"; }
done_step() { [ -f "${stamp_dir}/$1" ] && [ "$(cat "${stamp_dir}/$1")" = "$2" ]; }

step_key="pip-setuptools<81"
if ! done_step base "${step_key}"; then
    log "upgrading pip, setuptools (<81: pyworld imports pkg_resources), wheel"
    pip install -U pip "setuptools>=77.0.3,<81" wheel
    echo "${step_key}" > "${stamp_dir}/base"
fi

if [ -z "$("${vpy}" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)" ]; then
    log "installing torch==${torch_version}"
    pip install "torch==${torch_version}"
fi
torch_installed=$("${vpy}" -c 'import torch; print(torch.__version__)' 2>/dev/null)
torch_cuda=$("${vpy}" -c 'import torch; print(int(torch.version.cuda is not None))' 2>/dev/null)
log "torch ${torch_installed} (CUDA build: ${torch_cuda})"

constraints=${stamp_dir}/constraints.txt
printf 'torch==%s\nsetuptools<81\n' "${torch_installed}" > "${constraints}"

# ---------------------------------------------------------------------------------------------------------
# 3. Python dependencies under the torch constraint, then the --no-deps packages.
# ---------------------------------------------------------------------------------------------------------
req_hash=$(cat "${tools_dir}/requirements.txt" "${constraints}" | cksum | cut -d' ' -f1)
if ! done_step requirements "${req_hash}"; then
    log "installing tools/requirements.txt (constrained: torch==${torch_installed})"
    pip install -c "${constraints}" -r "${tools_dir}/requirements.txt"
    echo "${req_hash}" > "${stamp_dir}/requirements"
fi

nodeps_key="espnet==${espnet_version} s3prl==${s3prl_version} torchaudio==${torchaudio_version}"
if ! done_step nodeps "${nodeps_key}"; then
    log "installing espnet==${espnet_version} and s3prl==${s3prl_version} with --no-deps"
    pip install -c "${constraints}" --no-deps "espnet==${espnet_version}"
    pip install -c "${constraints}" --no-deps --no-build-isolation "s3prl==${s3prl_version}"
    if ! "${vpy}" -c 'import torchaudio' >/dev/null 2>&1; then
        log "installing torchaudio==${torchaudio_version} with --no-deps"
        pip install -c "${constraints}" --no-deps "torchaudio==${torchaudio_version}"
        if ! "${vpy}" -c 'import torchaudio' >/dev/null 2>&1; then
            ta_lib=$("${vpy}" -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("torchaudio").origin), "lib"))')
            if [ "${torch_cuda}" = 0 ]; then
                log "torchaudio's compiled extension does not load on this CPU torch: removing ${ta_lib}/*.so" \
                    "(compliance.kaldi, functional and transforms keep working; use soundfile for audio I/O)"
                rm -f "${ta_lib}"/*.so
            else
                die "torchaudio ${torchaudio_version} does not import on torch ${torch_installed}; install the torchaudio matching your torch, then re-run"
            fi
        fi
    fi
    echo "${nodeps_key}" > "${stamp_dir}/nodeps"
fi

log "installing the zipper package (editable)"
pip install -c "${constraints}" --no-deps --no-build-isolation -e "${repo_dir}"

# ---------------------------------------------------------------------------------------------------------
# 4. Check that what the stages import imports.
# ---------------------------------------------------------------------------------------------------------
log "checking imports"
"${vpy}" - <<'PY' || die "the venv is incomplete: see the traceback above"
import importlib
from zipper.tokens import s3prl_compat
s3prl_compat.ensure()  # must precede s3prl
for name in ["torch", "torchaudio.compliance.kaldi", "kaldiio", "sentencepiece", "jiwer", "yaml", "soundfile",
             "faiss", "sklearn.cluster", "espnet2.tasks.abs_task", "espnet2.train.trainer",
             "s3prl.upstream.baseline.hubconf", "transformers", "zipper", "espnet2.gan_tts.hifigan",
             "faster_whisper", "ctranslate2", "flashlight.lib.text.decoder"]:
    importlib.import_module(name)
from zipper.scoring.whisper_judge import packaged_model_available
for model in ("base", "tiny.en"):
    assert packaged_model_available(model), f"the packaged Whisper model {model} is not installed"
print("imports ok")
PY
log "done: activate with '. ${venv}/bin/activate' (recipes do it in path.sh)"
