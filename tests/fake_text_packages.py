"""Tiny look-alikes of the Debian text packages synth_en draws sentences from (fortunes, WordNet, GCIDE)."""

from __future__ import annotations

import itertools
from pathlib import Path


def make_text_packages(root: Path) -> dict[str, str]:
    """Fortunes, WordNet and GCIDE look-alikes with ~40 distinct clean sentences."""
    adjectives = ["quiet", "bright", "heavy", "gentle", "narrow"]
    nouns = ["river", "garden", "window", "letter", "mountain", "kitchen", "pocket", "candle"]
    sentences = [f"The {a} {n} stood alone beside the old road."
                 for a, n in itertools.islice(itertools.product(adjectives, nouns), 30)]
    (root / "fortunes").mkdir(parents=True)
    (root / "fortunes" / "wisdom").write_text("".join(f"{s}\n%\n" for s in sentences[:20]))
    (root / "wordnet").mkdir()
    gloss = "; ".join(s.rstrip(".").lower() for s in sentences[20:25])
    (root / "wordnet" / "data.noun").write_text(f"00001740 03 n 01 entity 0 000 | {gloss}  \n")
    for part in ("verb", "adj", "adv"):
        (root / "wordnet" / f"data.{part}").write_text("")
    entries = "".join(f"Word{i} \\Word{i}\\, n. [L. word.]\n   1. {s}\n      [1913 Webster]\n\n"
                      for i, s in enumerate(sentences[25:]))
    (root / "gcide.txt").write_text(entries)
    return {"FORTUNES": str(root / "fortunes"), "WORDNET": str(root / "wordnet"), "GCIDE": str(root / "gcide.txt")}
