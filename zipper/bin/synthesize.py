"""Text to speech in one call: text -> Zipper (TTS decoding) -> units -> vocoder -> a 16-bit PCM wav.

    python -m zipper.bin.synthesize --zipper_exp exp/zipper_s_train_paired_100pct \\
        --vocoder_dir exp/vocoder_s_train_speech_mfcc_k256_97541ae1 --text "the cat sat on the mat" --output hello.wav

The text is normalised as the recipes' transcripts are (lower case, punctuation removed).  Decoding reuses
stage 10's functions and settings (--decode_config, as conf/decode.yaml; sampling is seeded by --seed), and
the units are deduplicated or not as the Zipper model was trained (its config.yaml), which decides whether
the vocoder predicts their durations.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from zipper.bin.vocoder_synthesize import write_wav
from zipper.bin.zipper_inference import decode_batch, load_model, search_configs
from zipper.data.sequences import with_bos_eos
from zipper.scoring.wer import Normalizer
from zipper.tokens.token_list import BOS, EOS, TokenList
from zipper.utils.cli import make_parser, parse_and_setup, run_main, yaml_value
from zipper.utils.provenance import ProvenanceError
from zipper.vocoder.inference import Vocoder
from zipper.vocoder.train import MODEL_FILE

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--text", required=True, help="what to say")
    parser.add_argument("--output", default="synthesized.wav", help="wav file to write")
    parser.add_argument("--zipper_exp", required=True, help="zipper_train experiment dir (stage 9)")
    parser.add_argument("--zipper_checkpoint", default="valid.loss.ave.pth", help="model file in zipper_exp")
    parser.add_argument("--vocoder_dir", required=True, help="vocoder_train experiment dir (stage 11)")
    parser.add_argument("--vocoder_checkpoint", default=MODEL_FILE, help="model file in vocoder_dir")
    parser.add_argument("--speaker", default="", help="voice of a multi-voice vocoder (default: its target voice)")
    parser.add_argument("--decode_config", type=yaml_value, default={},
                        help="YAML dict or file: search settings (speech: method, temperature, top_k, max_len...)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling search")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    return parser


def text_to_units(model, tokenizer, train_args, text: str, decode_config, device: str) -> tuple[np.ndarray, bool]:
    """(units (N,) 0-based, whether they are deduplicated) for one sentence, with stage 10's decoding."""
    normalized = Normalizer()(text)
    if not normalized:
        raise ValueError(f"nothing to say: {text!r} is empty after normalisation")
    ids = np.asarray(tokenizer.encode(normalized), dtype=np.int64)
    text_row = with_bos_eos(ids, tokenizer.bos_id, tokenizer.eos_id, train_args.max_text_len)
    speech_row = np.asarray([BOS, EOS], dtype=np.int64)  # no speech input in TTS; decode_batch pads both
    decode_args = argparse.Namespace(task="tts")
    hyps = decode_batch(model, tokenizer, decode_args, train_args, search_configs(decode_config), [speech_row],
                        [text_row], device)
    units = np.asarray(hyps["speech"][0], dtype=np.int32)
    return units, bool(train_args.dedup)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    vocoder = Vocoder.from_exp(args.vocoder_dir, args.vocoder_checkpoint, args.device)
    vocoder.speaker_index(args.speaker or None)
    model, tokenizer, train_args = load_model(args.zipper_exp, args.zipper_checkpoint, args.device)
    vocoder.check_units(TokenList(train_args.speech_token_list).provenance, f"the speech tokens of {args.zipper_exp}")
    units, deduplicated = text_to_units(model, tokenizer, train_args, args.text, args.decode_config, args.device)
    if units.size == 0:
        raise ValueError(f"{args.zipper_exp} generated no units for {args.text!r}")
    samples = vocoder(units, deduplicated, args.speaker or None)
    write_wav(Path(args.output), samples, vocoder.fs)
    logger.info("%d %s units -> %.2f s of audio", len(units), "deduplicated" if deduplicated else "frame-rate",
                len(samples) / vocoder.fs)
    print(f"{args.output}: {len(samples) / vocoder.fs:.2f} s at {vocoder.fs} Hz, voice "
          f"{args.speaker or vocoder.target_speaker}")


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError, KeyError))
