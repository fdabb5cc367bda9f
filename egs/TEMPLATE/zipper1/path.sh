# Environment every recipe sources: the venv made by tools/install.sh, this repo's utils/, C-locale sorting.
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
export MAIN_ROOT
export LC_ALL=C                      # Kaldi data dirs are sorted by bytes
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1            # logs appear as they are written
export PATH="${MAIN_ROOT}/utils:${PATH}"
if [ -f "${MAIN_ROOT}/tools/venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "${MAIN_ROOT}/tools/venv/bin/activate"
fi
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
