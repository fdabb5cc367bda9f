"""Speech to text with a trained model: audio files -> transcripts (stage 10's decoding, from any directory).

    python -m zipper.bin.transcribe --model model.zip a.wav b.flac
    python -m zipper.bin.transcribe --model exp/zipper_xs_rope_train_paired_100pct --wav_scp data/test/wav.scp \\
        --output_text hyp/text

--model is an experiment dir (stage 9; its k-means is found in exp/kmeans/, or give --kmeans_dir) or a packed
model (zipper.bin.pack).  Any file soundfile reads (wav, flac, ogg...), at any sample rate (resampled to 16 kHz
as stage 2 does); several channels are averaged, with a warning.  Audio longer than the model takes (its
max_speech_len in units) is refused, naming the file: split it first.  Files on the command line print
`<file> <text>` lines; --wav_scp (Kaldi `<utt> <path>`) writes a Kaldi `text` to --output_text (or prints
it).  Search settings are the experiment's (stage 10's decode config, or the packed one); --decode_config
overrides them.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Sequence

import torch

from zipper.data.audio import is_pipe
from zipper.data.kaldi_dir import read_kv, write_kv
from zipper.inference.api import InputError, Speech2Text
from zipper.inference.packing import PackError, read_yaml
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main, yaml_value
from zipper.utils.provenance import ProvenanceError

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("audio", nargs="*", help="audio files to transcribe")
    parser.add_argument("--model", required=True, help="experiment dir (exp/zipper_...) or packed model (.zip)")
    parser.add_argument("--wav_scp", default="", help="Kaldi wav.scp of the recordings to transcribe")
    parser.add_argument("--output_text", default="", help="with --wav_scp: the Kaldi `text` to write (default: stdout)")
    parser.add_argument("--checkpoint", default="valid.loss.ave.pth", help="model file in an experiment dir")
    parser.add_argument("--kmeans_dir", default="", help="k-means dir of the model's units (default: found)")
    parser.add_argument("--decode_config", type=yaml_value, default=None,
                        help="YAML dict or file: search settings over the model's (text: method, beam_size, ...)")
    parser.add_argument("--batch_size", type=positive_int, default=16, help="recordings decoded together")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, str]:
    args = parse_and_setup(get_parser(), argv)
    if bool(args.audio) == bool(args.wav_scp):
        raise ValueError("give audio files or --wav_scp (one of them)")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    if args.wav_scp:
        recordings = read_kv(args.wav_scp)
        pipes = [u for u, v in recordings.items() if is_pipe(v)]
        if pipes:
            raise ValueError(f"{args.wav_scp}: utterance '{pipes[0]}' is a command (`... |`); transcribe takes files")
    else:
        recordings = {a: a for a in args.audio}
    decode_config = read_yaml(Path(args.decode_config)) if isinstance(args.decode_config, str) else args.decode_config
    asr = Speech2Text.from_pretrained(args.model, device=args.device, checkpoint=args.checkpoint,
                                      kmeans_dir=args.kmeans_dir or None, decode_config=decode_config,
                                      batch_size=args.batch_size)
    units = []
    for name, path in recordings.items():
        try:
            units.append(asr.units_of(path, what=str(path)))
        except InputError as e:
            raise InputError(f"{args.wav_scp}: utterance '{name}': {e}" if args.wav_scp else str(e)) from e
    texts = dict(zip(recordings, asr.transcribe_units(units, [str(p) for p in recordings.values()])))
    if args.output_text:
        write_kv(args.output_text, texts)
        print(f"{args.output_text}: {len(texts)} transcripts")
    else:
        for name, text in texts.items():
            sys.stdout.write(f"{name} {text}\n")
    return texts


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, PackError, InputError, FileNotFoundError, ValueError, KeyError))
