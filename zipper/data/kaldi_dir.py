"""Kaldi data directories: read, write, validate, fix, split, filter.

The contract (as in Kaldi's `utils/validate_data_dir.sh`): every file is UTF-8 `<key> <value>` lines, sorted
by key in C-locale (byte) order with no duplicates; `utt2spk` and `spk2utt` agree; utterance ids start with
their speaker id, so that sorting by utterance also sorts by speaker; `wav.scp`, `text` and the optional
per-utterance files cover the same utterances.  Python compares `str` by code point, which for UTF-8 is
byte order, so `sorted()` here equals `LC_ALL=C sort`.

Every error names the file and the line (or the utterance) so that a user can go and fix it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from zipper.utils.atomic import atomic_write_text

# Files keyed by utterance id that the recipes read or write.  (`segments` is not supported: our corpora
# have one utterance per recording; a data dir with `segments` is refused with a clear message.)
UTT_FILES = ("wav.scp", "text", "utt2spk", "utt2dur", "utt2num_samples", "feats.scp", "units.scp", "utt2gender")
MAX_REPORTED = 20


class DataDirError(ValueError):
    """A data directory breaks the Kaldi contract; the message lists every problem found (up to a limit)."""

    def __init__(self, problems: Sequence[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        shown = self.problems[:MAX_REPORTED]
        more = len(self.problems) - len(shown)
        super().__init__("\n".join(shown) + (f"\n... and {more} more problems" if more > 0 else ""))


@dataclass(frozen=True)
class Entry:
    lineno: int
    key: str
    value: str


def read_entries(path: str | os.PathLike, allow_empty_value: bool = False) -> list[Entry]:
    """Parse `<key> <value>` lines, raising DataDirError (file:line) for bad encoding or malformed lines."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataDirError(f"{path}: cannot read: {e}") from e
    entries: list[Entry] = []
    problems: list[str] = []
    for lineno, line_bytes in enumerate(raw.split(b"\n"), start=1):
        if line_bytes == b"" and lineno == raw.count(b"\n") + 1:
            break  # after the final newline
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})")
            continue
        line = line.rstrip("\r")
        if not line.strip():
            problems.append(f"{path}:{lineno}: empty line")
            continue
        parts = line.strip().split(maxsplit=1)
        key = parts[0]
        value = parts[1].strip() if len(parts) > 1 else ""
        if not value and not allow_empty_value:
            problems.append(f"{path}:{lineno}: '{key}' has no value")
            continue
        entries.append(Entry(lineno, key, value))
    if problems:
        raise DataDirError(problems)
    return entries


def read_kv(path: str | os.PathLike, allow_empty_value: bool = False) -> dict[str, str]:
    """`{key: value}` in file order; duplicate keys are an error."""
    table: dict[str, str] = {}
    problems = []
    for e in read_entries(path, allow_empty_value):
        if e.key in table:
            problems.append(f"{path}:{e.lineno}: duplicate key '{e.key}'")
        table[e.key] = e.value
    if problems:
        raise DataDirError(problems)
    return table


def write_kv(path: str | os.PathLike, table: dict[str, str] | Iterable[tuple[str, str]]) -> None:
    """Write `<key> <value>` lines sorted in C-locale order, atomically."""
    items = sorted(table.items() if isinstance(table, dict) else table, key=lambda kv: kv[0])
    atomic_write_text(path, "".join(f"{k} {v}\n" for k, v in items))


def spk2utt_from_utt2spk(utt2spk: dict[str, str]) -> dict[str, str]:
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in sorted(spk2utt.items())}


def check_sorted_unique(path: Path, entries: list[Entry]) -> list[str]:
    problems = []
    seen: set[str] = set()
    prev: Entry | None = None
    for e in entries:
        if e.key in seen:
            problems.append(f"{path}:{e.lineno}: duplicate key '{e.key}'")
        elif prev is not None and e.key < prev.key:
            problems.append(f"{path}:{e.lineno}: '{e.key}' comes after '{prev.key}' (line {prev.lineno}); "
                            "the file must be sorted in C-locale order (LC_ALL=C sort)")
        seen.add(e.key)
        prev = e
    return problems


def validate_data_dir(data_dir: str | os.PathLike, *, need_text: bool = True, need_wav: bool = True,
                      check_audio: bool = False, fs: int | None = None) -> int:
    """Check `data_dir` against the Kaldi contract; return its number of utterances or raise DataDirError.

    check_audio: also open every recording (soundfile header only; pipes are run) and check the sample rate
    against `fs` when given.
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise DataDirError(f"{d}: data directory does not exist")
    if (d / "segments").exists():
        raise DataDirError(f"{d / 'segments'}: segments files are not supported; give one recording per utterance")
    required = ["utt2spk", "spk2utt"] + (["text"] if need_text else []) + (["wav.scp"] if need_wav else [])
    missing = [name for name in required if not (d / name).is_file()]
    if missing:
        raise DataDirError([f"{d / name}: required file is missing" for name in missing])

    problems: list[str] = []
    tables: dict[str, dict[str, str]] = {}
    lines: dict[str, dict[str, int]] = {}
    for name in ("utt2spk", "spk2utt") + tuple(n for n in UTT_FILES if n != "utt2spk"):
        path = d / name
        if not path.is_file():
            continue
        try:
            entries = read_entries(path)
        except DataDirError as e:
            problems.extend(e.problems)
            continue
        problems.extend(check_sorted_unique(path, entries))
        tables[name] = {e.key: e.value for e in entries}
        lines[name] = {e.key: e.lineno for e in entries}
    if problems:
        raise DataDirError(problems)

    utt2spk = tables["utt2spk"]
    if not utt2spk:
        raise DataDirError(f"{d / 'utt2spk'}: no utterances")
    for utt, spk in utt2spk.items():
        if len(spk.split()) != 1:
            problems.append(f"{d / 'utt2spk'}:{lines['utt2spk'][utt]}: '{utt}' must map to exactly one speaker id")
        elif not utt.startswith(spk):
            problems.append(f"{d / 'utt2spk'}:{lines['utt2spk'][utt]}: utterance id '{utt}' does not start with "
                            f"its speaker id '{spk}' (Kaldi sorting needs the speaker prefix)")
    expected_spk2utt = spk2utt_from_utt2spk(utt2spk)
    if tables["spk2utt"] != expected_spk2utt:
        bad = sorted(set(tables["spk2utt"].items()) ^ set(expected_spk2utt.items()))
        spk = bad[0][0]
        problems.append(f"{d / 'spk2utt'}: does not match utt2spk (first difference at speaker '{spk}'); "
                        "regenerate it from utt2spk (utils/fix_data_dir.sh)")

    for name in UTT_FILES:
        if name == "utt2spk" or name not in tables:
            continue
        have, path = tables[name], d / name
        for utt in sorted(set(utt2spk) - set(have))[:MAX_REPORTED]:
            problems.append(f"{path}: utterance '{utt}' (utt2spk line {lines['utt2spk'][utt]}) is missing")
        for utt in sorted(set(have) - set(utt2spk))[:MAX_REPORTED]:
            problems.append(f"{path}:{lines[name][utt]}: utterance '{utt}' is not in utt2spk")
    if "text" in tables:
        for utt, line in lines["text"].items():
            if not tables["text"][utt].strip():
                problems.append(f"{d / 'text'}:{line}: utterance '{utt}' has an empty transcript")
    if problems:
        raise DataDirError(problems)

    if check_audio and "wav.scp" in tables:
        from zipper.data.audio import AudioError, audio_info

        for utt, value in tables["wav.scp"].items():
            try:
                rate, _ = audio_info(value)
            except AudioError as e:
                problems.append(f"{d / 'wav.scp'}:{lines['wav.scp'][utt]}: utterance '{utt}': {e}")
                continue
            if fs is not None and rate != fs:
                problems.append(f"{d / 'wav.scp'}:{lines['wav.scp'][utt]}: utterance '{utt}' has sample rate "
                                f"{rate} Hz, expected {fs} Hz")
        if problems:
            raise DataDirError(problems)
    return len(utt2spk)


def fix_data_dir(data_dir: str | os.PathLike) -> tuple[int, int]:
    """Keep only utterances present in every per-utterance file, sort everything, regenerate spk2utt.

    The originals go to `<data_dir>/.backup/` (as Kaldi's fix_data_dir.sh does).  Returns (kept, removed).
    Lines that cannot be parsed at all (bad UTF-8) are still an error: fixing must not guess.
    """
    d = Path(data_dir)
    if not (d / "utt2spk").is_file():
        raise DataDirError(f"{d / 'utt2spk'}: required file is missing")
    present = [name for name in UTT_FILES if (d / name).is_file()]
    tables = {name: _read_last_wins(d / name) for name in present}
    keep = set(tables["utt2spk"])
    for name, table in tables.items():
        keep &= set(table)
    if "text" in tables:
        keep = {u for u in keep if tables["text"][u].strip()}
    keep = {u for u in keep if u.startswith(tables["utt2spk"][u])}
    backup = d / ".backup"
    backup.mkdir(exist_ok=True)
    for name in present + (["spk2utt"] if (d / "spk2utt").exists() else []):
        shutil.copy2(d / name, backup / name)
    for name, table in tables.items():
        write_kv(d / name, {u: v for u, v in table.items() if u in keep})
    utt2spk = {u: tables["utt2spk"][u] for u in keep}
    write_kv(d / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    return len(keep), len(tables["utt2spk"]) - len(keep)


def _read_last_wins(path: Path) -> dict[str, str]:
    return {e.key: e.value for e in read_entries(path, allow_empty_value=True)}


def split_lines(lines: Sequence[str], n: int, utt2spk: dict[str, str] | None = None) -> list[list[str]]:
    """Split scp lines into `n` contiguous parts as even as possible (Kaldi's split_scp.pl).

    With `utt2spk`, a speaker's utterances stay in one part (needs at least `n` speakers).
    """
    if n < 1:
        raise ValueError(f"cannot split into {n} parts")
    if utt2spk is None:
        if len(lines) < n:
            raise ValueError(f"cannot split {len(lines)} lines into {n} non-empty parts")
        base, extra = divmod(len(lines), n)
        parts, start = [], 0
        for i in range(n):
            size = base + (1 if i < extra else 0)
            parts.append(list(lines[start:start + size]))
            start += size
        return parts
    groups: dict[str, list[str]] = {}
    for line in lines:
        key = line.split(maxsplit=1)[0]
        if key not in utt2spk:
            raise ValueError(f"utterance '{key}' is not in utt2spk")
        groups.setdefault(utt2spk[key], []).append(line)
    speakers = list(groups)
    if len(speakers) < n:
        raise ValueError(f"cannot split {len(speakers)} speakers into {n} parts")
    # fill parts in speaker order, moving on when a part has its share (or when each part left needs a speaker)
    parts: list[list[str]] = [[] for _ in range(n)]
    target = len(lines) / n
    part, placed = 0, 0
    for i, spk in enumerate(speakers):
        parts[part].extend(groups[spk])
        placed += len(groups[spk])
        parts_left, speakers_left = n - part - 1, len(speakers) - i - 1
        if parts_left and (placed >= target * (part + 1) or speakers_left == parts_left):
            part += 1
    return parts


def filter_lines(lines: Iterable[str], ids: set[str], exclude: bool = False, field: int = 0) -> list[str]:
    """Lines whose `field`-th whitespace-separated token is (or, with exclude, is not) in `ids`."""
    out = []
    for line in lines:
        tokens = line.split()
        if not tokens:
            continue
        if (tokens[field] in ids) != exclude:
            out.append(line)
    return out
