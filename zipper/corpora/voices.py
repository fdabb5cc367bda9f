"""The speakers of the synthesised corpus: espeak-ng accents x voice variants, and flite's English voices.

Why so many espeak speakers: its voices are formant-synthesised, so each accent/variant/pitch/speed
combination sounds like a distinct, consistent talker at no cost; flite's cluster-unit / clustergen voices add
a second engine with a very different (more natural) sound, so that a model cannot key on one synthesizer's
artefacts.  Every speaker has a deterministic base speed and pitch (derived from its id only, so the same
speaker sounds the same whatever seed or set sizes a run uses); each utterance varies them a little.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Iterable, Sequence

# espeak-ng English accents (short tag used in speaker ids -> espeak-ng voice name).  The MBROLA voices
# (en-uk, us-mbrola-*, en-german-* ...) need separately installed databases and are not used.
ESPEAK_ACCENTS: dict[str, str] = {
    "enus": "en-us",
    "ennyc": "en-us-nyc",
    "engb": "en-gb",
    "enrp": "en-gb-x-rp",
    "ensco": "en-gb-scotland",
    "enlan": "en-gb-x-gbclan",
    "enwmd": "en-gb-x-gbcwmd",
    "en029": "en-029",
}
# espeak-ng voice variants with a human timbre (the klatt/robot/whisper ones are left out).
ESPEAK_VARIANTS: dict[str, str] = {**{f"m{i}": "m" for i in range(1, 9)}, **{f"f{i}": "f" for i in range(1, 6)}}
ESPEAK_DEFAULT_SPEED = 175  # words per minute (espeak-ng -s)
ESPEAK_DEFAULT_PITCH = 50   # 0..99 (espeak-ng -p)

# flite voices: name -> (gender, nominal mean F0 in Hz, whether int_f0_target_mean moves its pitch).
# kal (8 kHz) and awb_time (a talking clock) are left out; rms ignores int_f0_target_mean, so its pitch is
# moved by sox instead.
FLITE_VOICES: dict[str, tuple[str, float, bool]] = {
    "kal16": ("m", 95.0, True),
    "awb": ("m", 125.0, True),
    "rms": ("m", 100.0, False),
    "slt": ("f", 170.0, True),
}

ENGINES = ("espeak", "flite")
SPEAKER_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class VoiceError(RuntimeError):
    """A voice that the inventory needs is not installed, or the inventory is inconsistent."""


@dataclass(frozen=True)
class Voice:
    """One speaker.  speed/pitch are in the engine's own units:
    espeak: speed = words per minute (-s), pitch = 0..99 (-p);
    flite: speed = duration_stretch (>1 is slower), pitch = target mean F0 in Hz.
    """

    spk: str
    engine: str
    voice: str
    gender: str
    speed: float
    pitch: float
    heldout: bool = False

    def with_heldout(self, heldout: bool) -> "Voice":
        return Voice(self.spk, self.engine, self.voice, self.gender, self.speed, self.pitch, heldout)


def _unit_rng(*key: str) -> random.Random:
    """A generator seeded by a stable hash of `key` (Python's hash() is salted per process)."""
    digest = hashlib.sha256("\x1f".join(key).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def espeak_voice(accent: str, variant: str) -> Voice:
    spk = f"es-{accent}-{variant}"
    rng = _unit_rng("synth_en-voice", spk)
    speed = round(rng.uniform(145, 190))
    # female variants already sound higher; keep the base pitch range the same for both
    pitch = round(rng.uniform(32, 68))
    return Voice(spk, "espeak", f"{ESPEAK_ACCENTS[accent]}+{variant}", ESPEAK_VARIANTS[variant], speed, pitch)


def flite_voice(name: str) -> Voice:
    spk = f"fl-{name}"
    gender, f0, _ = FLITE_VOICES[name]
    rng = _unit_rng("synth_en-voice", spk)
    stretch = round(rng.uniform(0.92, 1.12), 3)
    pitch = round(f0 * rng.uniform(0.9, 1.12), 1)
    return Voice(spk, "flite", name, gender, stretch, pitch)


def voice_inventory(engines: Sequence[str] = ENGINES) -> list[Voice]:
    """Every speaker of the corpus, sorted by speaker id."""
    voices: list[Voice] = []
    for engine in engines:
        if engine == "espeak":
            voices += [espeak_voice(a, v) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
        elif engine == "flite":
            voices += [flite_voice(name) for name in FLITE_VOICES]
        else:
            raise VoiceError(f"unknown engine '{engine}' (known: {', '.join(ENGINES)})")
    voices.sort(key=lambda v: v.spk)
    check_speaker_ids([v.spk for v in voices])
    return voices


def check_speaker_ids(spks: Iterable[str]) -> None:
    """Speaker ids must be [a-z0-9] words joined by '-', and no id may be another id followed by '-...':
    then `<spk>-<n>` utterance ids sort exactly as (speaker, utterance) pairs, as Kaldi requires."""
    spks = list(spks)
    problems = [f"speaker id '{s}' is not lower-case [a-z0-9] words joined by '-'" for s in spks
                if not SPEAKER_ID.match(s)]
    if len(set(spks)) != len(spks):
        problems.append("duplicate speaker ids")
    ordered = sorted(spks)
    for a, b in zip(ordered, ordered[1:]):
        if b.startswith(a + "-"):
            problems.append(f"speaker id '{b}' starts with speaker id '{a}' followed by '-'")
    if problems:
        raise VoiceError("; ".join(problems))


def select_heldout(voices: Sequence[Voice], n: int, seed: int) -> list[Voice]:
    """Mark `n` voices as held out (test only), at least one per engine when n >= 2 and the engine keeps
    at least one seen voice; the rest drawn at random.  Returns the full list with flags set."""
    if n < 0 or n >= len(voices):
        raise VoiceError(f"cannot hold out {n} of {len(voices)} voices (at least one must stay for training)")
    rng = random.Random(f"synth_en-heldout-{seed}")
    by_engine: dict[str, list[str]] = {}
    for v in voices:
        by_engine.setdefault(v.engine, []).append(v.spk)
    chosen: list[str] = []
    if n >= 2:
        for engine in sorted(by_engine):
            spks = by_engine[engine]
            if len(spks) >= 2 and len(chosen) < n:
                chosen.append(rng.choice(sorted(spks)))
    rest = sorted(v.spk for v in voices if v.spk not in chosen)
    rng.shuffle(rest)
    chosen += rest[:n - len(chosen)]
    held = set(chosen)
    return [v.with_heldout(v.spk in held) for v in voices]


def utterance_prosody(voice: Voice, utt: str, speed_jitter: float = 0.06, pitch_jitter: float = 0.05
                      ) -> tuple[float, float]:
    """(speed, pitch) for one utterance: the speaker's base varied a little, from the utterance id only."""
    rng = _unit_rng("synth_en-utt", utt)
    ds, dp = rng.uniform(-1, 1), rng.uniform(-1, 1)
    if voice.engine == "espeak":
        speed = round(voice.speed * (1 + speed_jitter * ds))
        pitch = min(99, max(0, round(voice.pitch + 100 * pitch_jitter * dp)))
        return float(speed), float(pitch)
    return round(voice.speed * (1 + speed_jitter * ds), 3), round(voice.pitch * (1 + pitch_jitter * dp), 1)


def flite_pitch_by_sox(voice: Voice) -> bool:
    return voice.engine == "flite" and not FLITE_VOICES[voice.voice][2]


def sox_pitch_cents(voice: Voice, pitch: float) -> int:
    """The sox `pitch` shift that brings a flite voice from its nominal F0 to `pitch` Hz."""
    return round(1200 * math.log2(pitch / FLITE_VOICES[voice.voice][1]))


# ---------------------------------------------------------------------------------------------------------
# voices.txt
# ---------------------------------------------------------------------------------------------------------
VOICES_HEADER = ("# speaker engine voice gender speed pitch heldout\n"
                 "# espeak: speed = words/minute (-s), pitch = 0..99 (-p); flite: speed = duration_stretch, "
                 "pitch = mean F0 (Hz)\n")


def format_voices(voices: Sequence[Voice]) -> str:
    return VOICES_HEADER + "".join(
        f"{v.spk} {v.engine} {v.voice} {v.gender} {v.speed:g} {v.pitch:g} {str(v.heldout).lower()}\n"
        for v in sorted(voices, key=lambda v: v.spk))


def parse_voices(text: str) -> list[Voice]:
    voices = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 7 or parts[1] not in ENGINES:
            raise VoiceError(f"voices.txt:{lineno}: expected 'speaker engine voice gender speed pitch heldout'")
        voices.append(Voice(parts[0], parts[1], parts[2], parts[3], float(parts[4]), float(parts[5]),
                            parts[6] == "true"))
    return voices


# ---------------------------------------------------------------------------------------------------------
# What is installed
# ---------------------------------------------------------------------------------------------------------
def installed_espeak_voices(espeak: str = "espeak-ng") -> tuple[set[str], set[str]]:
    """(language voice names, variant names) espeak-ng knows, from `--voices=en` and `--voices=variant`."""
    def listing(arg: str) -> list[list[str]]:
        proc = subprocess.run([espeak, f"--voices={arg}"], capture_output=True, text=True, timeout=60)
        return [line.split() for line in proc.stdout.splitlines()[1:] if line.split()]

    languages = set()
    for cols in listing("en"):
        # columns: Pty Language Age/Gender VoiceName File [Other Languages]; mbrola voices live under mb/
        if len(cols) >= 5 and not cols[4].startswith("mb/"):
            languages.add(cols[1])
    variants = {cols[4].split("/", 1)[1] for cols in listing("variant") if len(cols) >= 5 and "/" in cols[4]}
    return languages, variants


def installed_flite_voices(flite: str = "flite") -> set[str]:
    proc = subprocess.run([flite, "-lv"], capture_output=True, text=True, timeout=60)
    text = proc.stdout + proc.stderr
    return set(text.split(":", 1)[1].split()) if ":" in text else set()


def check_voices_installed(voices: Sequence[Voice], espeak: str = "espeak-ng", flite: str = "flite") -> None:
    """Fail with a list of every voice the inventory needs but the installed synthesizers lack."""
    missing = []
    if any(v.engine == "espeak" for v in voices):
        languages, variants = installed_espeak_voices(espeak)
        for v in voices:
            if v.engine != "espeak":
                continue
            lang, variant = v.voice.split("+", 1)
            if lang not in languages:
                missing.append(f"espeak-ng voice '{lang}' (speaker {v.spk})")
            if variant not in variants:
                missing.append(f"espeak-ng variant '{variant}' (speaker {v.spk})")
    if any(v.engine == "flite" for v in voices):
        have = installed_flite_voices(flite)
        missing += [f"flite voice '{v.voice}' (speaker {v.spk})" for v in voices
                    if v.engine == "flite" and v.voice not in have]
    if missing:
        raise VoiceError("voices not installed: " + "; ".join(sorted(set(missing))))


def missing_programs(programs: Sequence[str]) -> list[str]:
    return [p for p in programs if shutil.which(p) is None]
