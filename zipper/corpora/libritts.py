"""Stage 1 for LibriTTS: `<root>/<subset>/<speaker>/<chapter>/<speaker>_<chapter>_<n>_<m>.wav` -> Kaldi data dirs.

The sets and their roles are those of `zipper.corpora.librispeech` (whose `prepare_sets` does the writing);
this module only knows the LibriTTS layout:

- the transcript is the `.normalized.txt` beside each wav (the `.original.txt` keeps unexpanded numbers and
  abbreviations, which a TTS front end should not see);
- native ids `19_198_000000_000000` become `19-198-000000-000000`: Kaldi needs sorting by utterance to equal
  sorting by (speaker, utterance), and '_' sorts after the digits while '-' sorts before them;
- a few utterances have a missing or empty `.normalized.txt`; they are left out and counted, not fatal;
- lists of bad utterances (e.g. LibriTTS-R's failed restorations) can be excluded with a file of ids;
- audio stays 24 kHz here; stage 2 resamples when the recipe asks for it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from zipper.corpora.librispeech import (
    TRAIN_SUBSETS, Corpus, CorpusError, PrepOptions, Utterance, check_root, decode_utf8_line, listed,
    list_files, normalize_space, prepare_sets, read_speaker_genders, read_utf8_lines, sorted_subdirs, subset_dir)

logger = logging.getLogger(__name__)

DEFAULT_TRAIN_SUBSETS = ("train-clean-100", "train-clean-360")  # the usual clean 245 h for TTS
TEXT_SUFFIX = ".normalized.txt"


def libritts_utt_id(native: str) -> str:
    """'19_198_000000_000000' -> '19-198-000000-000000'."""
    return native.replace("_", "-")


def read_exclude_list(path: str | os.PathLike) -> set[str]:
    """Utterance ids (converted to the '-' form) from a file with one id, file name or path per line.

    Only the first field of a line counts, '#' starts a comment, and any directory and extension are dropped,
    so a list of `train-clean-360/1001/134707/1001_134707_000001_000000.wav` paths works as well as bare ids.
    """
    ids = set()
    for line in read_utf8_lines(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = os.path.basename(line.split()[0])
        for suffix in (".wav", TEXT_SUFFIX, ".original.txt", ".flac"):
            if name.endswith(suffix):
                name = name[:-len(suffix)]
                break
        ids.add(libritts_utt_id(name))
    logger.info("%s: %d utterance ids to exclude", path, len(ids))
    return ids


def read_normalized_text(path: str) -> str:
    """The whole file as one line (whitespace normalised); bad UTF-8 names the file and line."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CorpusError(f"{path}: cannot read: {e.strerror or e}") from e
    lines = [decode_utf8_line(line, path, i) for i, line in enumerate(raw.split(b"\n"), start=1)]
    return normalize_space(" ".join(lines))


@dataclass
class _Skipped:
    """What a scan left out, for the log."""

    no_text: list[str] = field(default_factory=list)
    empty_text: list[str] = field(default_factory=list)
    no_audio: list[str] = field(default_factory=list)
    excluded: set[str] = field(default_factory=set)


def scan_libritts_subset(root: Path, subset: str, exclude: set[str] | None = None) -> list[Utterance]:
    """Utterances (with normalized text) of one LibriTTS subset; skipped ones are logged with counts."""
    base = subset_dir(root, subset, "LibriTTS",
                      "download it from https://www.openslr.org/60 and extract it there, or leave it out of the "
                      "subset options")
    exclude = exclude or set()
    local = _Skipped()
    utts: list[Utterance] = []
    for spk_dir in sorted_subdirs(base):
        for chapter_dir in sorted_subdirs(spk_dir.path):
            prefix = f"{spk_dir.name}_{chapter_dir.name}_"
            files = list_files(chapter_dir.path)
            stems = {name[:-4] for name in files if name.endswith(".wav")}
            for stem in sorted(stems):
                wav = files[stem + ".wav"]
                if not stem.startswith(prefix) or any(c.isspace() for c in stem):
                    raise CorpusError(f"{wav}: unexpected file name (LibriTTS names are "
                                      f"{prefix}<n>_<m>.wav in this directory)")
                utt = libritts_utt_id(stem)
                if utt in exclude:
                    local.excluded.add(utt)
                    continue
                if stem + TEXT_SUFFIX not in files:
                    local.no_text.append(wav)
                    continue
                text = read_normalized_text(files[stem + TEXT_SUFFIX])
                if not text:
                    local.empty_text.append(files[stem + TEXT_SUFFIX])
                    continue
                utts.append(Utterance(utt, spk_dir.name, os.path.abspath(wav), text))
            local.no_audio.extend(path for name, path in sorted(files.items())
                                  if name.endswith(TEXT_SUFFIX) and name[:-len(TEXT_SUFFIX)] not in stems)
    if local.no_text:
        logger.warning("LibriTTS %s: skipped %d wav files without %s: %s", subset, len(local.no_text), TEXT_SUFFIX,
                       listed(local.no_text))
    if local.empty_text:
        logger.warning("LibriTTS %s: skipped %d utterances whose %s is empty: %s", subset, len(local.empty_text),
                       TEXT_SUFFIX, listed(local.empty_text))
    if local.no_audio:
        logger.warning("LibriTTS %s: %d %s files have no wav (ignored): %s", subset, len(local.no_audio),
                       TEXT_SUFFIX, listed(local.no_audio))
    if local.excluded:
        logger.info("LibriTTS %s: excluded %d listed utterances", subset, len(local.excluded))
    if not utts:
        raise CorpusError(f"LibriTTS {base}: no utterances found (expected <speaker>/<chapter>/"
                          f"<speaker>_<chapter>_<n>_<m>.wav with a {TEXT_SUFFIX} beside each)")
    utts.sort(key=lambda u: u.utt)
    logger.info("LibriTTS %s: %d utterances, %d speakers", subset, len(utts), len({u.spk for u in utts}))
    return utts


def libritts_corpus(root: str | os.PathLike, exclude_utts: str | os.PathLike | None = None) -> Corpus:
    path = check_root(root, "LibriTTS", "LIBRITTS in db.sh (--libritts)")
    exclude: set[str] = set()
    params: dict[str, object] = {"exclude_utts": ""}
    if exclude_utts:
        exclude_path = Path(os.path.abspath(exclude_utts))
        if not exclude_path.is_file():
            raise CorpusError(f"exclusion list {exclude_path} does not exist (--exclude_utts)")
        exclude = read_exclude_list(exclude_path)
        params["exclude_utts"] = str(exclude_path)
    return Corpus(name="LibriTTS", root=path, train_subsets=TRAIN_SUBSETS,
                  scan=lambda subset: scan_libritts_subset(path, subset, exclude),
                  genders=read_speaker_genders(path), params=params)


def prepare_libritts(root: str | os.PathLike, opts: PrepOptions, exclude_utts: str | os.PathLike | None = None
                     ) -> list[tuple[str, str]]:
    """All LibriTTS sets under opts.out_dir (roles as in zipper.corpora.librispeech)."""
    return prepare_sets(libritts_corpus(root, exclude_utts), opts)
