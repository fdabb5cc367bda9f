"""Subsets of a data directory, including the nested aligned-data fractions (1% ⊂ 10% ⊂ 100%).

Nesting matters for the data-efficiency study: a model trained on 1% saw only utterances the 10% model saw too,
so the curve measures the amount of aligned data and not which utterances were drawn.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Iterable, Sequence

from zipper.data.kaldi_dir import UTT_FILES, read_kv, spk2utt_from_utt2spk, write_kv


def subset_data_dir(src: str | os.PathLike, dst: str | os.PathLike, utts: Iterable[str]) -> int:
    """Copy the per-utterance files of `src` restricted to `utts` into `dst` (regenerating spk2utt)."""
    src, dst = Path(src), Path(dst)
    keep = set(utts)
    utt2spk = read_kv(src / "utt2spk")
    unknown = keep - set(utt2spk)
    if unknown:
        raise ValueError(f"{len(unknown)} utterances are not in {src / 'utt2spk'}, e.g. {sorted(unknown)[0]}")
    dst.mkdir(parents=True, exist_ok=True)
    for name in UTT_FILES:
        if (src / name).is_file():
            table = read_kv(src / name)
            write_kv(dst / name, {u: v for u, v in table.items() if u in keep})
    write_kv(dst / "spk2utt", spk2utt_from_utt2spk({u: s for u, s in utt2spk.items() if u in keep}))
    return len(keep)


def nested_fractions(utts: Sequence[str], fractions: Sequence[float], seed: int) -> dict[float, list[str]]:
    """For each fraction in (0, 1], a sorted subset of `utts`; a smaller fraction's subset is inside a larger's.

    One seeded shuffle; fraction f takes the first round(f * N) utterances (at least one).
    """
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"fraction {f} is not in (0, 1]")
    order = sorted(utts)
    random.Random(seed).shuffle(order)
    return {f: sorted(order[:max(1, round(f * len(order)))]) for f in fractions}


def fraction_tag(fraction: float) -> str:
    """0.01 -> '1pct', 1.0 -> '100pct', 0.005 -> '0.5pct' (names of the aligned-data subsets)."""
    pct = fraction * 100
    return (f"{pct:.0f}" if abs(pct - round(pct)) < 1e-9 else f"{pct:g}") + "pct"
