#!/usr/bin/env bash
# Run the test suite, making tools/venv first if it is missing: tools/test.sh [pytest options]
# e.g. tools/test.sh -x -k kaldi_dir   |   tools/test.sh tests/unit
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -x "${root}/tools/venv/bin/python" ]; then
    echo "tools/test.sh: no tools/venv yet, running tools/install.sh first" >&2
    "${root}/tools/install.sh"
fi
# shellcheck disable=SC1091
. "${root}/tools/venv/bin/activate"
cd "${root}"
export LC_ALL=C PYTHONIOENCODING=UTF-8
exec python -m pytest "$@"
