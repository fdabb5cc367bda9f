"""English sentences for the synthesised corpus, drawn from text packages that Debian ships.

Why these: they are freely redistributable, installed with one `apt-get`, and together give well over 100k
distinct sentences of quite different styles (proverbs and jokes, 17th-century prose, dictionary definitions
and quotations, WordNet glosses and usage examples).

Every source is parsed into raw sentences; `normalize_sentence` then keeps only what a synthesizer reads as
written: letters, apostrophes inside words, 5-20 words, no digits, symbols, abbreviations or acronyms (which
the synthesizers would expand or spell out, so that the transcript would not match the audio).  Each kept
sentence has two forms: `spoken` (original case and plain punctuation, given to the synthesizer for natural
phrasing) and `norm` (lower-case words, the transcript); both have exactly the same words.
"""

from __future__ import annotations

import collections
import concurrent.futures
import gzip
import logging
import os
import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from zipper.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

# Bump when the extraction or filtering changes, so that cached sentence pools are rebuilt.
EXTRACTION_VERSION = 2

DEFAULT_FORTUNE_DIR = "/usr/share/games/fortunes"
DEFAULT_GCIDE = "/usr/share/dictd/gcide.dict.dz"
DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
DEFAULT_BIBLE_CMD = "bible"
# Fortune files that are not English prose (ASCII drawings; Latin and other languages).
FORTUNE_SKIP = frozenset({"ascii-art", "translate-me"})
WORDNET_PARTS = ("noun", "verb", "adj", "adv")
SOURCES = ("bible", "fortunes", "gcide", "wordnet")
INSTALL_HINT = ("run tools/install.sh (it installs the Debian packages espeak-ng flite sox fortunes bible-kjv "
                "dict-gcide wordnet-base)")


class TextSourceError(RuntimeError):
    """A text package is missing or cannot be parsed."""


@dataclass(frozen=True)
class Sentence:
    """One pool entry: where it comes from, the transcript and what the synthesizer is given."""

    source: str
    norm: str
    spoken: str

    @property
    def num_words(self) -> int:
        return self.norm.count(" ") + 1


# ---------------------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------------------
_CHAR_MAP = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2014": "--", "\u2212": "-", "\u00a0": " ", "\u2026": "...",
}
# Characters a synthesizer would read out ("and", "percent", "dollars", "slash" ...) or that mark markup/code.
_BAD_CHAR = re.compile("[0-9&%$#@*+=<>/\\\\|_~^{}\x00-\x1f\x7f-\U0010ffff]")
_UNSPOKEN = re.compile(r'[()\[\]"]')
_DASHES = re.compile(r"\s*--+\s*")
_INNER_APOSTROPHE = re.compile(r"(?<![A-Za-z])'|'(?![A-Za-z])")
_NOT_BODY = re.compile(r"[^A-Za-z' ,;:]")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,;:])")
_SPACE_AFTER_PUNCT = re.compile(r"([,;:])(?=[^\s,;:])")
_PUNCT_RUN = re.compile(r"[,;:]+(?=[,;:])")
_PUNCT = re.compile(r"[,;:]")
_URL = re.compile(r"https?:|www\.|\.(com|org|net|edu|gov)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_SINGLE_LETTER_OK = frozenset({"a", "i", "o"})
_ALL_CAPS = re.compile(r"\b[A-Z]{2,}\b")
_FINAL_PUNCT = re.compile(r"[.!?]+$")


def fold_text(text: str) -> str:
    """Typographic quotes/dashes to ASCII, accents removed (cafe for café), whitespace collapsed."""
    text = "".join(_CHAR_MAP.get(c, c) for c in text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.split())


def normalize_sentence(raw: str, min_words: int = 5, max_words: int = 20) -> tuple[str, str] | None:
    """(spoken, norm) for a sentence a synthesizer reads as written, or None when it must be dropped.

    norm is lower-case a-z words, apostrophes only inside words, single spaces; spoken keeps the case and
    the punctuation that shapes prosody (, ; : . ! ?).
    """
    tokens = raw.split()
    if len(tokens) + raw.count("-") < min_words:  # quick exit: only hyphens can add words
        return None
    s = " ".join(raw.replace("`", "'").split()) if raw.isascii() else fold_text(raw)
    # digits, symbols read out loud, control and non-ASCII characters; acronyms (spelled out) and shouting
    if not s or _BAD_CHAR.search(s) or _URL.search(s) or _ALL_CAPS.search(s):
        return None
    s = _UNSPOKEN.sub(" ", s)  # brackets and double quotes are not spoken
    s = _DASHES.sub(", ", s)  # "--" is a pause
    s = s.replace("-", " ")  # a hyphen joins words the synthesizer reads separately
    s = " ".join(s.split()).strip(" ,;:")
    # one final run of . ! ? ends the sentence; any other full stop is an abbreviation, initial or ellipsis
    final = _FINAL_PUNCT.search(s)
    body, end = (s[:final.start()], final.group()) if final else (s, "")
    if any(c in body for c in ".!?"):
        return None
    # apostrophes only inside words (quotes and plural possessives lose theirs)
    body = _INNER_APOSTROPHE.sub(" ", body)
    if _NOT_BODY.search(body):
        return None
    body = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(body.split()))  # no space before punctuation
    body = _SPACE_AFTER_PUNCT.sub(r"\1 ", body)  # one space after it
    body = _PUNCT_RUN.sub("", body).strip(" ,;:")
    words = _PUNCT.sub(" ", body).lower().split()
    if not min_words <= len(words) <= max_words:
        return None
    for w in words:
        if not _WORD.fullmatch(w) or (len(w) == 1 and w not in _SINGLE_LETTER_OK):
            return None
    spoken = body + (end[0] if end else ".")
    return spoken, " ".join(words)


# ---------------------------------------------------------------------------------------------------------
# Sentence splitting
# ---------------------------------------------------------------------------------------------------------
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr vs etc eg ie cf viz no mt prof gen col capt lt rev sgt gov pres hon esp fig vol "
    "ch p pp obs ibid al approx dept inc ltd co".split())
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s)")


def split_sentences(text: str) -> list[str]:
    """Split running text after . ! ? (plus closing quotes/brackets) followed by a space.

    A piece that ends in an abbreviation or an initial ("Dr.", "J.") is glued to the next one; the full stop
    left inside then makes the normaliser drop the sentence, which is what we want for such text.
    """
    text = " ".join(text.split())
    pieces: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        pieces.append(text[start:m.end()].strip())
        start = m.end()
    if text[start:].strip():
        pieces.append(text[start:].strip())
    out: list[str] = []
    carry = ""
    for piece in pieces:
        piece = (carry + " " + piece).strip() if carry else piece
        last = re.sub(r"[^A-Za-z.]", "", piece.split()[-1]) if piece.split() else ""
        stem = last.rstrip(".").replace(".", "").lower()
        if last.endswith(".") and (stem in _ABBREVIATIONS or len(stem) == 1):
            carry = piece
            continue
        carry = ""
        out.append(piece)
    if carry:
        out.append(carry)
    return out


# ---------------------------------------------------------------------------------------------------------
# Sources: each yields raw text passages (paragraphs or verses) in file order
# ---------------------------------------------------------------------------------------------------------
def fortune_files(fortune_dir: str | os.PathLike) -> list[Path]:
    """The fortune databases at the top of `fortune_dir`: no index (.dat), no .u8 links, no `off/` (offensive)."""
    d = Path(fortune_dir)
    files = []
    for p in sorted(d.iterdir()):
        if p.is_dir() or p.suffix in (".dat", ".u8") or p.name.startswith(".") or p.name in FORTUNE_SKIP:
            continue
        files.append(p)
    return files


def parse_fortunes(text: str) -> Iterator[str]:
    """Paragraphs of every fortune in a database (entries are separated by lines holding only '%').

    A blank line ends a paragraph; an indented attribution line ("-- Mark Twain") ends the entry, since
    what follows it is the rest of the attribution (book titles, dates).
    """
    for entry in re.split(r"^%[ \t]*$", text, flags=re.MULTILINE):
        paragraph: list[str] = []
        for line in entry.splitlines():
            stripped = line.strip()
            attribution = stripped.startswith("-") and line[:1] in (" ", "\t", "-") and \
                re.match(r"^--?\s*\S", stripped) is not None
            if not stripped or attribution:
                if paragraph:
                    yield " ".join(paragraph)
                    paragraph = []
                if attribution:
                    break
                continue
            paragraph.append(stripped)
        if paragraph:
            yield " ".join(paragraph)


def fortune_passages(fortune_dir: str | os.PathLike = DEFAULT_FORTUNE_DIR) -> Iterator[str]:
    for path in fortune_files(fortune_dir):
        yield from parse_fortunes(path.read_text(encoding="utf-8", errors="replace"))


def parse_bible_dump(lines: Iterable[str]) -> Iterator[str]:
    """Verse texts of `bible -f` output (`Ge1:1 In the beginning ...`), with the KJV's small-caps LORD/GOD
    written as ordinary words so that the all-caps (acronym) filter keeps them."""
    for line in lines:
        parts = line.strip().split(" ", 1)
        if len(parts) != 2 or not re.match(r"^\d?[A-Za-z]+\d+:\d+$", parts[0]):
            continue
        verse = re.sub(r"\bLORD\b", "Lord", parts[1])
        yield re.sub(r"\bGOD\b", "God", verse)


def bible_passages(bible_cmd: str = DEFAULT_BIBLE_CMD) -> Iterator[str]:
    """The whole King James text in one call (`bible -f Gen1:1-Rev22:21`: one verse per line, ~0.1 s)."""
    exe = shutil.which(bible_cmd)
    if exe is None:
        raise TextSourceError(f"the '{bible_cmd}' command (Debian package bible-kjv) is not installed; {INSTALL_HINT}")
    proc = subprocess.run([exe, "-f", "Gen1:1-Rev22:21"], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=300)
    if proc.returncode != 0 or not proc.stdout:
        raise TextSourceError(f"'{bible_cmd} -f Gen1:1-Rev22:21' failed ({proc.returncode}): "
                              f"{proc.stderr.decode(errors='replace')[-300:]}; is bible-kjv-text installed? "
                              f"{INSTALL_HINT}")
    yield from parse_bible_dump(proc.stdout.decode("utf-8", errors="replace").splitlines())


# A headword line: `Affect \Af*fect"\, v. t. [...]` (word, then the pronunciation between backslashes).
_GCIDE_HEADWORD = re.compile(r"^[^\s\\][^\\\n]*\\[^\\\n]+\\")
_GCIDE_ATTRIBUTION = re.compile(r"(^|\s)--\s?[A-Z][^\n]*$", re.MULTILINE)
# candidates for an accent code glued to a word (caf['e], [ae]ppel) or a '?' standing for an unknown
# character (f?ran, ?way); `_mark_glued` decides from the neighbouring characters (a pattern that starts
# with a literal is scanned much faster than one with lookbehinds)
_GCIDE_GLUED = re.compile(r"\[[^\[\]\s]{1,6}\]|\?")


def _mark_glued(m: re.Match) -> str:
    text, start, end = m.string, m.start(), m.end()
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    if m.group() == "?":
        return "\x00" if after.isalpha() and (before.isalpha() or before.isspace()) else "?"
    return "\x00" if before.isalpha() or after.isalpha() else m.group()


def _remove_nested(text: str, open_c: str, close_c: str) -> str:
    """Drop (possibly nested, multi-line) bracketed spans, keeping their newlines so line structure stays.

    An opening bracket that is never closed drops the rest of the text; a stray closing one is kept.
    """
    if open_c not in text:
        return text
    o, c = re.escape(open_c), re.escape(close_c)
    innermost = re.compile(f"{o}[^{o}{c}]*{c}")
    keep_newlines = lambda m: "\n" * m.group().count("\n")  # noqa: E731
    while True:
        text, n = innermost.subn(keep_newlines, text)
        if not n:
            break
    start = text.find(open_c)
    if start >= 0:
        text = text[:start] + "\n" * text.count("\n", start)
    return text


def _unclosed_tail(line: str) -> str:
    """The part of `line` from its first '[' that is still open at the end of the line ('' if none)."""
    opens: list[int] = []
    for i, c in enumerate(line):
        if c == "[":
            opens.append(i)
        elif c == "]" and opens:
            opens.pop()
    return line[opens[0]:] if opens else ""


def clean_gcide_entry(text: str) -> str:
    """One entry's text without etymologies, labels, source tags, pronunciations and attributions.

    Glued accent codes become a NUL, which the normaliser refuses, so that words are never silently mangled.
    """
    text = _GCIDE_GLUED.sub(_mark_glued, text)
    text = _remove_nested(text, "[", "]")      # etymologies, [Obs.], [1913 Webster], accent codes
    text = _remove_nested(text, "(", ")")      # (Zool.), pronunciations, scientific names
    text = _GCIDE_ATTRIBUTION.sub("", text)    # --Milton.
    text = re.sub(r"\{([^{}]*)\}", r"\1", text)  # cross references keep their words
    return text


def parse_gcide(lines: Iterable[str]) -> Iterator[str]:
    """Paragraphs (definitions, notes, quotations) of a GCIDE dictd text; headword lines and `Syn:` lists
    are dropped, `Note:` labels and sense numbers removed.  The license preamble before the first entry is
    skipped."""
    started = False
    block: list[str] = []

    def flush() -> Iterator[str]:
        if not block:
            return
        cleaned = clean_gcide_entry("\n".join(block))
        block.clear()
        paragraph = " ".join(cleaned.split())
        if not paragraph or paragraph.startswith("Syn:") or paragraph.startswith("Syn."):
            return
        paragraph = re.sub(r"^(Note|Usage):\s*", "", paragraph)
        paragraph = re.sub(r"^(\d+|[a-z])\.\s+", "", paragraph)  # sense number
        yield paragraph

    for line in lines:
        line = line.rstrip("\n")
        if _GCIDE_HEADWORD.match(line):
            started = True
            yield from flush()
            # the headword line itself (word, pronunciation, part of speech, etymology start) is not text;
            # an etymology running onto the next lines is removed by the bracket scanner, so keep the
            # unclosed bracket's tail in the block for balance.
            tail = _unclosed_tail(line)
            if tail:
                block.append(tail)
            continue
        if not started:
            continue
        if not line.strip():
            yield from flush()
            continue
        block.append(line)
    yield from flush()


def gcide_passages(path: str | os.PathLike = DEFAULT_GCIDE) -> Iterator[str]:
    """Definitions and quotations of the GCIDE (a dictzip file is a gzip file; plain text is accepted too)."""
    path = Path(path)
    opener: Callable = gzip.open if path.suffix == ".dz" or path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        yield from parse_gcide(f)


def parse_wordnet_data(lines: Iterable[str]) -> Iterator[str]:
    """Glosses of WordNet `data.*` lines: after '| ', split on ';' into definitions (without parenthesised
    labels) and quoted examples."""
    for line in lines:
        if line.startswith("  ") or "| " not in line:
            continue  # license header
        gloss = line.split("| ", 1)[1].strip()
        for piece in gloss.split(";"):
            piece = piece.strip()
            if not piece:
                continue
            if piece.startswith('"'):
                end = piece.rfind('"')
                piece = piece[1:end] if end > 0 else piece[1:]
            else:
                piece = _remove_nested(piece, "(", ")")  # domain labels "(physics)", asides
            if piece.strip():
                yield piece.strip()


def wordnet_passages(wordnet_dir: str | os.PathLike = DEFAULT_WORDNET_DIR) -> Iterator[str]:
    for part in WORDNET_PARTS:
        with open(Path(wordnet_dir) / f"data.{part}", encoding="utf-8", errors="replace") as f:
            yield from parse_wordnet_data(f)


@dataclass(frozen=True)
class SourcePaths:
    """Where the text packages are (Debian defaults; tests point them at tiny fake files)."""

    fortune_dir: str = DEFAULT_FORTUNE_DIR
    gcide: str = DEFAULT_GCIDE
    wordnet_dir: str = DEFAULT_WORDNET_DIR
    bible_cmd: str = DEFAULT_BIBLE_CMD


def missing_sources(sources: Sequence[str], paths: SourcePaths) -> list[str]:
    """Human-readable list of what is missing for the requested sources (empty when all are there)."""
    missing = []
    for name in sources:
        if name == "bible":
            if shutil.which(paths.bible_cmd) is None:
                missing.append(f"the '{paths.bible_cmd}' command (packages bible-kjv, bible-kjv-text)")
        elif name == "fortunes":
            d = Path(paths.fortune_dir)
            if not d.is_dir() or not fortune_files(d):
                missing.append(f"fortune files in {d} (package fortunes)")
        elif name == "gcide":
            if not Path(paths.gcide).is_file():
                missing.append(f"{paths.gcide} (package dict-gcide)")
        elif name == "wordnet":
            for part in WORDNET_PARTS:
                if not (Path(paths.wordnet_dir) / f"data.{part}").is_file():
                    missing.append(f"{Path(paths.wordnet_dir) / f'data.{part}'} (package wordnet-base)")
        else:
            raise TextSourceError(f"unknown text source '{name}' (known: {', '.join(SOURCES)})")
    return missing


def source_passages(name: str, paths: SourcePaths) -> Iterator[str]:
    if name == "bible":
        return bible_passages(paths.bible_cmd)
    if name == "fortunes":
        return fortune_passages(paths.fortune_dir)
    if name == "gcide":
        return gcide_passages(paths.gcide)
    if name == "wordnet":
        return wordnet_passages(paths.wordnet_dir)
    raise TextSourceError(f"unknown text source '{name}' (known: {', '.join(SOURCES)})")


# ---------------------------------------------------------------------------------------------------------
# The pool
# ---------------------------------------------------------------------------------------------------------
@dataclass
class PoolStats:
    raw: dict[str, int]
    clean: dict[str, int]
    duplicates: dict[str, int]
    rare: dict[str, int]
    kept: dict[str, int]


def extract_source(name: str, paths: SourcePaths, min_words: int = 5, max_words: int = 20
                   ) -> tuple[int, list[tuple[str, str]]]:
    """(number of raw sentences, [(spoken, norm)] of the clean ones in file order) of one source."""
    raw = 0
    clean: list[tuple[str, str]] = []
    for passage in source_passages(name, paths):
        for sentence in split_sentences(passage):
            raw += 1
            result = normalize_sentence(sentence, min_words, max_words)
            if result is not None:
                clean.append(result)
    return raw, clean


def build_pool(sources: Sequence[str], paths: SourcePaths, min_words: int = 5, max_words: int = 20,
               min_word_count: int = 2, workers: int = 1, max_vocab: int = 0) -> tuple[list[Sentence], PoolStats]:
    """Every clean sentence of the sources, deduplicated on the transcript (first occurrence wins, sources in
    the given order), without sentences holding a word seen fewer than `min_word_count` times in the pool
    (typos, foreign and obsolete words, rare names) and, with `max_vocab` > 0, without sentences holding a word
    outside the `max_vocab` most frequent words of the pool (ties by spelling): a closed vocabulary that a small
    recogniser can learn from a few hours of speech.  Deterministic: file order, no randomness; `workers`
    processes parse the sources in parallel."""
    missing = missing_sources(sources, paths)
    if missing:
        raise TextSourceError("missing text sources: " + "; ".join(missing) + f"; {INSTALL_HINT}")
    if workers > 1 and len(sources) > 1:
        with concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(sources))) as ex:
            # the biggest source first, so that it does not start last
            futures = {name: ex.submit(extract_source, name, paths, min_words, max_words)
                       for name in sorted(sources, key=lambda n: n != "gcide")}
            results = {name: futures[name].result() for name in sources}
    else:
        results = {name: extract_source(name, paths, min_words, max_words) for name in sources}
    stats = PoolStats({}, {}, {}, {}, {})
    seen: set[str] = set()
    candidates: list[Sentence] = []
    for name in sources:
        raw, clean = results[name]
        dup = 0
        for spoken, norm in clean:
            if norm in seen:
                dup += 1
                continue
            seen.add(norm)
            candidates.append(Sentence(name, norm, spoken))
        stats.raw[name], stats.clean[name], stats.duplicates[name] = raw, len(clean), dup
    counts = collections.Counter(w for s in candidates for w in s.norm.split())
    vocab = (set(sorted(counts, key=lambda w: (-counts[w], w))[:max_vocab]) if max_vocab > 0 else None)
    pool = []
    for name in sources:
        stats.rare[name] = stats.kept[name] = 0
    for s in candidates:
        words = s.norm.split()
        if ((min_word_count > 1 and any(counts[w] < min_word_count for w in words))
                or (vocab is not None and any(w not in vocab for w in words))):
            stats.rare[s.source] += 1
            continue
        stats.kept[s.source] += 1
        pool.append(s)
    for name in sources:
        logger.info("%s: %d raw sentences, %d clean, %d duplicates, %d with rare words, %d kept", name,
                    stats.raw[name], stats.clean[name], stats.duplicates[name], stats.rare[name], stats.kept[name])
    return pool, stats


POOL_HEADER = "#source\tnorm\tspoken"


def write_pool(path: str | os.PathLike, pool: Sequence[Sentence]) -> None:
    atomic_write_text(path, POOL_HEADER + "\n" + "".join(f"{s.source}\t{s.norm}\t{s.spoken}\n" for s in pool))


def read_pool(path: str | os.PathLike) -> list[Sentence]:
    pool = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if lineno == 1 and line.startswith("#"):
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or not parts[1]:
                raise TextSourceError(f"{path}:{lineno}: expected 'source<TAB>norm<TAB>spoken'")
            pool.append(Sentence(*parts))
    return pool
