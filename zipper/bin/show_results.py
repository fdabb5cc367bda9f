"""Stage 12: write a recipe's RESULTS.md from its experiment dirs (generated, never hand-edited).

Every table is re-derived on every run from what the stages left in exp/ (zipper/scoring/results.py), so the
file always matches the experiment dirs.  Diagnostics kept under exp/ are left out by name (`--exclude`).
"""

from __future__ import annotations

from typing import Sequence

from zipper.scoring.results import DEFAULT_EXCLUDE, render
from zipper.utils.atomic import atomic_write_text
from zipper.utils.cli import make_parser, parse_and_setup, run_main


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--exp_root", default="exp", help="the recipe's experiment dir")
    parser.add_argument("--output", default="RESULTS.md", help="file to write")
    parser.add_argument("--title", default="", help="heading (default: the recipe dir name)")
    parser.add_argument("--command", default="", help="the command that produced the experiments (shown verbatim)")
    parser.add_argument("--test_sets", nargs="*", default=None,
                        help="sets for the study table/plot (default: every scored set except dev)")
    parser.add_argument("--exclude", nargs="*", default=list(DEFAULT_EXCLUDE),
                        help="glob patterns of experiment dir names to leave out (none: `--exclude` alone)")
    return parser


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_and_setup(get_parser(), argv)
    text = render(args.exp_root, args.output, title=args.title, command=args.command, test_sets=args.test_sets,
                  exclude=args.exclude)
    atomic_write_text(args.output, text)
    print(f"wrote {args.output}")
    return text


if __name__ == "__main__":
    run_main(main, expected_errors=(FileNotFoundError, ValueError, KeyError))
