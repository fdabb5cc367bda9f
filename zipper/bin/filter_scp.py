"""Print the lines of an scp whose key (or N-th field) is in an id list, as Kaldi's utils/filter_scp.pl does.

utils/filter_scp.pl [--exclude] [-f N] idlist [in.scp]
Keeps the lines of in.scp (stdin when left out or '-') whose N-th field (1-based, default 1) is the first field of
some line of idlist, or with --exclude is not; their order and text are kept as they are.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from zipper.data.kaldi_dir import DataDirError, split_fields, filter_lines, read_lines
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main


def get_parser():
    parser = make_parser(__doc__)
    parser.prog = "utils/filter_scp.pl"
    parser.add_argument("--exclude", action="store_true", help="keep the lines whose field is NOT in idlist")
    parser.add_argument("-f", dest="field", type=positive_int, default=1, metavar="N",
                        help="which field of in.scp to look up (1-based)")
    parser.add_argument("idlist", help="file whose first field on each line is an id")
    parser.add_argument("scp", nargs="?", default="-", help="file to filter ('-': stdin)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    ids = {fields[0] for fields in map(split_fields, read_lines(args.idlist)) if fields}
    if args.scp == "-":
        lines = read_lines("<stdin>", sys.stdin.buffer.read())
    else:
        lines = read_lines(args.scp)
    try:
        kept = filter_lines(lines, ids, exclude=args.exclude, field=args.field - 1, source=args.scp)
    except ValueError as e:
        raise DataDirError(str(e)) from e
    try:
        sys.stdout.buffer.write("".join(line + "\n" for line in kept).encode("utf-8"))
        sys.stdout.flush()
    except BrokenPipeError:  # `filter_scp.pl ... | head` is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    run_main(main, expected_errors=(DataDirError, OSError))
