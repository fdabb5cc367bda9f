"""Evaluation integrity: no utterance or recording of a training set may be in an evaluation set.

A model evaluated on utterances it was trained on (paired or unpaired speech) reports a WER that says nothing
about new speech, and nothing fails: the numbers just look good.  It happens easily by hand (a speaker
directory copied into two LibriSpeech subsets, a wav.scp assembled from lists that overlap), so stage 1 of
every recipe checks its training sets against its evaluation sets and refuses any overlap, by:

  * utterance id: the same key in both sets;
  * recording: the same audio in wav.scp.  A path is compared after resolving it (`os.path.realpath`, so a
    symlink or a `./a/../a` spelling is the same file); a pipe command (`... |`) is compared as its command
    string with whitespace normalised, since running every command to compare outputs would be slow and may
    have side effects;
  * audio content (optional, on by default): the same bytes under different paths (a copied speaker
    directory).  Only files on disk are hashed (pipe commands are not).  Files of different sizes cannot be
    equal, so each file costs one `stat`; only files whose size is shared by a training file and an evaluation
    file have their first 4 KiB hashed (a FLAC header holds the MD5 of its audio; a WAV's first samples), and
    only those that still match across the two sets are hashed in full.  A corpus of 10k files is checked in
    about a second.  Files that cannot be read are skipped here (validate_data_dir --check_audio reports them).

Text-only sets (unpaired text) have no recordings; their ids are compared like any other, and the
unpaired-text preparation drops dev/test transcripts itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Iterable, Mapping, Sequence

from zipper.data.kaldi_dir import DataDirError, read_kv

logger = logging.getLogger(__name__)

MAX_OFFENDERS = 5  # examples named per overlapping pair of sets
HASH_CHUNK = 1 << 20
HEAD_BYTES = 4096  # read first for files of equal size: distinct recordings nearly always differ there already


class OverlapError(DataDirError):
    """A training set and an evaluation set share utterances or recordings; the message names both sets and the
    first few offenders."""


@dataclass
class Overlap:
    """What one training set shares with one evaluation set, by one criterion."""

    train_set: str
    eval_set: str
    kind: str  # "utterance id", "recording" or "audio content"
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (training utterance, evaluation utterance)

    def describe(self) -> str:
        shown = ", ".join(f"'{t}'" if t == e else f"'{t}' = '{e}'" for t, e in self.pairs[:MAX_OFFENDERS])
        more = f" and {len(self.pairs) - MAX_OFFENDERS} more" if len(self.pairs) > MAX_OFFENDERS else ""
        noun = "identical audio file" if self.kind == "audio content" else self.kind
        return (f"training set {self.train_set} and evaluation set {self.eval_set} share {len(self.pairs)} "
                f"{noun}{'s' if len(self.pairs) != 1 else ''}: {shown}{more}")


def recording_key(wav_value: str) -> str:
    """What identifies a recording in a wav.scp value: the resolved path, or the pipe command as written."""
    value = wav_value.strip()
    if value.endswith("|"):
        return "pipe:" + " ".join(value[:-1].split())
    return "path:" + os.path.realpath(value)


def file_digest(path: str, limit: int | None = None) -> str | None:
    """blake2b of the file's bytes (of its first `limit` bytes when given), or None when it cannot be read."""
    h = hashlib.blake2b(digest_size=20)
    try:
        with open(path, "rb") as f:
            if limit is not None:
                h.update(f.read(limit))
            else:
                while chunk := f.read(HASH_CHUNK):
                    h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _file_sizes(recordings: Mapping[str, str]) -> dict[str, int]:
    """{utt: size in bytes} for the wav.scp values that are readable files (pipes and missing files left out)."""
    sizes = {}
    for utt, value in recordings.items():
        if value.strip().endswith("|"):
            continue
        try:
            sizes[utt] = os.stat(value.strip()).st_size
        except OSError:
            continue
    return sizes


def _shared(train_keys: Mapping[str, Hashable], eval_keys: Mapping[str, Hashable]) -> list[tuple[str, str]]:
    """(train utt, eval utt) pairs whose keys are equal, sorted; {utt: key} on both sides."""
    by_key: dict[Hashable, list[str]] = defaultdict(list)
    for utt, key in eval_keys.items():
        by_key[key].append(utt)
    return sorted((t, e) for t, key in train_keys.items() for e in by_key.get(key, ()))


def find_overlaps(train_sets: Mapping[str, Mapping[str, str]], eval_sets: Mapping[str, Mapping[str, str]],
                  hash_audio: bool = True) -> list[Overlap]:
    """Every overlap between a training set and an evaluation set, each set given as {utt: wav.scp value}
    (or {utt: ""} for a set without audio).

    Each criterion is reported separately; a pair of utterances already found to be the same recording (same
    resolved path) is not reported again as the same audio content.
    """
    overlaps: list[Overlap] = []
    rec_keys = {name: {u: recording_key(v) for u, v in s.items() if v} for name, s in
                {**train_sets, **eval_sets}.items()}
    digests: dict[tuple[str, bool], str | None] = {}  # (resolved path, head only) -> digest: each read once
    sizes = {name: _file_sizes(s) for name, s in {**train_sets, **eval_sets}.items()} if hash_audio else {}

    def digest_of(value: str, head: bool) -> str | None:
        path = os.path.realpath(value.strip())
        if (path, head) not in digests:
            digests[path, head] = file_digest(path, HEAD_BYTES if head else None)
        return digests[path, head]

    def narrow(keys: Mapping[str, Hashable], other: Mapping[str, Hashable], files: Mapping[str, str], head: bool
               ) -> dict[str, tuple[Hashable, str]]:
        """{utt: (previous key, digest)} of the utterances whose previous key is also among `other`'s."""
        shared = set(keys.values()) & set(other.values())
        out = {}
        for utt, key in keys.items():
            if key in shared and (digest := digest_of(files[utt], head)) is not None:
                out[utt] = (key, digest)
        return out

    for train_name, train in train_sets.items():
        for eval_name, evals in eval_sets.items():
            if train_name == eval_name:  # the same set given on both sides is not compared with itself
                continue
            same_id = sorted((u, u) for u in set(train) & set(evals))
            if same_id:
                overlaps.append(Overlap(train_name, eval_name, "utterance id", same_id))
            same_rec = _shared(rec_keys[train_name], rec_keys[eval_name])
            if same_rec:
                overlaps.append(Overlap(train_name, eval_name, "recording", same_rec))
            if not hash_audio:
                continue
            train_keys: Mapping[str, Hashable] = sizes[train_name]
            eval_keys: Mapping[str, Hashable] = sizes[eval_name]
            for head in (True, False):  # size -> (size, first 4 KiB) -> (.., whole file), each on fewer files
                train_keys, eval_keys = (narrow(train_keys, eval_keys, train, head),
                                         narrow(eval_keys, train_keys, evals, head))
            already = set(same_rec)
            same_bytes = [p for p in _shared(train_keys, eval_keys) if p not in already]
            if same_bytes:
                overlaps.append(Overlap(train_name, eval_name, "audio content", same_bytes))
    return overlaps


def read_recordings(data_dir: str | os.PathLike) -> dict[str, str]:
    """{utt: wav.scp value} of a data dir; {utt: ""} from utt2spk (or text) for a dir without wav.scp."""
    d = Path(data_dir)
    if (d / "wav.scp").is_file():
        return read_kv(d / "wav.scp")
    for name in ("utt2spk", "text"):
        if (d / name).is_file():
            return {u: "" for u in read_kv(d / name, allow_empty_value=True)}
    raise DataDirError(f"{d}: neither wav.scp, utt2spk nor text: not a data directory")


def overlap_message(overlaps: Sequence[Overlap]) -> str:
    return ("training and evaluation data overlap (a model tested on what it was trained on):\n  "
            + "\n  ".join(o.describe() for o in overlaps)
            + "\nRemove the shared utterances from one side; or, if this is intended, pass --allow_overlap true")


def check_disjoint(train_dirs: Iterable[str | os.PathLike], eval_dirs: Iterable[str | os.PathLike],
                   hash_audio: bool = True, allow_overlap: bool = False) -> list[Overlap]:
    """Refuse (OverlapError) any utterance id, recording or audio content shared by a training data dir and an
    evaluation data dir (see the module docstring for what counts as the same).

    A dir given on both sides is not compared with itself.  allow_overlap: log the overlaps as a warning
    instead of raising, for a user who means it.  Returns the overlaps found (empty when disjoint).
    """
    names: dict[str, str] = {}  # resolved dir -> the name it is shown by (its first spelling)
    train = {names.setdefault(os.path.realpath(d), str(d)): read_recordings(d) for d in train_dirs}
    evals = {names.setdefault(os.path.realpath(d), str(d)): read_recordings(d) for d in eval_dirs}
    overlaps = find_overlaps(train, evals, hash_audio)
    if overlaps:
        if not allow_overlap:
            raise OverlapError(overlap_message(overlaps))
        logger.warning("%s (allowed by --allow_overlap)", overlap_message(overlaps).rsplit("\n", 1)[0])
    return overlaps
