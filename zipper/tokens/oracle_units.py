"""Oracle units: a transcript's characters written as a unit sequence - a diagnostic, never a result.

Why: when a fused model does not learn, two things can be at fault - the fusion (the cross-attention never
aligns) or the units (the speech tower cannot read them).  Units that *are* the characters remove the
second: if the fusion does not learn from them either, the fusion is at fault (docs/learning.md, rows O1-O5).
Each character becomes unit `index * spread + offset` (spread over the inventory's ids), repeated `frames`
times, so that the loaders' run deduplication gives the characters back (doubled letters collapse).  The
output carries the provenance of a real unit set, so that the towers and fusion accept it in its place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zipper.data.kaldi_dir import read_kv
from zipper.tokens.units import UNITS_SCP, UnitArkWriter
from zipper.utils.provenance import read_provenance, write_provenance

CHARACTERS = "abcdefghijklmnopqrstuvwxyz' "


def oracle_units(text: str, n_units: int, frames: int = 3) -> np.ndarray:
    """The characters of `text` (lower-cased; others dropped) as unit ids in [0, n_units), `frames` each."""
    spread = max(1, n_units // len(CHARACTERS))
    if spread * (len(CHARACTERS) - 1) >= n_units:
        raise ValueError(f"{n_units} units cannot hold {len(CHARACTERS)} characters")
    ids = [CHARACTERS.index(c) * spread for c in text.lower() if c in CHARACTERS]
    return np.repeat(np.asarray(ids, dtype=np.int32), frames)


def write_oracle_unit_set(text_file: str | Path, like_units_dir: str | Path, out_dir: str | Path,
                          frames: int = 3) -> int:
    """units.scp/ark, utt2num_units and the provenance of `like_units_dir` (marked `oracle_of`) for every
    utterance of a Kaldi `text` file; returns the number of utterances."""
    provenance = dict(read_provenance(like_units_dir), oracle_of=str(text_file))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = read_kv(Path(text_file))
    with open(out / "units.ark", "wb") as ark, open(out / UNITS_SCP, "w", encoding="utf-8") as scp, \
            open(out / "utt2num_units", "w", encoding="utf-8") as counts:
        writer = UnitArkWriter(ark, str(out / "units.ark"), scp)
        for utt in sorted(texts):
            units = oracle_units(texts[utt], int(provenance["n_clusters"]), frames)
            writer[utt] = units
            counts.write(f"{utt} {len(units)}\n")
    write_provenance(out, provenance, overwrite=True)
    return len(texts)
