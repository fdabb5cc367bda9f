"""The built-in corpus "synth_en": English sentences from Debian text packages, read by espeak-ng and flite.

Why it exists: a corpus that anyone can build in minutes without a download, with every property the Zipper
experiments need under control: unpaired text and unpaired speech with sentences disjoint from the paired
data, nested paired fractions, and a test set with voices no training set has heard.

This module holds the logic: allocation of sentences and voices to sets (`allocate`), the synthesis plan
(one line per utterance, everything a job needs), and the synthesis of one utterance (engine -> 16 kHz mono
int16, silence trimmed).  The bins `prepare_synth_en`, `synthesize_synth_en` and `finish_synth_en` and the
recipe's local/data.sh only orchestrate.
"""

from __future__ import annotations

import io
import logging
import os
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

from zipper.corpora.text_sources import INSTALL_HINT, Sentence
from zipper.corpora.voices import (Voice, flite_pitch_by_sox, missing_programs, sox_pitch_cents,
                                   utterance_prosody)
from zipper.utils.atomic import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)
DONE_NAME = "synth_en"  # data/local/.done.synth_en: prepare_synth_en checks it, finish_synth_en writes it

FS = 16000
TEXT_SPEAKER = "text"
SPEECH_SETS = ("dev", "test", "train_paired", "train_speech")  # allocation order: eval sets first
VOCODER_SET = "train_vocoder"  # the vocoder's voice reading train_speech's sentences again (speech only)
PLANNED_SETS = SPEECH_SETS + (VOCODER_SET,)
PAIRED_FULL = "train_paired_100pct"
PROGRAMS = {"espeak": "espeak-ng", "flite": "flite"}
# espeak-ng's default amplitude (100) peaks at full scale and the resampling to 16 kHz then clips a few
# percent of the utterances; 75 leaves headroom (its loudness is then close to flite's)
ESPEAK_AMPLITUDE = 75


class SynthError(RuntimeError):
    """Synthesis of an utterance failed, a program is missing, or a plan is malformed."""


# ---------------------------------------------------------------------------------------------------------
# Allocation
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SetSizes:
    """How big each set is.  train_text is measured in words (it feeds a text LM), the others in utterances."""

    train_text_words: int = 200_000
    train_speech_utts: int = 7000
    train_paired_utts: int = 3500
    dev_utts: int = 300
    test_utts: int = 400
    test_heldout_share: float = 0.5   # share of test utterances read by held-out voices
    flite_share: float = 0.2          # share of each set's utterances read by flite voices (when present)
    vocoder_utts: int = 0             # train_vocoder: utterances of one voice for the vocoder (0: no such set)
    vocoder_speaker: str = ""         # that voice (a seen one)

    def utts(self, name: str) -> int:
        return {"dev": self.dev_utts, "test": self.test_utts, "train_paired": self.train_paired_utts,
                "train_speech": self.train_speech_utts}[name]


@dataclass(frozen=True)
class Utt:
    utt: str
    set: str
    spk: str
    sentence: int  # index into the sentence pool


@dataclass
class Allocation:
    sets: dict[str, list[Utt]] = field(default_factory=dict)

    def all_utts(self) -> list[Utt]:
        return [u for name in self.sets for u in self.sets[name]]


def utt_id(spk: str, sentence: int) -> str:
    """`<spk>-<sentence index>`: unique because every sentence is read once (train_vocoder's voice reads again
    only sentences another voice read), and it names the sentence."""
    return f"{spk}-{sentence:07d}"


def assign_speakers(n: int, voices: Sequence[Voice], flite_share: float, rng: random.Random) -> list[str]:
    """`n` speaker ids, as evenly as possible over `voices`, flite voices together getting `flite_share`
    of them when both engines are present; in random order."""
    if n == 0:
        return []
    if not voices:
        raise SynthError(f"no voices to read {n} utterances")
    groups: dict[str, list[str]] = {}
    for v in sorted(voices, key=lambda v: v.spk):
        groups.setdefault(v.engine, []).append(v.spk)
    engines = sorted(groups)
    quotas: dict[str, int] = {}
    rest, others = n, engines
    if "flite" in groups and len(groups) > 1:
        quotas["flite"] = round(n * flite_share)
        rest, others = n - quotas["flite"], [e for e in engines if e != "flite"]
    for i, engine in enumerate(others):  # the rest split evenly among the other engines
        quotas[engine] = rest // len(others) + (1 if i < rest % len(others) else 0)
    spks: list[str] = []
    for engine, quota in sorted(quotas.items()):
        members = list(groups[engine])
        rng.shuffle(members)  # which speakers get the remainder
        base, extra = divmod(quota, len(members))
        for i, spk in enumerate(members):
            spks += [spk] * (base + (1 if i < extra else 0))
    rng.shuffle(spks)
    return spks


def allocate(pool: Sequence[Sentence], voices: Sequence[Voice], sizes: SetSizes, seed: int) -> Allocation:
    """Disjoint sentences for dev, test, train_paired, train_speech and train_text; speakers for each.

    One seeded shuffle of the pool; the sets take consecutive slices in the fixed order dev, test,
    train_paired, train_speech, train_text, so enlarging a training set does not change dev or test.
    Held-out voices read only (a `test_heldout_share` part of) test; everything else is read by seen voices.
    """
    seen = [v for v in voices if not v.heldout]
    heldout = [v for v in voices if v.heldout]
    if not seen:
        raise SynthError("every voice is held out; nothing is left for training")
    order = list(range(len(pool)))
    random.Random(f"synth_en-sentences-{seed}").shuffle(order)
    need = sum(sizes.utts(name) for name in SPEECH_SETS)
    if need > len(order):
        raise SynthError(f"the sentence pool has {len(order)} sentences but the speech sets need {need}")
    alloc = Allocation()
    pos = 0
    for name in SPEECH_SETS:
        n = sizes.utts(name)
        sentences = order[pos:pos + n]
        pos += n
        rng = random.Random(f"synth_en-speakers-{seed}-{name}")
        if name == "test" and heldout:
            n_held = round(n * sizes.test_heldout_share)
            spks = assign_speakers(n_held, heldout, sizes.flite_share, rng)
            spks += assign_speakers(n - n_held, seen, sizes.flite_share, rng)
        else:
            spks = assign_speakers(n, seen, sizes.flite_share, rng)
        alloc.sets[name] = sorted((Utt(utt_id(s, i), name, s, i) for s, i in zip(spks, sentences)),
                                  key=lambda u: u.utt)
    text: list[Utt] = []
    words = 0
    while words < sizes.train_text_words:
        if pos >= len(order):
            raise SynthError(f"the sentence pool ({len(order)} sentences) runs out after {words} words of "
                             f"train_text; ask for fewer than {sizes.train_text_words} words")
        i = order[pos]
        pos += 1
        text.append(Utt(utt_id(TEXT_SPEAKER, i), "train_text", TEXT_SPEAKER, i))
        words += pool[i].num_words
    alloc.sets["train_text"] = sorted(text, key=lambda u: u.utt)
    if sizes.vocoder_utts:
        alloc.sets[VOCODER_SET] = allocate_vocoder(alloc, voices, sizes, seed)
    return alloc


def allocate_vocoder(alloc: Allocation, voices: Sequence[Voice], sizes: SetSizes, seed: int) -> list[Utt]:
    """train_vocoder: `sizes.vocoder_speaker` reads `sizes.vocoder_utts` of train_speech's sentences that it has
    not read, so that a vocoder has hours of its one output voice (as unit vocoders train on a single-speaker
    corpus) without a sentence beyond the unpaired speech's.  Drawn after every other set: it changes none."""
    spk = sizes.vocoder_speaker
    voice = next((v for v in voices if v.spk == spk), None)
    if voice is None or voice.heldout:
        raise SynthError(f"--vocoder_speaker '{spk}' is not among the seen voices "
                         f"({' '.join(sorted(v.spk for v in voices if not v.heldout))})")
    read = {u.sentence for u in alloc.all_utts() if u.spk == spk}
    candidates = sorted({u.sentence for u in alloc.sets["train_speech"]} - read)
    if sizes.vocoder_utts > len(candidates):
        raise SynthError(f"--vocoder_utts {sizes.vocoder_utts}: {spk} can read again only {len(candidates)} of "
                         "train_speech's sentences; ask for fewer or enlarge --train_speech_utts")
    picks = random.Random(f"synth_en-vocoder-{seed}").sample(candidates, sizes.vocoder_utts)
    return sorted((Utt(utt_id(spk, i), VOCODER_SET, spk, i) for i in picks), key=lambda u: u.utt)


# ---------------------------------------------------------------------------------------------------------
# The synthesis plan
# ---------------------------------------------------------------------------------------------------------
PLAN_FIELDS = ("utt", "set", "spk", "sentence", "engine", "voice", "speed", "pitch", "cents", "wav", "spoken")


@dataclass(frozen=True)
class PlanItem:
    """Everything a job needs to synthesise one utterance (speed/pitch in the engine's units, see Voice;
    cents: a sox pitch shift applied after synthesis, 0 for none)."""

    utt: str
    set: str
    spk: str
    sentence: int
    engine: str
    voice: str
    speed: float
    pitch: float
    cents: int
    wav: str
    spoken: str

    def to_line(self) -> str:
        return "\t".join([self.utt, self.set, self.spk, str(self.sentence), self.engine, self.voice,
                          f"{self.speed:g}", f"{self.pitch:g}", str(self.cents), self.wav, self.spoken]) + "\n"


def make_plan(alloc: Allocation, pool: Sequence[Sentence], voices: Sequence[Voice], wav_dir: str | os.PathLike
              ) -> list[PlanItem]:
    """One PlanItem per speech utterance, sorted by utterance id; wav paths are absolute."""
    by_spk = {v.spk: v for v in voices}
    wav_root = Path(wav_dir).resolve()
    items = []
    for name in PLANNED_SETS:
        for u in alloc.sets.get(name, []):
            v = by_spk[u.spk]
            speed, pitch = utterance_prosody(v, u.utt)
            cents = sox_pitch_cents(v, pitch) if flite_pitch_by_sox(v) else 0
            items.append(PlanItem(u.utt, u.set, u.spk, u.sentence, v.engine, v.voice, speed, pitch, cents,
                                  str(wav_root / u.spk / f"{u.utt}.wav"), pool[u.sentence].spoken))
    items.sort(key=lambda p: p.utt)
    return items


def write_plan(path: str | os.PathLike, items: Sequence[PlanItem]) -> None:
    atomic_write_text(path, "#" + "\t".join(PLAN_FIELDS) + "\n" + "".join(i.to_line() for i in items))


def read_plan(path: str | os.PathLike) -> list[PlanItem]:
    items = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.startswith("#") or not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(PLAN_FIELDS):
                raise SynthError(f"{path}:{lineno}: expected {len(PLAN_FIELDS)} tab-separated fields "
                                 f"({' '.join(PLAN_FIELDS)}), got {len(parts)}")
            try:
                items.append(PlanItem(parts[0], parts[1], parts[2], int(parts[3]), parts[4], parts[5],
                                      float(parts[6]), float(parts[7]), int(parts[8]), parts[9], parts[10]))
            except ValueError as e:
                raise SynthError(f"{path}:{lineno}: {e}") from e
    return items


def split_plan(items: Sequence[PlanItem], n: int) -> list[list[PlanItem]]:
    """Interleaved parts (item i goes to part i % n), so that slow voices spread over all jobs."""
    if n < 1 or n > max(1, len(items)):
        raise SynthError(f"cannot split {len(items)} utterances into {n} jobs")
    return [list(items[j::n]) for j in range(n)]


# ---------------------------------------------------------------------------------------------------------
# Synthesis of one utterance
# ---------------------------------------------------------------------------------------------------------
def check_programs(engines: Sequence[str]) -> None:
    """Fail naming every missing program (the synthesizers the engines need, and sox)."""
    needed = [PROGRAMS[e] for e in sorted(set(engines))] + ["sox"]
    missing = missing_programs(needed)
    if missing:
        raise SynthError(f"missing program(s): {', '.join(missing)}; {INSTALL_HINT}")


def _run(cmd: list[str], utt: str, stdin: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=120)
    except FileNotFoundError as e:
        raise SynthError(f"utterance {utt}: cannot run '{cmd[0]}': {e}; {INSTALL_HINT}") from e
    except subprocess.TimeoutExpired as e:
        raise SynthError(f"utterance {utt}: '{' '.join(cmd[:6])} ...' timed out") from e
    if proc.returncode != 0 or not proc.stdout:
        raise SynthError(f"utterance {utt}: '{' '.join(cmd)}' failed ({proc.returncode}): "
                         f"{proc.stderr.decode(errors='replace').strip()[-300:] or 'no output'}")
    return proc.stdout


def _to_16k(wav_bytes: bytes, item: PlanItem) -> np.ndarray:
    """Engine wav -> int16 mono 16 kHz samples: sox resamples (and pitch-shifts) only when needed."""
    if item.cents == 0:
        samples, rate = soundfile.read(io.BytesIO(wav_bytes), dtype="int16")
        if rate == FS and samples.ndim == 1:
            return samples
    cmd = ["sox", "-t", "wav", "-", "-t", "raw", "-r", str(FS), "-e", "signed-integer", "-b", "16", "-c", "1",
           "-"]
    if item.cents:
        cmd += ["pitch", str(item.cents)]
    raw = _run(cmd, item.utt, wav_bytes)
    return np.frombuffer(raw, dtype="<i2").copy()


def engine_command(item: PlanItem) -> tuple[list[str], bytes | None]:
    """(command, stdin) that writes the utterance as a wav on stdout."""
    if item.engine == "espeak":
        return ["espeak-ng", "-v", item.voice, "-s", str(int(item.speed)), "-p", str(int(item.pitch)),
                "-a", str(ESPEAK_AMPLITUDE), "--stdin", "--stdout"], item.spoken.encode("utf-8")
    if item.engine == "flite":
        cmd = ["flite", "-voice", item.voice, "--setf", f"duration_stretch={item.speed:g}"]
        if item.cents == 0:
            cmd += ["--setf", f"int_f0_target_mean={item.pitch:g}"]
        return cmd + ["-t", item.spoken, "-o", "/dev/stdout"], None
    raise SynthError(f"utterance {item.utt}: unknown engine '{item.engine}'")


def trim_silence(samples: np.ndarray, fs: int = FS, floor_db: float = 40.0, lead_s: float = 0.1,
                 trail_s: float = 0.15) -> np.ndarray:
    """Keep from the first to the last 10 ms frame within `floor_db` of the loudest frame, with exactly
    `lead_s`/`trail_s` of margin: long silences are cut, and the margin is padded with zeros where the
    engine starts speaking at the first sample (espeak-ng does), so every utterance has the same framing."""
    hop = fs // 100
    n = len(samples) // hop
    if n == 0:
        return samples
    frames = samples[:n * hop].astype(np.float64).reshape(n, hop)
    energy_db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-3)
    loud = np.flatnonzero(energy_db > energy_db.max() - floor_db)
    first, last = loud[0] * hop, min(len(samples), (loud[-1] + 1) * hop)
    lead, trail = int(lead_s * fs), int(trail_s * fs)
    start, end = max(0, first - lead), min(len(samples), last + trail)
    return np.concatenate([np.zeros(lead - (first - start), samples.dtype), samples[start:end],
                           np.zeros(trail - (end - last), samples.dtype)])


def synthesize(item: PlanItem) -> np.ndarray:
    """int16 samples at 16 kHz of one utterance, silence trimmed."""
    cmd, stdin = engine_command(item)
    samples = _to_16k(_run(cmd, item.utt, stdin), item)
    if samples.size < FS // 10 or not np.any(samples):
        raise SynthError(f"utterance {item.utt}: {item.engine} voice '{item.voice}' produced no speech for "
                         f"'{item.spoken}'")
    return trim_silence(samples)


def write_wav(path: str | os.PathLike, samples: np.ndarray) -> None:
    """16-bit PCM wav, written to a temporary name and renamed: an existing wav is always complete."""
    with atomic_path(path) as tmp:
        soundfile.write(tmp, samples, FS, subtype="PCM_16", format="WAV")


def wav_is_complete(path: str | os.PathLike) -> bool:
    """True when `path` is a readable 16 kHz mono wav with samples (renaming makes partial files impossible,
    but a file damaged otherwise is redone rather than trusted)."""
    try:
        info = soundfile.info(str(path))
    except (OSError, RuntimeError, soundfile.LibsndfileError):
        return False
    return info.samplerate == FS and info.channels == 1 and info.frames > 0
