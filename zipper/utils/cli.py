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


def non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {value!r}")
    return number


def yaml_value(value: str):
    """An option value given as YAML on the command line: `--upstream_conf '{ckpt: /x.pt}'`."""
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise argparse.ArgumentTypeError(f"not valid YAML: {value!r} ({e})")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help keeps the module docstring's lines (its example commands) and shows every option's default."""


def make_parser(description: str, config: bool = False) -> argparse.ArgumentParser:
    """A parser whose --help shows defaults, with --log_level; with `config`, also --config / --print_config.

    --config FILE: a YAML file whose keys are option names (ESPnet's convention); the command line overrides
    it.  --print_config: print the fully resolved options as YAML and exit (redirect it to start a new config).
    """
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging verbosity")
    if config:
        parser.add_argument("--config", default=None, help="YAML file of option values (keys = option names)")
        parser.add_argument("--print_config", action="store_true", help="print the resolved options and exit")
    return parser


class ConfigError(ValueError):
    pass


def load_config_defaults(parser: argparse.ArgumentParser, path: str) -> None:
    """Set parser defaults from a YAML config file, refusing keys that are not options."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}")
    parser.set_defaults(**config)
    for action in parser._actions:  # a required option the config gives is given (the replay run.sh relies on it)
        if action.dest in config:
            action.required = False


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None,
             expected_errors: tuple[type[BaseException], ...] = ()) -> None:
    """Run a bin's main; an expected error (bad input) prints one clear message and exits 1, no traceback."""
    try:
        main(argv)
    except expected_errors as e:
        logging.getLogger("zipper").error("%s", e)
        sys.exit(1)


def parse_and_setup(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse (applying --config first when the parser has it), set up logging, honour --print_config."""
    if any(action.dest == "config" for action in parser._actions):
        config_only = argparse.ArgumentParser(add_help=False)  # the full parser would stop at required options
        config_only.add_argument("--config", default=None)
        pre, _ = config_only.parse_known_args(argv)
        if pre.config:
            try:
                load_config_defaults(parser, pre.config)
            except ConfigError as e:
                parser.error(str(e))
    args = parser.parse_args(argv)
    if getattr(args, "print_config", False):
        import yaml

        resolved = {k: v for k, v in vars(args).items() if k not in ("config", "print_config", "log_level")}
        sys.stdout.write(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
        sys.exit(0)
    setup_logging(args.log_level)
    return args
