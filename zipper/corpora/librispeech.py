"""Stage 1 for LibriSpeech: the corpus tree (plus Libri-Light and the LibriSpeech LM text) -> Kaldi data dirs.

Every recipe makes the same sets, which the shared stages refer to by role:

  train_text                 unpaired text for the text tower (text-only dir, one pseudo-speaker `text`)
  train_speech               unpaired speech for the speech tower (wav.scp/utt2dur, no `text`)
  train_paired_<N>pct        paired speech + text, nested: 1pct is inside 10pct is inside 100pct
  dev, test (+ dev_other, test_other)   paired evaluation sets

LibriTTS is a re-segmentation of LibriSpeech and needs the same steps with another scanner, so the steps that do
not depend on the corpus layout (`prepare_sets` and its helpers) live here and `zipper.corpora.libritts` reuses
them.

Why some choices:
- Scanning uses `os.scandir` and one transcript read per chapter, so a full LibriSpeech tree (~290k files)
  takes seconds; only utt2dur opens the audio, with a process pool (`nj`).
- Each set directory is written under a temporary name and renamed, then gets a `.done` marker holding the
  options that made it: a re-run skips finished sets, and refuses (rather than silently keeps) a set made with
  different options unless `force` is given.
- No training subset (paired or unpaired speech) may share an utterance id or a recording with an evaluation
  subset (checked before the first set is written; `allow_overlap` turns the error into a warning).
- The unpaired text never contains a sentence of a dev/test transcript (compared case- and punctuation-
  insensitively), so the text tower cannot have memorised the test set.
- The LM-text sample is a one-pass reservoir sample (O(k) memory over the 40M-line LM corpus), kept in corpus
  order, and deterministic for a given seed.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import random
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

from zipper.data.audio import AudioError, audio_info
from zipper.data.kaldi_dir import spk2utt_from_utt2spk, write_kv
from zipper.data.overlap import find_overlaps, overlap_message
from zipper.data.subset import fraction_tag, nested_fractions, subset_data_dir
from zipper.utils.atomic import atomic_path, done_marker, is_done, mark_done

logger = logging.getLogger(__name__)

TRAIN_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500")
LIBRILIGHT_SUBSETS = ("small", "medium", "large")
TEXT_SPEAKER = "text"
MAX_TEXT_ID = 99_999_999  # ids are text-%08d so that they sort numerically
MAX_LISTED = 5  # examples shown in a warning or error about many files
DURATION_BATCH = 20_000  # files per progress line when reading durations

T = TypeVar("T")


class CorpusError(ValueError):
    """The corpus on disk is missing, incomplete or malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class Utterance:
    utt: str
    spk: str
    audio: str  # absolute path, used as the wav.scp value
    text: str | None = None


# ---------------------------------------------------------------------------------------------------- helpers


def normalize_space(text: str) -> str:
    return " ".join(text.split())


_NON_WORD = re.compile(r"[^\w']+")


def leakage_key(sentence: str) -> str:
    """Case- and punctuation-insensitive form used to spot a dev/test sentence in the unpaired text.

    LibriTTS text is cased and punctuated while the LM corpus is upper case without punctuation; both reduce to
    the same key.
    """
    return " ".join(_NON_WORD.sub(" ", sentence.upper()).replace("'", "").split())


def listed(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def decode_utf8_line(raw: bytes, path: str | os.PathLike, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start} of the line)") from e


def read_utf8_lines(path: str | os.PathLike) -> list[str]:
    """Lines of a small text file (no line ends); bad UTF-8 is an error naming the file and line."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CorpusError(f"{path}: cannot read: {e.strerror or e}") from e
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [decode_utf8_line(line, path, i).rstrip("\r") for i, line in enumerate(lines, start=1)]


def check_root(root: str | os.PathLike | None, corpus: str, option: str) -> Path:
    """The corpus root as an absolute path, or an error saying which option (db.sh variable) to set."""
    if root is None or str(root).strip() == "":
        raise CorpusError(f"no {corpus} directory given: set {option}")
    path = Path(os.path.abspath(os.path.expanduser(str(root))))
    if not path.exists():
        raise CorpusError(f"{corpus} directory {path} does not exist (check {option})")
    if not path.is_dir():
        raise CorpusError(f"{corpus} path {path} is not a directory (check {option})")
    return path


def subset_dir(root: Path, subset: str, corpus: str, hint: str) -> Path:
    """`<root>/<subset>`, or an error that says what to do (including the common 'one level too high' case)."""
    path = root / subset
    if path.is_dir():
        return path
    message = f"{corpus} subset '{subset}' not found: {path} does not exist"
    candidates = (root / corpus, root / corpus.replace("-", ""), root / f"{corpus}_R")  # LibriTTS-R: LibriTTS_R/
    nested = [p for p in candidates if (p / subset).is_dir()]
    if nested:
        message += f" (but {nested[0] / subset} does: point the {corpus} root at {nested[0]})"
    raise CorpusError(f"{message}; {hint}")


def sorted_subdirs(path: str | os.PathLike) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return sorted((e for e in it if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as e:
        raise CorpusError(f"{path}: cannot list directory: {e.strerror or e}") from e


def list_files(path: str | os.PathLike) -> dict[str, str]:
    """{file name: path} of the plain files in a directory."""
    try:
        with os.scandir(path) as it:
            return {e.name: e.path for e in it if e.is_file()}
    except OSError as e:
        raise CorpusError(f"{path}: cannot list directory: {e.strerror or e}") from e


def read_speaker_genders(root: Path) -> dict[str, str]:
    """{speaker: 'm' | 'f'} from SPEAKERS.TXT (LibriSpeech), SPEAKERS.txt or speakers.tsv (LibriTTS); {} if none.

    SPEAKERS.TXT lines look like `14   | F | train-clean-360  | 25.03 | Kristin LeMoine` (';' starts a comment; a
    few names contain '|'), speakers.tsv lines `14<TAB>F<TAB>train-clean-360<TAB>Kristin LeMoine`.
    """
    for name in ("SPEAKERS.TXT", "SPEAKERS.txt", "speakers.tsv"):
        path = root / name
        if path.is_file():
            break
    else:
        return {}
    genders: dict[str, str] = {}
    for lineno, line in enumerate(read_utf8_lines(path), start=1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in (line.split("|", 4) if "|" in line else line.split("\t"))]
        if len(fields) < 2 or not fields[0].isdigit():
            continue  # a header row
        sex = fields[1].lower()
        if sex not in ("m", "f"):
            logger.warning("%s:%d: speaker %s has sex '%s' (expected M or F); no gender for it", path, lineno,
                           fields[0], fields[1])
            continue
        genders[fields[0]] = sex
    logger.info("%s: gender of %d speakers", path, len(genders))
    return genders


# ---------------------------------------------------------------------------------------------------- scanners


def read_librispeech_transcript(path: str | os.PathLike, prefix: str) -> dict[str, tuple[int, str]]:
    """{utt: (line number, text)} of one `<spk>-<chapter>.trans.txt`; every id must start with `prefix`."""
    table: dict[str, tuple[int, str]] = {}
    for lineno, line in enumerate(read_utf8_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        utt = parts[0]
        text = normalize_space(parts[1]) if len(parts) > 1 else ""
        if not utt.startswith(prefix):
            raise CorpusError(f"{path}:{lineno}: utterance id '{utt}' does not start with '{prefix}' "
                              "(the speaker and chapter of its directory)")
        if not text:
            raise CorpusError(f"{path}:{lineno}: utterance '{utt}' has an empty transcript")
        if utt in table:
            raise CorpusError(f"{path}:{lineno}: utterance '{utt}' is repeated (first on line {table[utt][0]})")
        table[utt] = (lineno, text)
    return table


def scan_librispeech_subset(root: Path, subset: str, skip_unmatched: bool = False) -> list[Utterance]:
    """Utterances (with transcripts) of `<root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac`.

    A flac without a transcript line, or a transcript line without its flac, means an incomplete download or
    extraction: an error listing a few, or with `skip_unmatched` a warning and the utterance left out.
    """
    base = subset_dir(root, subset, "LibriSpeech",
                      "download it from https://www.openslr.org/12 and extract it there, or leave it out of the "
                      "subset options")
    utts: list[Utterance] = []
    no_text: list[str] = []
    no_audio: list[str] = []
    for spk_dir in sorted_subdirs(base):
        for chapter_dir in sorted_subdirs(spk_dir.path):
            prefix = f"{spk_dir.name}-{chapter_dir.name}-"
            files = list_files(chapter_dir.path)
            flacs = {name[:-5]: path for name, path in files.items() if name.endswith(".flac")}
            trans_name = f"{spk_dir.name}-{chapter_dir.name}.trans.txt"
            trans_path = os.path.join(chapter_dir.path, trans_name)
            texts = read_librispeech_transcript(trans_path, prefix) if trans_name in files else {}
            for utt, (lineno, text) in texts.items():
                if utt in flacs:
                    utts.append(Utterance(utt, spk_dir.name, os.path.abspath(flacs[utt]), text))
                else:
                    no_audio.append(f"{trans_path}:{lineno} ({utt})")
            no_text.extend(flacs[u] + ("" if trans_name in files else f" (no {trans_name})")
                           for u in sorted(set(flacs) - set(texts)))
    problems = []
    if no_text:
        problems.append(f"{len(no_text)} flac files have no transcript line: {listed(no_text)}")
    if no_audio:
        problems.append(f"{len(no_audio)} transcript lines have no flac file: {listed(no_audio)}")
    if problems:
        message = f"LibriSpeech {base}: " + "; ".join(problems)
        if not skip_unmatched:
            raise CorpusError(message + " (an incomplete download or extraction? with --skip_unmatched true "
                              "they are left out)")
        logger.warning("%s; left out", message)
    if not utts:
        raise CorpusError(f"LibriSpeech {base}: no utterances found (expected "
                          "<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac with a .trans.txt per chapter)")
    utts.sort(key=lambda u: u.utt)
    logger.info("LibriSpeech %s: %d utterances, %d speakers", subset, len(utts), len({u.spk for u in utts}))
    return utts


_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def scan_librilight(root: Path, subsets: Sequence[str]) -> list[Utterance]:
    """Audio of `<root>/<subset>/<speaker>/<book>/<file>.flac` (Libri-Light has no transcripts).

    Utterance id `<speaker>-<book>-<file>` (characters other than letters, digits, '_', '.', '-' become '_').
    """
    utts: list[Utterance] = []
    seen: dict[str, str] = {}
    for subset in subsets:
        base = subset_dir(root, subset, "Libri-Light",
                          "download it from https://github.com/facebookresearch/libri-light or leave it out of "
                          "the Libri-Light subsets")
        count = 0
        for spk_dir in sorted_subdirs(base):
            for book_dir in sorted_subdirs(spk_dir.path):
                book = _UNSAFE_ID_CHARS.sub("_", book_dir.name)
                for name, path in sorted(list_files(book_dir.path).items()):
                    if not name.endswith(".flac"):
                        continue
                    utt = f"{spk_dir.name}-{book}-{_UNSAFE_ID_CHARS.sub('_', name[:-5])}"
                    if utt in seen:
                        raise CorpusError(f"Libri-Light: {path} and {seen[utt]} both get utterance id '{utt}'")
                    seen[utt] = path
                    utts.append(Utterance(utt, spk_dir.name, os.path.abspath(path)))
                    count += 1
        if not count:
            raise CorpusError(f"Libri-Light {base}: no flac files found (expected <speaker>/<book>/<file>.flac)")
        logger.info("Libri-Light %s: %d files", subset, count)
    utts.sort(key=lambda u: u.utt)
    return utts


# ---------------------------------------------------------------------------------------------------- durations


def _audio_info_or_error(path: str) -> tuple[int, int] | str:
    try:
        return audio_info(path)
    except AudioError as e:
        return str(e)


def read_durations(utts: Sequence[Utterance], nj: int = 1) -> dict[str, tuple[int, int]]:
    """{utt: (sample rate, samples)} from the audio headers; `nj` processes when there are many files."""
    paths = [u.audio for u in utts]
    results: list[tuple[int, int] | str] = []
    if nj > 1 and len(paths) >= 1000:
        chunksize = max(1, min(500, len(paths) // (nj * 8)))
        with ProcessPoolExecutor(max_workers=nj) as pool:
            for start in range(0, len(paths), DURATION_BATCH):
                results.extend(pool.map(_audio_info_or_error, paths[start:start + DURATION_BATCH],
                                        chunksize=chunksize))
                logger.info("read the duration of %d/%d files", len(results), len(paths))
    else:
        results = [_audio_info_or_error(p) for p in paths]
    bad = [f"utterance '{u.utt}': {r}" for u, r in zip(utts, results) if isinstance(r, str)]
    if bad:
        raise CorpusError(f"{len(bad)} recordings cannot be read: " + "; ".join(bad[:MAX_LISTED])
                          + (f"; ... ({len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""))
    return {u.utt: r for u, r in zip(utts, results) if not isinstance(r, str)}


def format_duration(rate: int, samples: int) -> str:
    return f"{samples / rate:.3f}"


# ---------------------------------------------------------------------------------------------------- writing


def write_data_dir(dst: Path, utts: Sequence[Utterance], *, with_text: bool,
                   durations: Mapping[str, tuple[int, int]] | None = None,
                   genders: Mapping[str, str] | None = None) -> int:
    """wav.scp, utt2spk, spk2utt (+ text, utt2dur, utt2gender) for `utts` into the existing directory `dst`.

    utt2gender is written only when every speaker's gender is known (a partial file would fail validation).
    """
    counts = Counter(u.utt for u in utts)
    if len(counts) != len(utts):
        dup = sorted(u for u, n in counts.items() if n > 1)
        raise CorpusError(f"{dst.name}: utterance ids occur more than once: {listed(dup)}")
    for u in utts:
        if not u.utt.startswith(u.spk) or any(c.isspace() for c in u.utt):
            raise CorpusError(f"{dst.name}: utterance id '{u.utt}' must start with its speaker id '{u.spk}' and "
                              "contain no spaces")
    utt2spk = {u.utt: u.spk for u in utts}
    write_kv(dst / "wav.scp", {u.utt: u.audio for u in utts})
    write_kv(dst / "utt2spk", utt2spk)
    write_kv(dst / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    if with_text:
        missing = [u.utt for u in utts if not u.text]
        if missing:
            raise CorpusError(f"{dst.name}: utterances without text: {listed(missing)}")
        write_kv(dst / "text", {u.utt: u.text for u in utts})
    if durations is not None:
        write_kv(dst / "utt2dur", {u.utt: format_duration(*durations[u.utt]) for u in utts})
    if genders:
        unknown = sorted({u.spk for u in utts} - set(genders))
        if unknown:
            logger.warning("%s: no gender for speakers %s; utt2gender not written", dst.name, listed(unknown))
        else:
            write_kv(dst / "utt2gender", {u.utt: genders[u.spk] for u in utts})
    return len(utts)


def write_text_dir(dst: Path, sentences: Iterable[str]) -> int:
    """A text-only data dir: `text-00000001 <sentence>` ... with the one pseudo-speaker `text`, streamed."""
    n = 0
    with open(dst / "text", "w", encoding="utf-8") as text, open(dst / "utt2spk", "w", encoding="utf-8") as u2s, \
            open(dst / "spk2utt", "w", encoding="utf-8") as s2u:
        s2u.write(TEXT_SPEAKER)
        for sentence in sentences:
            n += 1
            if n > MAX_TEXT_ID:
                raise CorpusError(f"more than {MAX_TEXT_ID} sentences: lower --max_text_sentences")
            utt = f"{TEXT_SPEAKER}-{n:08d}"
            text.write(f"{utt} {sentence}\n")
            u2s.write(f"{utt} {TEXT_SPEAKER}\n")
            s2u.write(f" {utt}")
        s2u.write("\n")
    if n == 0:
        raise CorpusError(f"{dst.name}: no sentences left to write")
    return n


# ---------------------------------------------------------------------------------------------------- text


def iter_text_file(path: Path) -> Iterator[str]:
    """Lines of a big UTF-8 text file (whitespace normalised; empty ones included as ''), streamed.

    Bad UTF-8 is an error naming the file and line; decoding with surrogateescape and re-encoding only the
    non-ASCII lines keeps this fast on the 4 GB LM corpus.  A `.gz` file is read as is (openslr ships
    librispeech-lm-norm.txt.gz).
    """
    try:
        if str(path).endswith(".gz"):
            f = gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape")
        else:
            f = open(path, encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        raise CorpusError(f"{path}: cannot read: {e.strerror or e}") from e
    with f:
        for lineno, line in enumerate(f, start=1):
            if not line.isascii():
                try:
                    line.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise CorpusError(f"{path}:{lineno}: not valid UTF-8 (at character {e.start} of the line)") \
                        from e
            yield normalize_space(line)


@dataclass
class TextStats:
    read: int = 0
    empty: int = 0
    leaked: int = 0
    leaked_examples: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.read - self.empty - self.leaked


_CANONICAL = re.compile(r"[A-Z0-9' ]*")


def _leakage_key_of_normalized(sentence: str) -> str:
    """leakage_key of a whitespace-normalised sentence, with a fast path for LM-corpus style text (upper case,
    no punctuation but apostrophes), which is 10x cheaper and matters on 40M lines."""
    if _CANONICAL.fullmatch(sentence):
        return " ".join(sentence.replace("'", "").split()) if "'" in sentence else sentence
    return leakage_key(sentence)


def drop_eval_sentences(sentences: Iterable[str], eval_keys: set[str], stats: TextStats) -> Iterator[str]:
    """Leave out empty sentences and those whose leakage_key is a dev/test transcript's, counting both.

    `sentences` must be whitespace-normalised (normalize_space).
    """
    for sentence in sentences:
        stats.read += 1
        if not sentence:
            stats.empty += 1
        elif _leakage_key_of_normalized(sentence) in eval_keys:
            stats.leaked += 1
            if len(stats.leaked_examples) < MAX_LISTED:
                stats.leaked_examples.append(sentence)
        else:
            yield sentence


def _open_unit(rng: random.Random) -> float:
    u = rng.random()
    while u == 0.0:
        u = rng.random()
    return u


def sample_in_order(items: Iterable[T], k: int, seed: int) -> list[T]:
    """A uniform random sample of `k` items (all of them if there are fewer), in their input order.

    One pass and O(k) memory (reservoir sampling with geometric skips, Li 1994 "Algorithm L"); the same
    input and seed give the same sample.
    """
    if k < 1:
        raise ValueError(f"sample size must be positive, got {k}")
    rng = random.Random(seed)
    reservoir: list[tuple[int, T]] = []
    it = iter(items)
    for item in it:
        reservoir.append((len(reservoir), item))
        if len(reservoir) == k:
            break
    else:
        return [item for _, item in reservoir]
    w = math.exp(math.log(_open_unit(rng)) / k)
    next_index = k + int(math.log(_open_unit(rng)) / math.log1p(-w))
    for index, item in enumerate(it, start=k):
        if index == next_index:
            reservoir[rng.randrange(k)] = (index, item)
            w *= math.exp(math.log(_open_unit(rng)) / k)
            next_index = index + 1 + int(math.log(_open_unit(rng)) / math.log1p(-w))
    reservoir.sort(key=lambda pair: pair[0])
    return [item for _, item in reservoir]


# ---------------------------------------------------------------------------------------------------- sets


@dataclass
class Corpus:
    """What `prepare_sets` needs to know about one corpus."""

    name: str  # "LibriSpeech"
    root: Path
    train_subsets: tuple[str, ...]  # every training subset the corpus has
    scan: Callable[[str], list[Utterance]]  # subset -> utterances with text, sorted by id
    genders: dict[str, str] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)  # options that change what scan returns


@dataclass
class PrepOptions:
    out_dir: Path
    train_subsets: Sequence[str]  # paired training data
    eval_subsets: Mapping[str, str]  # set name -> subset; must exist ({"dev": "dev-clean", "test": "test-clean"})
    extra_eval_subsets: Mapping[str, str] = field(default_factory=dict)  # made when present (dev_other, ...)
    speech_subsets: Sequence[str] | None = None  # None: every training subset present
    text_subsets: Sequence[str] | None = None  # None: the training subsets present that are not paired data
    lm_text: Path | None = None  # unpaired text file (one sentence a line) instead of text_subsets
    librilight: Path | None = None  # unpaired speech from Libri-Light instead of speech_subsets
    librilight_subsets: Sequence[str] | None = None  # None: every Libri-Light subset present
    paired_fractions: Sequence[float] = (1.0, 0.1, 0.01)
    seed: int = 1
    max_text_sentences: int = 2_000_000  # 0: no limit
    nj: int = 1
    force: bool = False
    allow_overlap: bool = False  # only warn when a training subset shares utterances/recordings with an eval one


PAIRED, TEXT, SPEECH = "paired", "text", "speech"


def eval_set_name(subset: str) -> str:
    """dev-other -> dev_other."""
    return subset.replace("-", "_")


def _json_normal(obj: object) -> object:
    return json.loads(json.dumps(obj))


class _SetWriter:
    """Skips finished sets, writes the others atomically and marks them done with the options that made them."""

    def __init__(self, out_dir: Path, force: bool, before_first_write: Callable[[], None] | None = None):
        self.out_dir = out_dir
        self.force = force
        self.before_first_write = before_first_write  # a check that must pass before anything is written

    def up_to_date(self, name: str, params: Mapping[str, object]) -> bool:
        directory = self.out_dir / name
        if self.force or not is_done(directory):
            return False
        try:
            recorded = json.loads(done_marker(directory).read_text(encoding="utf-8")).get("params")
        except (OSError, ValueError, AttributeError):
            return False
        wanted = _json_normal(params)
        if recorded != wanted:
            diff = sorted(k for k in set(recorded or {}) | set(wanted)
                          if (recorded or {}).get(k) != wanted.get(k))
            raise CorpusError(f"{directory} was prepared with other options ({', '.join(diff)} differ: "
                              f"{ {k: (recorded or {}).get(k) for k in diff} } then, "
                              f"{ {k: wanted.get(k) for k in diff} } now); rerun with --force true to redo it")
        logger.info("%s: already prepared (%s); skipping", directory, done_marker(directory).name)
        return True

    def write(self, name: str, params: Mapping[str, object], fill: Callable[[Path], int]) -> int:
        directory = self.out_dir / name
        if self.before_first_write is not None:
            check, self.before_first_write = self.before_first_write, None
            check()
        with atomic_path(directory) as tmp:
            tmp.mkdir()
            count = fill(tmp)
        mark_done(directory, info={"params": _json_normal(params), "utterances": count})
        return count


def _summary(utts: Sequence[Utterance], durations: Mapping[str, tuple[int, int]] | None) -> str:
    parts = [f"{len(utts)} utterances", f"{len({u.spk for u in utts})} speakers"]
    if durations:
        hours = sum(durations[u.utt][1] / durations[u.utt][0] for u in utts) / 3600
        rates = sorted({durations[u.utt][0] for u in utts})
        parts += [f"{hours:.2f} h", "sample rate " + "/".join(f"{r} Hz" for r in rates)]
    return ", ".join(parts)


def _existing(corpus: Corpus, subsets: Sequence[str]) -> tuple[list[str], list[str]]:
    present = [s for s in subsets if (corpus.root / s).is_dir()]
    return present, [s for s in subsets if s not in present]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def check_train_eval_disjoint(corpus: Corpus, train_subsets: Sequence[str], eval_sets: Mapping[str, str],
                              scan: Callable[[str], list[Utterance]], allow_overlap: bool) -> None:
    """Refuse (CorpusError) a training subset (paired or unpaired speech) that shares an utterance id or a
    recording (resolved path) with an evaluation subset, e.g. a speaker directory copied into both, or the same
    subset named on both sides; with allow_overlap only warn.  This runs on the scans, before anything is
    written; local/data.sh's final validation also compares audio contents (zipper.data.overlap)."""
    train = {f"{corpus.name} {s} (training)": {u.utt: u.audio for u in scan(s)} for s in _unique(train_subsets)}
    evals = {f"{corpus.name} {s} ({set_name})": {u.utt: u.audio for u in scan(s)} for set_name, s in eval_sets.items()}
    overlaps = find_overlaps(train, evals, hash_audio=False)
    if not overlaps:
        return
    if not allow_overlap:
        raise CorpusError(overlap_message(overlaps))
    logger.warning("%s (allowed by --allow_overlap)", overlap_message(overlaps).rsplit("\n", 1)[0])


def prepare_sets(corpus: Corpus, opts: PrepOptions) -> list[tuple[str, str]]:
    """Write every set under `opts.out_dir`; return [(set name, 'paired' | 'text' | 'speech')] in writing order.

    Everything the options name is checked before anything is written, so a typo fails in seconds.
    """
    root, name = corpus.root, corpus.name
    out_dir = Path(opts.out_dir)
    train_subsets = _unique(opts.train_subsets)
    if not train_subsets:
        raise CorpusError("no paired training subsets given (--train_subsets)")
    hint = "download and extract it there, or change the subset options"
    for subset in list(train_subsets) + list(opts.eval_subsets.values()):
        subset_dir(root, subset, name, hint)
    extra_eval = {}
    for set_name, subset in opts.extra_eval_subsets.items():
        if (root / subset).is_dir():
            extra_eval[set_name] = subset
        else:
            logger.warning("%s: no %s subset at %s; %s is not made", name, subset, root / subset, set_name)
    eval_sets = {**opts.eval_subsets, **extra_eval}

    fractions = sorted({float(f) for f in opts.paired_fractions}, reverse=True)
    if not fractions:
        raise CorpusError("no paired fractions given (--paired_fractions)")
    for f in fractions:
        if not 0 < f <= 1:
            raise CorpusError(f"paired fraction {f} is not in (0, 1] (--paired_fractions)")
    if 1.0 not in fractions:
        logger.warning("--paired_fractions has no 1.0: there will be no train_paired_100pct set")

    # unpaired speech source
    if opts.librilight is not None:
        ll_root = check_root(opts.librilight, "Libri-Light", "LIBRILIGHT in db.sh (--librilight)")
        if opts.librilight_subsets:
            ll_subsets = _unique(opts.librilight_subsets)
            for subset in ll_subsets:
                subset_dir(ll_root, subset, "Libri-Light", "or change --librilight_subsets")
        else:
            ll_subsets = [s for s in LIBRILIGHT_SUBSETS if (ll_root / s).is_dir()]
            if not ll_subsets:
                raise CorpusError(f"Libri-Light {ll_root}: none of {', '.join(LIBRILIGHT_SUBSETS)} is there")
        speech_params = {"source": "Libri-Light", "root": str(ll_root), "subsets": ll_subsets}
    else:
        if opts.speech_subsets:
            speech_subsets = _unique(opts.speech_subsets)
            for subset in speech_subsets:
                subset_dir(root, subset, name, "or change --speech_subsets")
        else:
            speech_subsets, absent = _existing(corpus, corpus.train_subsets)
            if absent:
                logger.info("%s: unpaired speech without %s (not under %s)", name, ", ".join(absent), root)
        speech_params = {"source": name, **corpus.params, "root": str(root), "subsets": speech_subsets}

    # unpaired text source
    if opts.lm_text is not None:
        lm_text = Path(os.path.abspath(opts.lm_text))
        if not lm_text.is_file():
            raise CorpusError(f"LM text {lm_text} does not exist (check LIBRISPEECH_LM_TEXT in db.sh / --lm_text)")
        text_source: dict[str, object] = {"source": "file", "path": str(lm_text)}
        text_subsets: list[str] = []
    else:
        if opts.text_subsets:
            text_subsets = _unique(opts.text_subsets)
            for subset in text_subsets:
                subset_dir(root, subset, name, "or change --text_subsets")
            overlap = sorted(set(text_subsets) & set(train_subsets))
            if overlap:
                logger.warning("unpaired text includes the transcripts of paired subsets %s", ", ".join(overlap))
        else:
            candidates = [s for s in corpus.train_subsets if s not in train_subsets]
            text_subsets, absent = _existing(corpus, candidates)
            if absent:
                logger.info("%s: no %s under %s for unpaired text", name, ", ".join(absent), root)
            if not text_subsets:
                raise CorpusError(
                    "no unpaired text: set LIBRISPEECH_LM_TEXT in db.sh (--lm_text) to librispeech-lm-norm.txt "
                    "(https://www.openslr.org/11), or leave a training subset out of --train_subsets so that its "
                    "transcripts become the unpaired text (--text_subsets)")
        logger.info("no LM text given: the unpaired text is the transcripts of %s %s (not used as paired data)",
                    name, ", ".join(text_subsets))
        text_source = {"source": name, **corpus.params, "root": str(root), "subsets": text_subsets}
    text_params = {**text_source, "max_sentences": opts.max_text_sentences, "seed": opts.seed,
                   "eval_subsets": sorted(eval_sets.values())}

    writer = _SetWriter(out_dir, opts.force)
    scans: dict[str, list[Utterance]] = {}
    durations: dict[str, tuple[int, int]] = {}  # audio path -> (rate, samples)

    def scan(subset: str) -> list[Utterance]:
        if subset not in scans:
            scans[subset] = corpus.scan(subset)
        return scans[subset]

    def scan_many(subsets: Sequence[str]) -> list[Utterance]:
        utts = sorted((u for s in subsets for u in scan(s)), key=lambda u: u.utt)
        for a, b in zip(utts, utts[1:]):
            if a.utt == b.utt:
                raise CorpusError(f"utterance '{a.utt}' is in two subsets ({a.audio} and {b.audio})")
        return utts

    def with_durations(utts: Sequence[Utterance]) -> dict[str, tuple[int, int]]:
        """{utt: (rate, samples)}, reading each recording once per run (paired and speech sets share audio)."""
        todo = [u for u in utts if u.audio not in durations]
        if todo:
            logger.info("reading the duration of %d recordings (nj=%d)", len(todo), opts.nj)
            found = read_durations(todo, opts.nj)
            durations.update((u.audio, found[u.utt]) for u in todo)
        return {u.utt: durations[u.audio] for u in utts}

    # before the first set is written (a re-run of finished sets scans nothing; data.sh validates them anyway)
    writer.before_first_write = lambda: check_train_eval_disjoint(
        corpus, train_subsets + ([] if opts.librilight is not None else speech_subsets), eval_sets, scan,
        opts.allow_overlap)

    made: list[tuple[str, str]] = []
    base = {"corpus": name, **corpus.params, "root": str(root)}

    # dev / test
    for set_name, subset in eval_sets.items():
        params = {**base, "subset": subset}
        if not writer.up_to_date(set_name, params):
            utts = scan(subset)
            durs = with_durations(utts)
            writer.write(set_name, params, lambda d, utts=utts, durs=durs: write_data_dir(
                d, utts, with_text=True, durations=durs, genders=corpus.genders))
            logger.info("%s: %s (from %s %s)", out_dir / set_name, _summary(utts, durs), name, subset)
        made.append((set_name, PAIRED))

    # paired training data, nested fractions
    paired = [(f"train_paired_{fraction_tag(f)}", f) for f in fractions]
    paired_params = {**base, "subsets": train_subsets, "fractions": fractions, "seed": opts.seed}
    if not all([writer.up_to_date(n, {**paired_params, "fraction": f}) for n, f in paired]):
        utts = scan_many(train_subsets)
        durs = with_durations(utts)
        chosen = nested_fractions([u.utt for u in utts], fractions, opts.seed)
        previous: Path | None = None
        for set_name, f in paired:
            keep = set(chosen[f])
            subset_utts = [u for u in utts if u.utt in keep]
            if previous is None:  # the largest fraction comes from the scan, the others from the next larger set
                writer.write(set_name, {**paired_params, "fraction": f}, lambda d, s=subset_utts: write_data_dir(
                    d, s, with_text=True, durations=durs, genders=corpus.genders))
            else:
                writer.write(set_name, {**paired_params, "fraction": f},
                             lambda d, src=previous, k=keep: subset_data_dir(src, d, k))
            logger.info("%s: %s (%g of %s)", out_dir / set_name, _summary(subset_utts, durs), f,
                        " + ".join(train_subsets))
            previous = out_dir / set_name
    made.extend((n, PAIRED) for n, _ in paired)

    # unpaired speech
    if not writer.up_to_date("train_speech", speech_params):
        if opts.librilight is not None:
            utts = scan_librilight(Path(str(speech_params["root"])), ll_subsets)
            genders: dict[str, str] = {}
        else:
            utts = [Utterance(u.utt, u.spk, u.audio) for u in scan_many(speech_subsets)]
            genders = corpus.genders
        durs = with_durations(utts)
        writer.write("train_speech", speech_params, lambda d: write_data_dir(
            d, utts, with_text=False, durations=durs, genders=genders))
        logger.info("%s: %s (from %s %s)", out_dir / "train_speech", _summary(utts, durs), speech_params["source"],
                    ", ".join(speech_params["subsets"]))  # type: ignore[arg-type]
    made.append(("train_speech", SPEECH))

    # unpaired text
    if not writer.up_to_date("train_text", text_params):
        eval_keys = {leakage_key(u.text or "") for subset in eval_sets.values() for u in scan(subset)}
        stats = TextStats()
        if opts.lm_text is not None:
            source: Iterable[str] = iter_text_file(lm_text)
            source_name = str(lm_text)
        else:
            source = (u.text or "" for u in scan_many(text_subsets))
            source_name = f"the transcripts of {name} {', '.join(text_subsets)}"
        kept = drop_eval_sentences(source, eval_keys, stats)
        if opts.max_text_sentences > 0:
            sentences: Iterable[str] = sample_in_order(kept, opts.max_text_sentences, opts.seed)
        else:
            sentences = kept
        count = writer.write("train_text", text_params, lambda d: write_text_dir(d, sentences))
        logger.info("train_text: read %d sentences from %s; dropped %d that are dev/test transcripts%s and %d "
                    "empty lines", stats.read, source_name, stats.leaked,
                    f" (e.g. {stats.leaked_examples[0]!r})" if stats.leaked_examples else "", stats.empty)
        if count < stats.kept:
            logger.info("train_text: kept a random %d of the %d remaining (--max_text_sentences %d, seed %d)",
                        count, stats.kept, opts.max_text_sentences, opts.seed)
        logger.info("%s: %d sentences", out_dir / "train_text", count)
    made.append(("train_text", TEXT))
    return made


# ---------------------------------------------------------------------------------------------------- LibriSpeech


def librispeech_corpus(root: str | os.PathLike, skip_unmatched: bool = False) -> Corpus:
    path = check_root(root, "LibriSpeech", "LIBRISPEECH in db.sh (--librispeech)")
    return Corpus(name="LibriSpeech", root=path, train_subsets=TRAIN_SUBSETS,
                  scan=lambda subset: scan_librispeech_subset(path, subset, skip_unmatched),
                  genders=read_speaker_genders(path), params={"skip_unmatched": skip_unmatched})


def prepare_librispeech(root: str | os.PathLike, opts: PrepOptions, skip_unmatched: bool = False
                        ) -> list[tuple[str, str]]:
    """All LibriSpeech sets (see the module docstring) under opts.out_dir."""
    return prepare_sets(librispeech_corpus(root, skip_unmatched), opts)
