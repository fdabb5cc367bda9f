"""Plan the synth_en corpus: sentence pool, voices, disjoint sets, one synthesis plan per job.

Writes under --local_dir: sentences.tsv (+ sentences.json; the cached pool), voices.txt, utt2source,
config.json, plan.tsv and split<nj>/plan.<j>.tsv; under --data_dir: the text-only set train_text.  The speech
sets are written by finish_synth_en once synthesize_synth_en has made the wavs.  With --check_done true it
only tells (exit 0 / exit 3) whether finish_synth_en already completed with the same options.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from zipper.corpora import synth_en, text_sources, voices
from zipper.corpora.synth_en import DONE_NAME, SetSizes, SynthError
from zipper.corpora.text_sources import SourcePaths, TextSourceError
from zipper.corpora.voices import VoiceError
from zipper.data.kaldi_dir import DataDirError, spk2utt_from_utt2spk, write_kv
from zipper.utils.atomic import atomic_write_json, atomic_write_text, clear_done, done_marker, is_done
from zipper.utils.cli import make_parser, non_negative_int, parse_and_setup, positive_int, run_main, str2bool
from zipper.utils.log import log_run_header
from zipper.utils.provenance import hash_file

logger = logging.getLogger(__name__)

NOT_DONE_EXIT = 3
# options that do not change what is produced (so they do not invalidate a finished run)
NOT_IN_CONFIG = ("log_level", "nj", "force", "check_done")


def comma_list(value: str) -> list[str]:
    return [v for v in value.replace(",", " ").split() if v]


def fraction_list(value: str) -> list[float]:
    try:
        fractions = [float(v) for v in comma_list(value)]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected fractions like '0.1,0.01', got {value!r}") from e
    if any(not 0 < f < 1 for f in fractions):
        raise argparse.ArgumentTypeError(f"paired fractions must be in (0, 1), got {value!r}")
    return fractions


def share(value: str) -> float:
    f = float(value)
    if not 0 <= f <= 1:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1], got {value!r}")
    return f


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--local_dir", default="data/local/synth_en",
                        help="where the sentence pool, voices, plans and per-utterance sources go")
    parser.add_argument("--data_dir", default="data", help="where the Kaldi data directories go")
    parser.add_argument("--wav_dir", default="downloads/synth_en/wav", help="where the wavs go (<spk>/<utt>.wav)")
    parser.add_argument("--nj", type=positive_int, default=2, help="number of synthesis jobs to split the plan for")
    parser.add_argument("--seed", type=int, default=777, help="seed of the sentence/voice allocation")
    # sentence pool
    parser.add_argument("--sources", type=comma_list, default=list(text_sources.SOURCES),
                        help=f"text sources, comma-separated, from {','.join(text_sources.SOURCES)}")
    parser.add_argument("--fortune_dir", default=text_sources.DEFAULT_FORTUNE_DIR, help="fortune databases")
    parser.add_argument("--gcide", default=text_sources.DEFAULT_GCIDE, help="GCIDE dictd text (.dict.dz)")
    parser.add_argument("--wordnet_dir", default=text_sources.DEFAULT_WORDNET_DIR, help="WordNet data.* files")
    parser.add_argument("--bible_cmd", default=text_sources.DEFAULT_BIBLE_CMD, help="the bible-kjv command")
    parser.add_argument("--min_words", type=positive_int, default=5, help="shortest sentence kept (words)")
    parser.add_argument("--max_words", type=positive_int, default=20, help="longest sentence kept (words)")
    parser.add_argument("--min_word_count", type=positive_int, default=2,
                        help="drop sentences with a word seen fewer times than this in the whole pool")
    parser.add_argument("--max_vocab", type=non_negative_int, default=0,
                        help="keep only sentences whose words are all among the N most frequent of the pool (0: all)")
    # voices
    parser.add_argument("--engines", type=comma_list, default=list(voices.ENGINES),
                        help=f"synthesizers, comma-separated, from {','.join(voices.ENGINES)}")
    parser.add_argument("--heldout_voices", type=non_negative_int, default=8,
                        help="voices kept for test only (at least one per engine when >= 2)")
    # sizes
    defaults = SetSizes()
    parser.add_argument("--train_text_words", type=positive_int, default=defaults.train_text_words,
                        help="words of unpaired text (train_text)")
    parser.add_argument("--train_speech_utts", type=positive_int, default=defaults.train_speech_utts,
                        help="utterances of unpaired speech (train_speech)")
    parser.add_argument("--train_paired_utts", type=positive_int, default=defaults.train_paired_utts,
                        help="utterances of paired speech+text (train_paired_100pct)")
    parser.add_argument("--paired_fractions", type=fraction_list, default=[0.1, 0.01],
                        help="nested subsets of train_paired_100pct, comma-separated fractions")
    parser.add_argument("--dev_utts", type=positive_int, default=defaults.dev_utts, help="dev utterances")
    parser.add_argument("--test_utts", type=positive_int, default=defaults.test_utts, help="test utterances")
    parser.add_argument("--test_heldout_share", type=share, default=defaults.test_heldout_share,
                        help="share of test utterances read by held-out voices")
    parser.add_argument("--flite_share", type=share, default=defaults.flite_share,
                        help="share of each set's utterances read by flite voices")
    parser.add_argument("--vocoder_utts", type=non_negative_int, default=defaults.vocoder_utts,
                        help="train_vocoder: utterances of --vocoder_speaker reading train_speech's sentences again, "
                             "speech only, for stage 11's vocoder (0: no such set)")
    parser.add_argument("--vocoder_speaker", default="fl-rms",
                        help="the voice of train_vocoder (a seen voice; stage 11's --vocoder_speaker)")
    parser.add_argument("--force", type=str2bool, default=False,
                        help="rebuild the sentence pool, remove the plan's existing wavs (they are made again) "
                             "and accept a wav dir made from another pool")
    parser.add_argument("--check_done", type=str2bool, default=False,
                        help=f"only check: exit 0 if the corpus is complete with these options, {NOT_DONE_EXIT} if not")
    return parser


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The options that determine the output (compared with a finished run's to decide it can be reused)."""
    config = {k: v for k, v in vars(args).items() if k not in NOT_IN_CONFIG}
    for key in ("local_dir", "data_dir", "wav_dir"):
        config[key] = str(Path(config[key]).resolve())
    config["extraction_version"] = text_sources.EXTRACTION_VERSION  # new filters: a new corpus
    return config


def check_done(args: argparse.Namespace) -> bool:
    local = Path(args.local_dir)
    if not is_done(local, DONE_NAME):
        logger.info("%s does not exist: synth_en is not finished", done_marker(local, DONE_NAME))
        return False
    info = json.loads(done_marker(local, DONE_NAME).read_text(encoding="utf-8"))
    before, now = info.get("config", {}), json.loads(json.dumps(run_config(args)))
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if changed:
        logger.info("synth_en was finished with other options (%s); it will be redone",
                    ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed))
        return False
    gone = [row["dir"] for row in info.get("sets", []) if not (Path(row["dir"]) / "utt2spk").is_file()]
    if gone:
        logger.info("synth_en was finished but %s is gone; it will be redone", gone[0])
        return False
    return True


def load_or_build_pool(args: argparse.Namespace) -> list[text_sources.Sentence]:
    """The cached pool when it was made with the same sources and filters, else a new one."""
    local = Path(args.local_dir)
    pool_path, meta_path = local / "sentences.tsv", local / "sentences.json"
    paths = SourcePaths(args.fortune_dir, args.gcide, args.wordnet_dir, args.bible_cmd)
    meta = {"version": text_sources.EXTRACTION_VERSION, "sources": args.sources, "paths": asdict(paths),
            "min_words": args.min_words, "max_words": args.max_words, "min_word_count": args.min_word_count}
    if args.max_vocab:  # (absent when 0, so that pools cached before the option existed stay valid)
        meta["max_vocab"] = args.max_vocab
    if not args.force and pool_path.is_file() and meta_path.is_file():
        cached = json.loads(meta_path.read_text(encoding="utf-8"))
        if cached.get("build") == meta:
            pool = text_sources.read_pool(pool_path)
            logger.info("sentence pool: %d sentences from cache %s", len(pool), pool_path)
            return pool
        logger.info("sentence pool cache %s was built with other options; rebuilding", pool_path)
    start = time.time()
    pool, stats = text_sources.build_pool(args.sources, paths, args.min_words, args.max_words,
                                          args.min_word_count, workers=args.nj, max_vocab=args.max_vocab)
    text_sources.write_pool(pool_path, pool)
    atomic_write_json(meta_path, {"build": meta, "stats": asdict(stats), "size": len(pool),
                                  "seconds": round(time.time() - start, 1)})
    logger.info("sentence pool: %d sentences (%s) in %.1f s -> %s", len(pool),
                ", ".join(f"{k} {v}" for k, v in stats.kept.items()), time.time() - start, pool_path)
    return pool


def check_wav_dir(wav_dir: Path, pool_id: str, force: bool) -> None:
    """Wavs are named by speaker and sentence index; refuse to mix wavs made from two different pools."""
    marker = wav_dir / ".pool_id"
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() != pool_id:
        if not force:
            raise SynthError(f"{wav_dir} holds wavs made from another sentence pool ({marker}); remove that "
                             "directory, give another --wav_dir, or run with --force true to resynthesise")
        stale = list(wav_dir.glob("*/*.wav"))  # every one of them names a sentence of the old pool
        for path in stale:
            path.unlink()
        logger.info("--force: removed %d wavs made from another sentence pool in %s", len(stale), wav_dir)
    atomic_write_text(marker, pool_id + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    if args.check_done:
        sys.exit(0 if check_done(args) else NOT_DONE_EXIT)
    log_run_header("zipper.bin.prepare_synth_en", vars(args))
    if args.min_words > args.max_words:
        raise SynthError(f"--min_words {args.min_words} is larger than --max_words {args.max_words}")
    local, data, wav_dir = Path(args.local_dir), Path(args.data_dir), Path(args.wav_dir)
    clear_done(local, DONE_NAME)
    synth_en.check_programs(args.engines)
    inventory = voices.voice_inventory(args.engines)
    voices.check_voices_installed(inventory)
    inventory = voices.select_heldout(inventory, args.heldout_voices, args.seed)

    pool = load_or_build_pool(args)
    pool_id = hash_file(local / "sentences.tsv")
    sizes = SetSizes(args.train_text_words, args.train_speech_utts, args.train_paired_utts, args.dev_utts,
                     args.test_utts, args.test_heldout_share, args.flite_share, args.vocoder_utts,
                     args.vocoder_speaker)
    alloc = synth_en.allocate(pool, inventory, sizes, args.seed)
    plan = synth_en.make_plan(alloc, pool, inventory, wav_dir)
    check_wav_dir(wav_dir, pool_id, args.force)
    if args.force:  # the jobs keep existing wavs; removing them first makes an interrupted forced run resumable
        removed = 0
        for item in plan:
            if Path(item.wav).exists():
                Path(item.wav).unlink()
                removed += 1
        logger.info("--force: removed %d existing wavs of the plan", removed)

    atomic_write_text(local / "voices.txt", voices.format_voices(inventory))
    write_kv(local / "utt2source", {u.utt: pool[u.sentence].source for u in alloc.all_utts()})
    synth_en.write_plan(local / "plan.tsv", plan)
    split_dir = local / f"split{args.nj}"
    for j, part in enumerate(synth_en.split_plan(plan, args.nj), start=1):
        synth_en.write_plan(split_dir / f"plan.{j}.tsv", part)
    atomic_write_json(local / "config.json", {"config": run_config(args), "pool_id": pool_id})

    text_utts = alloc.sets["train_text"]
    text_dir = data / "train_text"
    write_kv(text_dir / "text", {u.utt: pool[u.sentence].norm for u in text_utts})
    utt2spk = {u.utt: u.spk for u in text_utts}
    write_kv(text_dir / "utt2spk", utt2spk)
    write_kv(text_dir / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    for stale in ("wav.scp", "utt2dur"):  # a text-only set
        (text_dir / stale).unlink(missing_ok=True)

    counts = {name: len(utts) for name, utts in alloc.sets.items()}
    logger.info("voices: %d (%d held out for test: %s)", len(inventory), sum(v.heldout for v in inventory),
                " ".join(v.spk for v in inventory if v.heldout))
    logger.info("sets: %s; train_text %d words", ", ".join(f"{k} {v}" for k, v in counts.items()),
                sum(pool[u.sentence].num_words for u in text_utts))
    logger.info("plan: %d utterances to synthesise in %d jobs (%s)", len(plan), args.nj, split_dir)


if __name__ == "__main__":
    run_main(main, expected_errors=(SynthError, TextSourceError, VoiceError, DataDirError, OSError))
