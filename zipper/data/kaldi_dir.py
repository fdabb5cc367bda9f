"""Kaldi data directories: read, write, validate, fix, split, filter.

The contract (as in Kaldi's `utils/validate_data_dir.sh`): every file is UTF-8 `<key> <value>` lines, sorted
by key in C-locale (byte) order with no duplicates; `utt2spk` and `spk2utt` agree; utterance ids start with
their speaker id, and sorting utterances by id gives the same order as sorting them by (speaker, id), so
that a split by utterance is also a split by speaker; `wav.scp`, `text` and the optional per-utterance files
cover the same utterances.  Python compares `str` by code point, which for UTF-8 is byte order, so `sorted()`
here equals `LC_ALL=C sort`.

Fields are separated by ASCII whitespace only (as Kaldi's tools do): a no-break space inside a transcript
is part of a word, not a separator.

Every error names the file and the line (or the utterance) so that a user can go and fix it.
"""

from __future__ import annotations

import filecmp
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from zipper.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

# Files keyed by utterance id that the recipes read or write.  (`segments` is not supported: our corpora
# have one utterance per recording; a data dir with `segments` is refused with a clear message.)
UTT_FILES = ("wav.scp", "text", "utt2spk", "utt2dur", "utt2num_samples", "feats.scp", "units.scp", "utt2gender")
# Files keyed by speaker id that fix_data_dir keeps in step with utt2spk (spk2utt is regenerated).
SPK_FILES = ("spk2gender",)
MAX_REPORTED = 20
BACKUP_DIR = ".backup"

_BLANKS = " \t\r\n\f\v"
_FIELD_SEP = re.compile(r"[ \t\r\n\f\v]+")


def split_fields(text: str) -> list[str]:
    """Whitespace-separated fields, ASCII whitespace only (unlike `str.split()`, which also splits at U+00A0)."""
    return [t for t in _FIELD_SEP.split(text) if t]


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


def read_entries(path: str | os.PathLike, allow_empty_value: bool = False, *,
                 skip_empty_lines: bool = False) -> list[Entry]:
    """Parse `<key> <value>` lines, raising DataDirError (file:line) for bad encoding or malformed lines.

    skip_empty_lines: drop blank lines instead of reporting them (fixing a dir may drop them: they hold nothing).
    """
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataDirError(f"{path}: cannot read: {e}") from e
    raw_lines = raw.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()  # what follows the final newline
    entries: list[Entry] = []
    problems: list[str] = []
    for lineno, line_bytes in enumerate(raw_lines, start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start + 1} of the line)")
            continue
        line = line.strip(_BLANKS)
        if not line:
            if not skip_empty_lines:
                problems.append(f"{path}:{lineno}: empty line")
            continue
        parts = _FIELD_SEP.split(line, maxsplit=1)
        key = parts[0]
        value = parts[1].strip(_BLANKS) if len(parts) > 1 else ""
        if not value and not allow_empty_value:
            problems.append(f"{path}:{lineno}: '{key}' has no value")
            continue
        entries.append(Entry(lineno, key, value))
    if problems:
        raise DataDirError(problems)
    return entries


def read_lines(path: str | os.PathLike, data: bytes | None = None) -> list[str]:
    """The lines of a text file (without their newlines), raising DataDirError (file:line) for bad UTF-8.

    data: the file's bytes when already read (e.g. from stdin); `path` then only names it in errors.
    """
    if data is None:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise DataDirError(f"{path}: cannot read: {e.strerror or e}") from e
    raw_lines = data.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()
    lines, problems = [], []
    for lineno, line_bytes in enumerate(raw_lines, start=1):
        try:
            lines.append(line_bytes.decode("utf-8"))
        except UnicodeDecodeError as e:
            problems.append(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start + 1} of the line)")
    if problems:
        raise DataDirError(problems)
    return lines


def read_kv(path: str | os.PathLike, allow_empty_value: bool = False) -> dict[str, str]:
    """`{key: value}` in file order; duplicate keys are an error."""
    table: dict[str, str] = {}
    first_line: dict[str, int] = {}
    problems = []
    for e in read_entries(path, allow_empty_value):
        if e.key in table:
            problems.append(f"{path}:{e.lineno}: duplicate key '{e.key}' (first on line {first_line[e.key]})")
            continue
        table[e.key] = e.value
        first_line[e.key] = e.lineno
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
    first_line: dict[str, int] = {}
    prev: Entry | None = None
    for e in entries:
        if e.key in first_line:
            problems.append(f"{path}:{e.lineno}: duplicate key '{e.key}' (first on line {first_line[e.key]})")
        elif prev is not None and e.key < prev.key:
            problems.append(f"{path}:{e.lineno}: '{e.key}' comes after '{prev.key}' (line {prev.lineno}); "
                            "the file must be sorted in C-locale order (LC_ALL=C sort)")
        first_line.setdefault(e.key, e.lineno)
        prev = e
    return problems


def check_speaker_sort(path: Path, utt2spk: dict[str, str], lines: dict[str, int]) -> list[str]:
    """Kaldi's sort-consistency rule: utterances sorted by id must also be sorted by speaker.

    It is enough to look at neighbours: the two orders agree iff the speakers never go down along the
    utterance order.  The classic failure is a speaker id that is a prefix of another followed by '_'
    ('19_198_x' of speaker '19' sorts after '190_1_y' of speaker '190', since '0' < '_').
    """
    problems = []
    utts = sorted(utt2spk)
    for prev, utt in zip(utts, utts[1:]):
        if utt2spk[utt] < utt2spk[prev]:
            where = f"{path}:{lines[utt]}" if utt in lines else str(path)
            prev_line = f", line {lines[prev]}" if prev in lines else ""
            problems.append(
                f"{where}: utterance '{utt}' (speaker '{utt2spk[utt]}') sorts after "
                f"'{prev}' (speaker '{utt2spk[prev]}'{prev_line}) but its speaker sorts before; "
                "sorting by utterance must also sort by speaker: join speaker and the rest of the id with '-' "
                "(e.g. '19-198-x'), which sorts before digits and letters, instead of '_'")
    return problems


def _check_numbers(path: Path, table: dict[str, str], lines: dict[str, int], integer: bool) -> list[str]:
    problems = []
    for key, value in table.items():
        try:
            number = int(value) if integer else float(value)
        except ValueError:
            number = None
        if number is None or not number > 0:
            kind = "a positive integer" if integer else "a positive number"
            problems.append(f"{path}:{lines[key]}: utterance '{key}': '{value}' is not {kind}")
    return problems


def _check_spk2utt(path: Path, spk2utt: dict[str, str], lines: dict[str, int], utt2spk: dict[str, str],
                   utt2spk_lines: dict[str, int]) -> list[str]:
    """spk2utt must list, for each speaker of utt2spk, exactly its utterances in sorted order."""
    expected: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        expected.setdefault(utt2spk[utt], []).append(utt)
    problems = []
    for spk, value in spk2utt.items():
        listed = split_fields(value)
        where = f"{path}:{lines[spk]}: speaker '{spk}'"
        if spk not in expected:
            problems.append(f"{where} has no utterance in utt2spk")
            continue
        if listed == expected[spk]:
            continue
        extra = sorted(set(listed) - set(expected[spk]))
        missing = sorted(set(expected[spk]) - set(listed))
        if extra:
            problems.append(f"{where} lists {', '.join(repr(u) for u in extra[:5])} which utt2spk does not give it")
        if missing:
            problems.append(f"{where} lacks {', '.join(repr(u) for u in missing[:5])} which utt2spk gives it")
        if not extra and not missing:
            problems.append(f"{where}: its utterances are repeated or not in sorted order")
    for spk in sorted(set(expected) - set(spk2utt)):
        first = expected[spk][0]
        problems.append(f"{path}: speaker '{spk}' (utterance '{first}', utt2spk line {utt2spk_lines[first]}) "
                        "is missing")
    if problems:
        problems.append(f"{path}: regenerate it from utt2spk (utils/fix_data_dir.sh)")
    return problems


def validate_data_dir(data_dir: str | os.PathLike, *, need_text: bool = True, need_wav: bool = True,
                      check_audio: bool = False, fs: int | None = None,
                      disjoint_from: Sequence[str | os.PathLike] = (), hash_audio: bool = True,
                      allow_overlap: bool = False) -> int:
    """Check `data_dir` against the Kaldi contract; return its number of utterances or raise DataDirError.

    check_audio: also open every recording (soundfile header only; pipes are run) and check the sample rate
    against `fs` when given.
    disjoint_from: data dirs (the evaluation sets, when `data_dir` is a training set) that must share no
    utterance id, recording or (with hash_audio) audio content with it: zipper.data.overlap.check_disjoint,
    which raises OverlapError naming both sets and the first offenders (a warning with allow_overlap).
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
            # an empty transcript gets its own message below
            entries = read_entries(path, allow_empty_value=(name == "text"))
        except DataDirError as e:
            problems.extend(e.problems)
            continue
        problems.extend(check_sorted_unique(path, entries))
        tables[name] = {e.key: e.value for e in entries}
        lines[name] = {}
        for e in entries:
            lines[name].setdefault(e.key, e.lineno)
    if problems:
        raise DataDirError(problems)

    utt2spk, utt2spk_path = tables["utt2spk"], d / "utt2spk"
    if not utt2spk:
        raise DataDirError(f"{utt2spk_path}: no utterances")
    for utt, spk in utt2spk.items():
        if len(split_fields(spk)) != 1:
            problems.append(f"{utt2spk_path}:{lines['utt2spk'][utt]}: '{utt}' must map to exactly one speaker id")
        elif not utt.startswith(spk):
            problems.append(f"{utt2spk_path}:{lines['utt2spk'][utt]}: utterance id '{utt}' does not start with "
                            f"its speaker id '{spk}' (Kaldi sorting needs the speaker prefix)")
    if not problems:
        problems.extend(check_speaker_sort(utt2spk_path, utt2spk, lines["utt2spk"]))
    problems.extend(_check_spk2utt(d / "spk2utt", tables["spk2utt"], lines["spk2utt"], utt2spk, lines["utt2spk"]))

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
            if not tables["text"][utt].strip(_BLANKS):
                problems.append(f"{d / 'text'}:{line}: utterance '{utt}' has an empty transcript")
    if "utt2dur" in tables:
        problems.extend(_check_numbers(d / "utt2dur", tables["utt2dur"], lines["utt2dur"], integer=False))
    if "utt2num_samples" in tables:
        problems.extend(_check_numbers(d / "utt2num_samples", tables["utt2num_samples"], lines["utt2num_samples"],
                                       integer=True))
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
    if disjoint_from:
        from zipper.data.overlap import check_disjoint

        check_disjoint([d], disjoint_from, hash_audio=hash_audio, allow_overlap=allow_overlap)
    return len(utt2spk)


def _read_for_fix(path: Path) -> dict[str, str]:
    """`{key: value}` for fixing: blank lines and exact repeats are dropped (they hold nothing); a key given two
    different values, or a line that is not UTF-8, is an error, since picking one would be a guess."""
    entries = read_entries(path, allow_empty_value=True, skip_empty_lines=True)
    table: dict[str, str] = {}
    first_line: dict[str, int] = {}
    problems = []
    for e in entries:
        if e.key not in table:
            table[e.key], first_line[e.key] = e.value, e.lineno
        elif table[e.key] != e.value:
            problems.append(f"{path}:{e.lineno}: '{e.key}' is repeated with a different value than on line "
                            f"{first_line[e.key]}; keep the right one by hand")
    if problems:
        raise DataDirError(problems)
    return table


def _backup(path: Path, backup_dir: Path) -> None:
    """Copy `path` into `backup_dir`; an older, different backup of it is kept as `<name>.~N~`, never overwritten."""
    target = backup_dir / path.name
    if target.exists():
        if filecmp.cmp(path, target, shallow=False):
            return
        n = 1
        while (backup_dir / f"{path.name}.~{n}~").exists():
            n += 1
        os.replace(target, backup_dir / f"{path.name}.~{n}~")
    shutil.copy2(path, target)


def fix_data_dir(data_dir: str | os.PathLike) -> tuple[int, int]:
    """Keep only utterances present (with a non-empty value) in every per-utterance file, sort everything,
    regenerate spk2utt and restrict spk2gender to the speakers left.

    The originals go to `<data_dir>/.backup/` first (as Kaldi's fix_data_dir.sh does; a previous, different
    backup is kept as `<name>.~N~`).  Returns (kept, removed), removed counting every distinct utterance id
    of any file that was dropped.  What a fix cannot decide is an error and nothing is changed: bad UTF-8, a
    key repeated with different values, utterance ids that need renaming (no speaker prefix, or an order
    that differs when sorted by speaker), or no utterance left at all.
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise DataDirError(f"{d}: data directory does not exist")
    if (d / "segments").exists():
        raise DataDirError(f"{d / 'segments'}: segments files are not supported; give one recording per utterance")
    if not (d / "utt2spk").is_file():
        raise DataDirError(f"{d / 'utt2spk'}: required file is missing")
    present = [name for name in UTT_FILES if (d / name).is_file()]
    spk_present = [name for name in SPK_FILES if (d / name).is_file()]
    problems: list[str] = []
    tables: dict[str, dict[str, str]] = {}
    for name in present + spk_present:
        try:
            tables[name] = _read_for_fix(d / name)
        except DataDirError as e:
            problems.extend(e.problems)
    if problems:
        raise DataDirError(problems)

    utt2spk_all = tables["utt2spk"]
    for utt, spk in utt2spk_all.items():
        if len(split_fields(spk)) > 1:
            problems.append(f"{d / 'utt2spk'}: utterance '{utt}' has more than one speaker ('{spk}')")
    if problems:
        raise DataDirError(problems)

    seen: set[str] = set()
    keep = set(utt2spk_all)
    for name in present:
        seen |= set(tables[name])
        have = {u for u, v in tables[name].items() if v.strip(_BLANKS)}  # an empty value holds no data
        dropped = keep - have
        if dropped:
            logger.info("%s: %d utterances have no (or an empty) entry here, e.g. '%s'", d / name, len(dropped),
                        sorted(dropped)[0])
        keep &= have
    if not keep:
        raise DataDirError(f"{d}: no utterance is in every file ({', '.join(present)}); nothing was changed")
    utt2spk = {u: utt2spk_all[u] for u in keep}
    for utt, spk in sorted(utt2spk.items()):
        if not utt.startswith(spk):
            problems.append(f"{d / 'utt2spk'}: utterance id '{utt}' does not start with its speaker id '{spk}'; "
                            "rename the utterances (fixing cannot)")
    if not problems:
        problems.extend(check_speaker_sort(d / "utt2spk", utt2spk, {}))
    if problems:
        raise DataDirError(problems)

    backup = d / BACKUP_DIR
    backup.mkdir(exist_ok=True)
    for name in present + spk_present + (["spk2utt"] if (d / "spk2utt").is_file() else []):
        _backup(d / name, backup)
    for name in present:
        write_kv(d / name, {u: v for u, v in tables[name].items() if u in keep})
    speakers = set(utt2spk.values())
    for name in spk_present:
        write_kv(d / name, {s: v for s, v in tables[name].items() if s in speakers})
    write_kv(d / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    handled = set(present) | set(spk_present) | {"spk2utt"}
    others = sorted(p.name for p in d.iterdir() if p.is_file() and p.name not in handled
                    and not p.name.startswith("."))
    if others:
        logger.warning("%s: left as they are (not files fix_data_dir knows): %s", d, " ".join(others))
    return len(keep), len(seen - keep)


def split_lines(lines: Sequence[str], n: int, utt2spk: dict[str, str] | None = None, *,
                source: str = "<input>") -> list[list[str]]:
    """Split scp lines into `n` contiguous parts as even as possible (Kaldi's split_scp.pl).

    Without `utt2spk` the first `len(lines) % n` parts get one line more.  With `utt2spk`, a speaker's
    utterances stay in one part (they must be contiguous in `lines`, and there must be at least `n` speakers);
    each cut is put at the speaker boundary nearest to the even share.  `source` names the input in errors.
    """
    if n < 1:
        raise ValueError(f"cannot split into {n} parts")
    if utt2spk is None:
        if len(lines) < n:
            raise ValueError(f"{source}: cannot split {len(lines)} lines into {n} non-empty parts")
        base, extra = divmod(len(lines), n)
        parts, start = [], 0
        for i in range(n):
            size = base + (1 if i < extra else 0)
            parts.append(list(lines[start:start + size]))
            start += size
        return parts
    groups: dict[str, list[str]] = {}
    prev_spk: str | None = None
    for lineno, line in enumerate(lines, start=1):
        fields = split_fields(line)
        if not fields:
            raise ValueError(f"{source}:{lineno}: empty line")
        key = fields[0]
        if key not in utt2spk:
            raise ValueError(f"{source}:{lineno}: utterance '{key}' is not in utt2spk")
        spk = utt2spk[key]
        if spk != prev_spk and spk in groups:
            raise ValueError(f"{source}:{lineno}: utterance '{key}' of speaker '{spk}' is not next to the speaker's "
                             "other utterances; sort the file (and check the speaker prefixes: "
                             "utils/validate_data_dir.sh)")
        groups.setdefault(spk, []).append(line)
        prev_spk = spk
    speakers = list(groups)
    if len(speakers) < n:
        raise ValueError(f"{source}: cannot split {len(speakers)} speakers into {n} parts")
    parts: list[list[str]] = [[] for _ in range(n)]
    target = len(lines) / n
    part, placed = 0, 0
    for i, spk in enumerate(speakers):
        parts[part].extend(groups[spk])
        placed += len(groups[spk])
        parts_left, speakers_left = n - part - 1, len(speakers) - i - 1
        if not parts_left or not speakers_left:
            continue
        boundary = target * (part + 1)
        overshoot = placed + len(groups[speakers[i + 1]]) - boundary  # if the next speaker joined this part
        if speakers_left == parts_left or placed >= boundary or overshoot > boundary - placed:
            part += 1
    return parts


def filter_lines(lines: Iterable[str], ids: set[str], exclude: bool = False, field: int = 0, *,
                 source: str = "<input>") -> list[str]:
    """Lines whose `field`-th (0-based) whitespace-separated token is (or, with exclude, is not) in `ids`.

    Blank lines are skipped; a line with too few fields is an error (naming `source` and the line).
    """
    out = []
    for lineno, line in enumerate(lines, start=1):
        tokens = split_fields(line)
        if not tokens:
            continue
        if field >= len(tokens):
            raise ValueError(f"{source}:{lineno}: has {len(tokens)} fields, field {field + 1} is needed")
        if (tokens[field] in ids) != exclude:
            out.append(line)
    return out
