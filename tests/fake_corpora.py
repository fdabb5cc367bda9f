"""Tiny fake corpus trees in the real on-disk layouts (LibriSpeech, LibriTTS, Libri-Light, the LM text).

Any test can build one in a temporary directory and know exactly what is in it: every builder returns the
utterances it wrote (id, speaker, text, audio path, number of samples).  Audio is a short sine (LibriSpeech
and Libri-Light: 16 kHz flac; LibriTTS: 24 kHz wav), so a whole tree takes a fraction of a second.

    from fake_corpora import make_librispeech   # tests/ is on sys.path (tests/conftest.py)
    fake = make_librispeech(tmp_path / "LibriSpeech")
    fake.utts["dev-clean"][0].text

Built in quirks, as in the real corpora (each documented in the builder):
- LibriSpeech: one train-other-500 transcript equals a dev-clean one, and one train-clean-360 transcript
  equals a test-other one (for the "no dev/test sentence in the unpaired text" checks).
- LibriTTS: in train-clean-100 one wav has no .normalized.txt, one has an empty one, and one .normalized.txt
  has no wav; one train-other-500 text equals a dev-clean text modulo case and punctuation.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import soundfile

WORDS = ("the", "a", "little", "house", "by", "river", "she", "said", "that", "old", "man", "was", "very", "tired",
         "and", "went", "home", "after", "dinner", "with", "his", "dog", "under", "green", "trees", "of", "morning")

# subset -> speaker -> chapter -> number of utterances.  Speaker ids are chosen so that a plain string sort
# would go wrong with '_' separators (19 / 103 / 1034: '103-...' < '1034-...' but '103_...' > '1034_...').
LIBRISPEECH_LAYOUT: dict[str, dict[str, dict[str, int]]] = {
    "train-clean-100": {"103": {"1240": 5, "1241": 4}, "1034": {"121119": 6}, "19": {"198": 5}},
    "train-clean-360": {"14": {"208": 3}, "16": {"122": 2}},
    "train-other-500": {"20": {"205": 3}},
    "dev-clean": {"84": {"121123": 3}, "174": {"50561": 2}},
    "test-clean": {"61": {"70968": 3}, "121": {"121726": 2}},
    "dev-other": {"116": {"288045": 2}},
    "test-other": {"367": {"130732": 2}},
}
LIBRITTS_LAYOUT: dict[str, dict[str, dict[str, int]]] = {
    "train-clean-100": {"103": {"1241": 4}, "1034": {"121119": 4}, "19": {"198": 5}},
    "train-clean-360": {"14": {"208": 3}},
    "train-other-500": {"20": {"205": 3}},
    "dev-clean": {"84": {"121123": 3}},
    "test-clean": {"61": {"70968": 3}},
}
GENDERS = {"103": "F", "1034": "M", "19": "F", "14": "F", "16": "M", "20": "M", "84": "F", "174": "M", "61": "M",
           "121": "F", "116": "M", "367": "F"}


@dataclass(frozen=True)
class FakeUtt:
    utt: str  # the id the data dir should use
    spk: str
    text: str  # the transcript the data dir should contain ('' for untranscribed audio)
    audio: Path
    samples: int
    rate: int

    @property
    def duration(self) -> str:
        return f"{self.samples / self.rate:.3f}"


@dataclass
class FakeCorpus:
    root: Path
    utts: dict[str, list[FakeUtt]] = field(default_factory=dict)  # subset -> utterances a data dir should hold
    skipped: dict[str, list[str]] = field(default_factory=dict)  # subset -> ids that must be left out

    def ids(self, *subsets: str) -> list[str]:
        return sorted(u.utt for s in subsets for u in self.utts[s])

    def texts(self, *subsets: str) -> dict[str, str]:
        return {u.utt: u.text for s in subsets for u in self.utts[s]}


def write_tone(path: Path, samples: int, rate: int, freq: float | None = None) -> None:
    """A sine; its frequency (by default) comes from the file's path, so that no two recordings of a tree have
    the same bytes (evaluation-integrity checks compare audio contents)."""
    name = "/".join(path.parts[-3:]).encode()  # <spk>/<chapter or book>/<file>
    freq = freq if freq is not None else 100.0 + (zlib.crc32(name) % 100_000) / 100
    t = np.arange(samples) / rate
    soundfile.write(str(path), 0.3 * np.sin(2 * np.pi * freq * t), rate, subtype="PCM_16")


def random_sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))


def make_librispeech(root: Path, layout: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None,
                     speakers_file: bool = True, seed: int = 0) -> FakeCorpus:
    """`<root>/<subset>/<spk>/<chapter>/<spk>-<chapter>-<nnnn>.flac` + `<spk>-<chapter>.trans.txt`, SPEAKERS.TXT.

    Utterance k of a chapter has 1600 + 160 * k samples at 16 kHz (0.100 s, 0.110 s, ...).
    """
    layout = LIBRISPEECH_LAYOUT if layout is None else layout
    rng = random.Random(seed)
    fake = FakeCorpus(Path(root))
    for subset, speakers in layout.items():
        fake.utts[subset] = []
        for spk, chapters in speakers.items():
            for chapter, count in chapters.items():
                directory = fake.root / subset / spk / chapter
                directory.mkdir(parents=True, exist_ok=True)
                lines = []
                for k in range(count):
                    utt = f"{spk}-{chapter}-{k:04d}"
                    text = random_sentence(rng).upper()
                    audio = directory / f"{utt}.flac"
                    write_tone(audio, 1600 + 160 * k, 16000)
                    lines.append(f"{utt} {text}\n")
                    fake.utts[subset].append(FakeUtt(utt, spk, text, audio, 1600 + 160 * k, 16000))
                (directory / f"{spk}-{chapter}.trans.txt").write_text("".join(lines), encoding="utf-8")
        fake.utts[subset].sort(key=lambda u: u.utt)
    _copy_text(fake, "dev-clean", "train-other-500")
    _copy_text(fake, "test-other", "train-clean-360")
    if speakers_file:
        rows = [";ID  |SEX| SUBSET           |MINUTES| NAME\n"]
        rows += [f"{spk:<5}| {GENDERS.get(spk, 'F')} | {subset:<16} | 1.00 | Reader {spk}\n"
                 for subset, speakers in layout.items() for spk in speakers]
        (fake.root / "SPEAKERS.TXT").write_text("; fake LibriSpeech speakers\n" + "".join(rows), encoding="utf-8")
    return fake


def _copy_text(fake: FakeCorpus, src: str, dst: str) -> None:
    """Give the first utterance of `dst` the text of the first of `src` (a dev/test sentence in training data)."""
    if src not in fake.utts or dst not in fake.utts or not fake.utts[src] or not fake.utts[dst]:
        return
    target = fake.utts[dst][0]
    text = fake.utts[src][0].text
    _set_transcript(fake.root / dst, target.utt, text)
    fake.utts[dst][0] = FakeUtt(target.utt, target.spk, text, target.audio, target.samples, target.rate)


def _set_transcript(subset_dir: Path, utt: str, text: str) -> None:
    spk, chapter, _ = utt.split("-")
    path = subset_dir / spk / chapter / f"{spk}-{chapter}.trans.txt"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(f"{utt} {text}\n" if line.split()[0] == utt else line for line in lines),
                    encoding="utf-8")


def librispeech_transcript(fake: FakeCorpus, utt: str, subset: str) -> Path:
    """The .trans.txt holding LibriSpeech utterance `utt` of `subset` (for tests that break it)."""
    spk, chapter, _ = utt.split("-")
    return fake.root / subset / spk / chapter / f"{spk}-{chapter}.trans.txt"


def make_lm_text(path: Path, sentences: Sequence[str] = (), extra: int = 30, seed: int = 1) -> list[str]:
    """An LM corpus like librispeech-lm-norm.txt: `sentences`, then `extra` random upper-case ones; returns all."""
    rng = random.Random(seed)
    lines = list(sentences) + [random_sentence(rng).upper() for _ in range(extra)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return lines


def make_libritts(root: Path, layout: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None,
                  quirks: bool = True, seed: int = 0) -> FakeCorpus:
    """`<root>/<subset>/<spk>/<chapter>/<spk>_<chapter>_<nnnnnn>_<mmmmmm>.wav` + .normalized.txt + .original.txt.

    24 kHz; utterance k of a chapter has 2400 + 240 * k samples.  FakeUtt.utt is the converted '-' id.
    With `quirks` (see the module docstring) the affected utterances are in `skipped`, not `utts`.
    """
    layout = LIBRITTS_LAYOUT if layout is None else layout
    rng = random.Random(seed)
    fake = FakeCorpus(Path(root))
    for subset, speakers in layout.items():
        fake.utts[subset] = []
        fake.skipped[subset] = []
        for spk, chapters in speakers.items():
            for chapter, count in chapters.items():
                directory = fake.root / subset / spk / chapter
                directory.mkdir(parents=True, exist_ok=True)
                for k in range(count):
                    native = f"{spk}_{chapter}_{k // 2:06d}_{k % 2:06d}"
                    words = random_sentence(rng)
                    text = words[0].upper() + words[1:] + ", said he."
                    audio = directory / f"{native}.wav"
                    write_tone(audio, 2400 + 240 * k, 24000)
                    (directory / f"{native}.normalized.txt").write_text(text, encoding="utf-8")
                    (directory / f"{native}.original.txt").write_text(text.replace("said", "SAID"),
                                                                      encoding="utf-8")
                    fake.utts[subset].append(FakeUtt(native.replace("_", "-"), spk, text, audio,
                                                     2400 + 240 * k, 24000))
                (directory / f"{spk}_{chapter}.book.tsv").write_text("", encoding="utf-8")
        fake.utts[subset].sort(key=lambda u: u.utt)
    if quirks and "train-clean-100" in fake.utts and len(fake.utts["train-clean-100"]) >= 3:
        utts = fake.utts["train-clean-100"]
        no_text, empty = utts[0], utts[1]
        no_text.audio.with_name(no_text.audio.stem + ".normalized.txt").unlink()
        empty.audio.with_name(empty.audio.stem + ".normalized.txt").write_text(" \n", encoding="utf-8")
        orphan = no_text.audio.with_name(no_text.audio.stem.rsplit("_", 1)[0] + "_000099.normalized.txt")
        orphan.write_text("Text without audio.", encoding="utf-8")
        fake.skipped["train-clean-100"] += [no_text.utt, empty.utt]
        fake.utts["train-clean-100"] = utts[2:]
    if quirks and "dev-clean" in fake.utts and "train-other-500" in fake.utts:
        dev = fake.utts["dev-clean"][0]
        target = fake.utts["train-other-500"][0]
        text = '"' + dev.text.upper().replace(",", "") + '"'  # same words, other case and punctuation
        target.audio.with_name(target.audio.stem + ".normalized.txt").write_text(text, encoding="utf-8")
        fake.utts["train-other-500"][0] = FakeUtt(target.utt, target.spk, text, target.audio, target.samples,
                                                  target.rate)
    rows = [";ID  |SEX| SUBSET           |MINUTES| NAME\n"]
    rows += [f"{spk:<5}| {GENDERS.get(spk, 'F')} | {subset:<16} | 1.00 | Reader {spk}\n"
             for subset, speakers in layout.items() for spk in speakers]
    (fake.root / "SPEAKERS.txt").write_text("".join(rows), encoding="utf-8")
    return fake


LIBRILIGHT_LAYOUT: dict[str, dict[str, dict[str, int]]] = {
    "small": {"100": {"sea_fairies_0812_librivox_64kb_mp3": 2}, "1001": {"emma_1234_librivox": 1}},
    "medium": {"2000": {"some book (abridged)": 2}},
}


def make_librilight(root: Path, layout: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None
                    ) -> FakeCorpus:
    """`<root>/<small|medium|large>/<spk>/<book>/<nn>_<book>.flac` with a .json beside each, no transcripts.

    FakeUtt.utt is `<spk>-<book>-<file>` with characters other than [A-Za-z0-9_.-] replaced by '_'.
    """
    import re

    layout = LIBRILIGHT_LAYOUT if layout is None else layout
    fake = FakeCorpus(Path(root))
    for subset, speakers in layout.items():
        fake.utts[subset] = []
        for spk, books in speakers.items():
            for book, count in books.items():
                directory = fake.root / subset / spk / book
                directory.mkdir(parents=True, exist_ok=True)
                for k in range(count):
                    stem = f"{k + 1:02d}_chapter_64kb"
                    audio = directory / f"{stem}.flac"
                    write_tone(audio, 8000 + 800 * k, 16000)
                    (directory / f"{stem}.json").write_text("{}", encoding="utf-8")
                    utt = f"{spk}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', book)}-{stem}"
                    fake.utts[subset].append(FakeUtt(utt, spk, "", audio, 8000 + 800 * k, 16000))
        fake.utts[subset].sort(key=lambda u: u.utt)
    return fake
