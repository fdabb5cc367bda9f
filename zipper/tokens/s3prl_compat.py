"""Let s3prl 0.4.18 import on torchaudio 2.x: call `ensure()` before importing anything from s3prl.

s3prl still calls two torchaudio APIs that torchaudio 2.x removed (``set_audio_backend`` and the
``sox_effects`` module) at import time of some upstreams.  Neither is used by the feature upstreams we run,
so harmless stand-ins are installed.
"""

import sys
import types


def _sox_effects_removed(*args, **kwargs):
    raise RuntimeError("torchaudio.sox_effects was removed in torchaudio 2.x; zipper does not use it")


def ensure() -> None:
    """Install the stand-ins (idempotent)."""
    import torchaudio

    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    if "torchaudio.sox_effects" not in sys.modules and not hasattr(torchaudio, "sox_effects"):
        sox = types.ModuleType("torchaudio.sox_effects")
        sox.apply_effects_tensor = _sox_effects_removed  # type: ignore[attr-defined]
        sox.apply_effects_file = _sox_effects_removed  # type: ignore[attr-defined]
        torchaudio.sox_effects = sox  # type: ignore[attr-defined]
        sys.modules["torchaudio.sox_effects"] = sox
