"""Discrete speech units: int32 vectors in kaldiio ark/scp, their provenance, and load-time deduplication.

Units are stored at the feature frame rate, never deduplicated on disk: dedup (collapsing runs of the same
unit) happens when a data set is loaded, and returns the run lengths too, because a vocoder that speaks
deduplicated units needs their durations.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import kaldiio
import numpy as np

from zipper.data.kaldi_dir import read_kv
from zipper.utils.provenance import ProvenanceError, check_provenance, read_provenance

UNITS_SCP = "units.scp"
# What identifies a unit inventory: units from two sets can be mixed only if these agree.
INVENTORY_KEYS = ("kmeans_tag", "upstream", "layer", "n_clusters", "seed", "data_hash", "feature_hash")


def dedup(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Collapse runs: [5 5 5 2 2 7] -> values [5 2 7], durations [3 2 1] (sum of durations = len(units))."""
    units = np.asarray(units)
    if units.size == 0:
        return units.copy(), np.zeros(0, dtype=np.int32)
    starts = np.flatnonzero(np.concatenate(([True], units[1:] != units[:-1])))
    durations = np.diff(np.append(starts, units.size)).astype(np.int32)
    return units[starts], durations


def undedup(values: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Inverse of dedup."""
    return np.repeat(np.asarray(values), np.asarray(durations))


_ELEMENT = np.dtype([("size", "u1"), ("value", "<i4")])  # Kaldi binary int vector element: size byte + int32


def int32_vector_record(units: np.ndarray) -> bytes:
    """Kaldi binary int32 vector (as kaldiio writes and reads it), built in one numpy call.

    kaldiio writes int vectors one struct.pack per element, which made stage 5 spend a third of its time
    writing; the bytes are identical (tests compare them).
    """
    values = np.asarray(units, dtype="<i4")
    elements = np.empty(len(values), dtype=_ELEMENT)
    elements["size"] = 4
    elements["value"] = values
    return b"\0B\x04" + struct.pack("<i", len(values)) + elements.tobytes()


class UnitArkWriter:
    """Append int32 unit vectors to an ark and their `utt path:offset` lines to an scp."""

    def __init__(self, ark: BinaryIO, ark_path: str, scp: TextIO):
        self.ark, self.ark_path, self.scp = ark, ark_path, scp

    def __setitem__(self, utt: str, units: np.ndarray) -> None:
        self.ark.write(utt.encode("utf-8") + b" ")
        self.scp.write(f"{utt} {self.ark_path}:{self.ark.tell()}\n")
        self.ark.write(int32_vector_record(units))


def unit_provenance(kmeans_provenance: dict[str, Any], feats_provenance: dict[str, Any]) -> dict[str, Any]:
    prov = {k: kmeans_provenance[k] for k in INVENTORY_KEYS}
    prov["frame_shift_samples"] = kmeans_provenance.get("frame_shift_samples")
    prov["set_data_hash"] = feats_provenance["data_hash"]
    return prov


class UnitSet:
    """The units of one data set: `units[utt]` (raw) or `units.load(utt, dedup=True)` -> (values, durations)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.provenance = read_provenance(directory)
        self.scp = read_kv(self.directory / UNITS_SCP)

    def __len__(self) -> int:
        return len(self.scp)

    def keys(self):
        return self.scp.keys()

    def __getitem__(self, utt: str) -> np.ndarray:
        return np.asarray(kaldiio.load_mat(self.scp[utt]), dtype=np.int32)

    def load(self, utt: str, dedup_runs: bool = False) -> tuple[np.ndarray, np.ndarray]:
        units = self[utt]
        return dedup(units) if dedup_runs else (units, np.ones(len(units), dtype=np.int32))

    def check_inventory(self, expected: dict[str, Any], what: str) -> None:
        """Refuse units that do not come from the inventory `expected` describes (a token list, a model)."""
        check_provenance(self.provenance, expected, INVENTORY_KEYS,
                         f"units in {self.directory} vs {what}")


__all__ = ["dedup", "undedup", "int32_vector_record", "UnitArkWriter", "unit_provenance", "UnitSet", "ProvenanceError", "INVENTORY_KEYS"]
