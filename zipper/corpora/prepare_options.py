"""Stage 1 options that the LibriSpeech and LibriTTS preparations share, and their console output."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from zipper.corpora.librispeech import CorpusError, PrepOptions, eval_set_name
from zipper.utils.cli import non_negative_int, positive_int, str2bool


def add_common_options(parser: argparse.ArgumentParser, train_subsets: Sequence[str]) -> None:
    """Options LibriSpeech and LibriTTS share (prepare_libritts uses this too)."""
    parser.add_argument("--out_dir", default="data", help="where the data directories are written")
    parser.add_argument("--train_subsets", default=" ".join(train_subsets),
                        help="space-separated subsets whose speech and text are the paired training data")
    parser.add_argument("--paired_fractions", default="1.0 0.1 0.01",
                        help="space-separated fractions of the paired data; each makes train_paired_<N>pct, "
                             "and a smaller one is a subset of a larger one")
    parser.add_argument("--speech_subsets", default="",
                        help="space-separated training subsets whose audio is the unpaired speech when no "
                             "Libri-Light is given; empty: every training subset present")
    parser.add_argument("--text_subsets", default="",
                        help="space-separated subsets whose transcripts are the unpaired text when no --lm_text "
                             "is given; empty: the training subsets present that are not in --train_subsets")
    parser.add_argument("--lm_text", default="",
                        help="unpaired text, one sentence a line (librispeech-lm-norm.txt, or the .gz, from "
                             "openslr.org/11); empty: use --text_subsets")
    parser.add_argument("--librilight", default="",
                        help="Libri-Light root (<root>/<small|medium|large>/<speaker>/<book>/<file>.flac) for "
                             "the unpaired speech; empty: use --speech_subsets")
    parser.add_argument("--librilight_subsets", default="",
                        help="space-separated Libri-Light subsets; empty: every one of small medium large present")
    parser.add_argument("--dev_subset", default="dev-clean", help="subset that becomes the 'dev' set")
    parser.add_argument("--test_subset", default="test-clean", help="subset that becomes the 'test' set")
    parser.add_argument("--extra_eval_subsets", default="dev-other test-other",
                        help="space-separated subsets also prepared as evaluation sets when present "
                             "(dev-other -> dev_other)")
    parser.add_argument("--max_text_sentences", type=non_negative_int, default=2_000_000,
                        help="keep a seeded random sample of this many unpaired sentences (0: keep all)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the paired-fraction and text sampling")
    parser.add_argument("--nj", type=positive_int, default=4,
                        help="processes reading audio headers for utt2dur")
    parser.add_argument("--force", type=str2bool, default=False, help="redo sets that are already prepared")
    parser.add_argument("--allow_overlap", type=str2bool, default=False,
                        help="only warn (instead of failing) when a training subset shares utterances or "
                             "recordings with an evaluation subset")


def options_from_args(args: argparse.Namespace) -> PrepOptions:
    try:
        fractions = [float(f) for f in args.paired_fractions.split()]
    except ValueError as e:
        raise CorpusError(f"--paired_fractions '{args.paired_fractions}': {e}") from e
    return PrepOptions(
        out_dir=Path(args.out_dir),
        train_subsets=args.train_subsets.split(),
        eval_subsets={"dev": args.dev_subset, "test": args.test_subset},
        extra_eval_subsets={eval_set_name(s): s for s in args.extra_eval_subsets.split()},
        speech_subsets=args.speech_subsets.split() or None,
        text_subsets=args.text_subsets.split() or None,
        lm_text=Path(args.lm_text) if args.lm_text else None,
        librilight=Path(args.librilight) if args.librilight else None,
        librilight_subsets=args.librilight_subsets.split() or None,
        paired_fractions=fractions,
        seed=args.seed,
        max_text_sentences=args.max_text_sentences,
        nj=args.nj,
        force=args.force,
        allow_overlap=args.allow_overlap,
    )


def log_header(name: str, config: dict[str, object]) -> None:
    """Command line and options (not zipper.utils.log.log_run_header: its environment probe imports torch,
    which would triple the run time of a step that never uses it)."""
    log = logging.getLogger(name)
    log.info("command: %s", " ".join([Path(sys.executable).name, "-m", name] + sys.argv[1:]))
    for key, value in config.items():
        log.info("config: %s=%s", key, value)


def print_sets(made: Sequence[tuple[str, str]]) -> None:
    for name, kind in made:
        sys.stdout.write(f"{name} {kind}\n")
    sys.stdout.flush()
