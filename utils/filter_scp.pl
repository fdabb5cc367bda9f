#!/usr/bin/env bash
# Kaldi filter_scp.pl-compatible: filter_scp.pl [--exclude] [-f N] idlist [in.scp] > out
# Prints the lines of in.scp whose N-th field is (not, with --exclude) an id of idlist.  Logic: zipper/bin/filter_scp.py.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}" exec python3 -m zipper.bin.filter_scp "$@"
