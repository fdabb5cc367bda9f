"""Oracle units (the docs/learning.md diagnostic): the characters come back from the loaders' deduplication."""

from __future__ import annotations

import numpy as np
import pytest

from zipper.bin import make_oracle_units
from zipper.tokens.oracle_units import CHARACTERS, oracle_units
from zipper.tokens.units import UnitSet, dedup
from zipper.utils.provenance import read_provenance, write_provenance


def test_characters_as_units_and_back():
    units = oracle_units("Hi, all!", n_units=256, frames=3)
    spread = 256 // len(CHARACTERS)
    assert units.tolist() == [c * spread for c in (7, 7, 7, 8, 8, 8, 27, 27, 27, 0, 0, 0, 11, 11, 11, 11, 11, 11)]
    values, durations = dedup(units)
    assert "".join(CHARACTERS[v // spread] for v in values) == "hi al"  # "ll" collapses, as runs do
    assert durations.tolist() == [3, 3, 3, 3, 6]
    with pytest.raises(ValueError, match="cannot hold"):
        oracle_units("a", n_units=20)


def test_cli_writes_a_unit_set_with_the_real_sets_inventory(tmp_path):
    like = tmp_path / "like"
    like.mkdir()
    write_provenance(like, {"kmeans_tag": "mfcc_k64_x", "n_clusters": 64, "upstream": "mfcc"})
    (tmp_path / "text").write_text("u1 ab\nu2 b a\n", encoding="utf-8")
    make_oracle_units.main(["--text", str(tmp_path / "text"), "--like_units", str(like),
                            "--out_dir", str(tmp_path / "out"), "--frames", "2"])
    prov = read_provenance(tmp_path / "out")
    assert prov["kmeans_tag"] == "mfcc_k64_x" and prov["oracle_of"] == str(tmp_path / "text")
    units = UnitSet(tmp_path / "out")
    assert np.array_equal(units["u1"], np.asarray([0, 0, 2, 2]))  # spread 64 // 28 = 2
    assert (tmp_path / "out" / "utt2num_units").read_text() == "u1 4\nu2 6\n"
