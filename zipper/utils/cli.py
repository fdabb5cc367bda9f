"""What every `python -m zipper.bin.<verb>` shares: argument types, the log-level option, error reporting.

Each bin module defines `get_parser() -> argparse.ArgumentParser` and `main(argv: list[str] | None = None)`,
as ESPnet's `espnet2/bin/*` do, so tests call `main([...])` directly and `--help` documents every option.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from zipper.utils.log import setup_logging


def str2bool(value: str) -> bool:
    lowered = str(value).lower()
    if lowered in ("true", "yes", "1", "y", "t"):
        return True
    if lowered in ("false", "no", "0", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def make_parser(description: str) -> argparse.ArgumentParser:
    """A parser whose --help shows defaults, with --log_level added."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging verbosity")
    return parser


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None,
             expected_errors: tuple[type[BaseException], ...] = ()) -> None:
    """Run a bin's main; an expected error (bad input) prints one clear message and exits 1, no traceback."""
    try:
        main(argv)
    except expected_errors as e:
        logging.getLogger("zipper").error("%s", e)
        sys.exit(1)


def parse_and_setup(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    return args
