"""Word error rates with jiwer, and the files an sclite/icefall user reads: result.txt, errs-*, recogs-*,
wer-summary-*, and per_utt.tsv (per-utterance counts, machine-readable, for significance tests).

Normalisation (configurable) happens before alignment: lower-case and punctuation stripped by default, so that
"Hello, world." and "hello world" are the same words.  Counts are sclite's: Snt, Wrd (reference words), Corr,
Sub, Del, Ins, Err = Sub + Del + Ins, S.Err (sentences with any error); percentages are of Wrd (and of Snt).
"""

from __future__ import annotations

import dataclasses
import re
import string
import unicodedata
from pathlib import Path
from typing import Mapping, Sequence

import jiwer

from zipper.utils.atomic import atomic_write_text

PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}\u2018\u2019\u201c\u201d\u2013\u2014\u2026]")


@dataclasses.dataclass
class Normalizer:
    lowercase: bool = True
    strip_punctuation: bool = True
    keep_apostrophes: bool = True  # "don't" stays one word

    def __call__(self, text: str) -> str:
        text = unicodedata.normalize("NFKC", text)
        if self.lowercase:
            text = text.lower()
        if self.strip_punctuation:
            if self.keep_apostrophes:
                text = re.sub(r"(?<=\w)'(?=\w)", "\x00", text)
            text = PUNCTUATION.sub(" ", text).replace("\x00", "'")
        return " ".join(text.split())


@dataclasses.dataclass
class Counts:
    snt: int = 0
    wrd: int = 0
    corr: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    snt_err: int = 0

    @property
    def err(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def wer(self) -> float:
        return 100.0 * self.err / max(self.wrd, 1)

    def row(self) -> dict[str, float]:
        pct = lambda n: 100.0 * n / max(self.wrd, 1)  # noqa: E731
        return {"Snt": self.snt, "Wrd": self.wrd, "Corr": pct(self.corr), "Sub": pct(self.sub),
                "Del": pct(self.dele), "Ins": pct(self.ins), "Err": pct(self.err),
                "S.Err": 100.0 * self.snt_err / max(self.snt, 1)}


@dataclasses.dataclass
class Alignment:
    utt: str
    pairs: list[tuple[str, str, str]]  # (op, ref word or "", hyp word or ""), op in C S D I
    counts: Counts


def align(refs: Mapping[str, str], hyps: Mapping[str, str], normalizer: Normalizer | None = None
          ) -> tuple[Counts, list[Alignment]]:
    """Align every reference utterance with its hypothesis (a missing hypothesis is empty)."""
    normalizer = normalizer or Normalizer()
    utts = list(refs)
    ref_texts = [normalizer(refs[u]) for u in utts]
    empty = [u for u, r in zip(utts, ref_texts) if not r]
    if empty:
        raise ValueError(f"reference of '{empty[0]}' is empty after normalisation")
    hyp_texts = [normalizer(hyps.get(u, "")) for u in utts]
    out = jiwer.process_words(ref_texts, hyp_texts)
    total = Counts()
    alignments = []
    for utt, ref_words, hyp_words, chunks in zip(utts, out.references, out.hypotheses, out.alignments):
        counts = Counts(snt=1, wrd=len(ref_words))
        pairs: list[tuple[str, str, str]] = []
        for c in chunks:
            if c.type == "equal":
                pairs += [("C", ref_words[i], hyp_words[j]) for i, j in
                          zip(range(c.ref_start_idx, c.ref_end_idx), range(c.hyp_start_idx, c.hyp_end_idx))]
                counts.corr += c.ref_end_idx - c.ref_start_idx
            elif c.type == "substitute":
                pairs += [("S", ref_words[i], hyp_words[j]) for i, j in
                          zip(range(c.ref_start_idx, c.ref_end_idx), range(c.hyp_start_idx, c.hyp_end_idx))]
                counts.sub += c.ref_end_idx - c.ref_start_idx
            elif c.type == "delete":
                pairs += [("D", ref_words[i], "") for i in range(c.ref_start_idx, c.ref_end_idx)]
                counts.dele += c.ref_end_idx - c.ref_start_idx
            elif c.type == "insert":
                pairs += [("I", "", hyp_words[j]) for j in range(c.hyp_start_idx, c.hyp_end_idx)]
                counts.ins += c.hyp_end_idx - c.hyp_start_idx
        counts.snt_err = int(counts.err > 0)
        for field in ("snt", "wrd", "corr", "sub", "dele", "ins", "snt_err"):
            setattr(total, field, getattr(total, field) + getattr(counts, field))
        alignments.append(Alignment(utt, pairs, counts))
    return total, alignments


def character_error_rate(refs: Mapping[str, str], hyps: Mapping[str, str],
                         normalizer: Normalizer | None = None) -> float:
    """CER in % (spaces count as characters, as in jiwer's cer); texts normalised first when a normalizer is given."""
    norm = normalizer or (lambda text: text)
    utts = list(refs)
    return 100.0 * jiwer.cer([norm(refs[u]) for u in utts], [norm(hyps.get(u, "")) for u in utts])


def format_result(name: str, counts: Counts) -> str:
    """An sclite-like summary table."""
    row = counts.row()
    head = "| SPKR | # Snt | # Wrd | Corr | Sub | Del | Ins | Err | S.Err |"
    line = (f"| {name} | {row['Snt']} | {row['Wrd']} | {row['Corr']:.1f} | {row['Sub']:.1f} | {row['Del']:.1f} | "
            f"{row['Ins']:.1f} | {row['Err']:.1f} | {row['S.Err']:.1f} |")
    return f"{head}\n{line}\n"


def format_alignment(a: Alignment) -> str:
    """sclite-style: REF and HYP lines with errors upper-cased and *** for missing words, plus Eval line."""
    ref, hyp, ev = [], [], []
    for op, r, h in a.pairs:
        width = max(len(r), len(h), 3 if op in "ID" else 0)
        if op == "C":
            ref.append(r.ljust(width))
            hyp.append(h.ljust(width))
            ev.append(" " * width)
        else:
            ref.append((r.upper() if r else "*" * width).ljust(width))
            hyp.append((h.upper() if h else "*" * width).ljust(width))
            ev.append(op.ljust(width))
    c = a.counts
    return (f"id: ({a.utt})\nScores: (#C #S #D #I) {c.corr} {c.sub} {c.dele} {c.ins}\n"
            f"REF:  {' '.join(ref)}\nHYP:  {' '.join(hyp)}\nEval: {' '.join(ev)}\n\n")


def write_scoring(out_dir: str | Path, name: str, refs: Mapping[str, str], hyps: Mapping[str, str],
                  normalizer: Normalizer | None = None) -> Counts:
    """result.txt, errs-<name>.txt, recogs-<name>.txt and wer-summary-<name>.txt in out_dir."""
    out_dir = Path(out_dir)
    normalizer = normalizer or Normalizer()
    total, alignments = align(refs, hyps, normalizer)
    atomic_write_text(out_dir / "result.txt", format_result(name, total))
    atomic_write_text(out_dir / f"errs-{name}.txt",
                      f"%WER {total.wer:.2f} [ {total.err} / {total.wrd}, {total.ins} ins, {total.dele} del, "
                      f"{total.sub} sub ]\n\n" + "".join(format_alignment(a) for a in alignments))
    atomic_write_text(out_dir / f"recogs-{name}.txt", "".join(
        f"{u}:\tref={normalizer(refs[u]).split()}\n{u}:\thyp={normalizer(hyps.get(u, '')).split()}\n" for u in refs))
    atomic_write_text(out_dir / f"wer-summary-{name}.txt", f"settings\tWER\n{name}\t{total.wer:.2f}\n")
    atomic_write_text(out_dir / PER_UTT_FILE, format_per_utt(alignments))
    return total


PER_UTT_FILE = "per_utt.tsv"  # beside result.txt: one row per utterance, for significance tests and intervals
PER_UTT_HEADER = ("utt", "ref_words", "errors", "sub", "del", "ins")


def format_per_utt(alignments: Sequence[Alignment]) -> str:
    """Tab-separated per-utterance counts with a header line (what zipper.scoring.significance needs: errors and
    reference words of each utterance, so that two systems can be compared on the same utterances)."""
    rows = ["\t".join(PER_UTT_HEADER)]
    rows += [f"{a.utt}\t{a.counts.wrd}\t{a.counts.err}\t{a.counts.sub}\t{a.counts.dele}\t{a.counts.ins}"
             for a in alignments]
    return "\n".join(rows) + "\n"


def read_per_utt(path: str | Path) -> dict[str, tuple[int, int]]:
    """{utt: (reference words, errors)} from a per_utt.tsv; a malformed file is a ValueError naming file:line."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != PER_UTT_HEADER:
        raise ValueError(f"{path}:1: expected the header {' '.join(PER_UTT_HEADER)!r}")
    out: dict[str, tuple[int, int]] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        try:
            if len(fields) != len(PER_UTT_HEADER) or fields[0] in out:
                raise ValueError
            out[fields[0]] = (int(fields[1]), int(fields[2]))
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected {len(PER_UTT_HEADER)} tab-separated fields with a new "
                             f"utterance id and integer counts, got {line!r}") from None
    return out


def score_files(ref_text: str | Path, hyp_text: str | Path, exclude: Sequence[str] = ()) -> tuple[dict, dict]:
    from zipper.data.kaldi_dir import read_kv

    refs = {u: t for u, t in read_kv(ref_text).items() if u not in set(exclude)}
    hyps = read_kv(hyp_text, allow_empty_value=True)
    return refs, hyps
