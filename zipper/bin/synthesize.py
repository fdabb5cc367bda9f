"""Text to speech: text -> Zipper (TTS decoding) -> units -> vocoder -> 16-bit PCM wavs.

    python -m zipper.bin.synthesize --model model.zip --text "the cat sat on the mat" --output hello.wav
    python -m zipper.bin.synthesize --model exp/zipper_xs_rope_train_paired_100pct \\
        --vocoder_dir exp/vocoder_s_train_speech_mfcc_k256_97541ae1 --text "one sentence" --text "another" \\
        --output_dir wavs/
    python -m zipper.bin.synthesize --model model.zip --text_file lines.txt --output_dir wavs/

--model is an experiment dir (stage 9) or a packed model (zipper.bin.pack); --zipper_exp is its old name.  With
one text the wav goes to --output; with several (--text repeated, or --text_file: one text a line, or a Kaldi
`text` with --text_file_has_ids true) to --output_dir/<n>.wav (or <utt id>.wav) with a wav.scp.  Texts are
normalised as the recipes' transcripts are (lower case, punctuation removed).  Decoding is stage 10's
(zipper.inference.api.Text2Speech) with the experiment's search settings, which --decode_config overrides;
sampling is seeded by --seed.  The vocoder is the packed one, else --vocoder_dir, else the one exp/vocoder_*
trained on the model's units.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from zipper.data.audio import write_wav
from zipper.data.kaldi_dir import read_kv, write_kv
from zipper.inference.api import InputError, Text2Speech
from zipper.inference.packing import PackError
from zipper.utils.cli import make_parser, parse_and_setup, run_main, str2bool, yaml_value
from zipper.utils.provenance import ProvenanceError
from zipper.vocoder.train import MODEL_FILE

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--model", "--zipper_exp", dest="model", required=True,
                        help="experiment dir (exp/zipper_...) or packed model (.zip)")
    parser.add_argument("--text", action="append", default=[], help="what to say (repeat for several)")
    parser.add_argument("--text_file", default="", help="file of texts, one a line")
    parser.add_argument("--text_file_has_ids", type=str2bool, default=False,
                        help="--text_file is a Kaldi `text` (<utt id> <text>): wavs are named by the ids")
    parser.add_argument("--output", default="synthesized.wav", help="wav file to write (one text)")
    parser.add_argument("--output_dir", default="", help="dir for the wavs and wav.scp (several texts)")
    parser.add_argument("--zipper_checkpoint", "--checkpoint", dest="checkpoint", default="valid.loss.ave.pth",
                        help="model file in an experiment dir")
    parser.add_argument("--vocoder_dir", default="", help="vocoder_train experiment dir (stage 11)")
    parser.add_argument("--vocoder_checkpoint", default=MODEL_FILE, help="model file in vocoder_dir")
    parser.add_argument("--speaker", default="", help="voice of a multi-voice vocoder (default: its target voice)")
    parser.add_argument("--decode_config", type=yaml_value, default=None,
                        help="YAML dict or file: search settings over the model's (speech: temperature, max_len...)")
    parser.add_argument("--batch_size", type=int, default=16, help="texts decoded together")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling search")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    return parser


def read_texts(args) -> dict[str, str]:
    """name -> text, in the given order."""
    texts: dict[str, str] = {}
    if args.text_file:
        path = Path(args.text_file)
        if not path.is_file():
            raise FileNotFoundError(f"--text_file {path}: no such file")
        if args.text_file_has_ids:
            texts.update(read_kv(path, allow_empty_value=True))
        else:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            texts.update({f"{n:04d}": line for n, line in enumerate(lines, 1) if line})
    start = len(texts)
    texts.update({f"{start + n:04d}": t for n, t in enumerate(args.text, 1)})
    if not texts:
        raise ValueError("nothing to say: give --text or --text_file")
    return texts


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    texts = read_texts(args)
    if len(texts) > 1 and not args.output_dir:
        raise ValueError(f"{len(texts)} texts: give --output_dir for their wavs")
    decode_config = args.decode_config if isinstance(args.decode_config, dict) else None
    if isinstance(args.decode_config, str):
        from zipper.inference.packing import read_yaml

        decode_config = read_yaml(Path(args.decode_config))
    tts = Text2Speech.from_pretrained(args.model, device=args.device, checkpoint=args.checkpoint,
                                      vocoder_dir=args.vocoder_dir or None, vocoder_checkpoint=args.vocoder_checkpoint,
                                      decode_config=decode_config, speaker=args.speaker or None,
                                      batch_size=args.batch_size, seed=args.seed)
    if tts.vocoder is None:
        raise FileNotFoundError(f"{args.model} has no vocoder: pass --vocoder_dir (stage 11's exp/vocoder_...)")
    outputs = tts(list(texts.values()))
    voice = args.speaker or tts.vocoder.target_speaker
    if len(texts) == 1 and not args.output_dir:
        speech = outputs[0]
        write_wav(Path(args.output), speech.waveform, speech.sample_rate)
        print(f"{args.output}: {len(speech.waveform) / speech.sample_rate:.2f} s at {speech.sample_rate} Hz, "
              f"voice {voice}")
        return
    out_dir = Path(args.output_dir)
    scp: dict[str, str] = {}
    for name, speech in zip(texts, outputs):
        path = (out_dir / f"{name}.wav").resolve()
        write_wav(path, speech.waveform, speech.sample_rate)
        scp[name] = str(path)
        logger.info("%s: %d units -> %.2f s", name, len(speech.units), len(speech.waveform) / speech.sample_rate)
    write_kv(out_dir / "wav.scp", scp)
    print(f"{out_dir}: {len(scp)} wavs (wav.scp) in the voice {voice}")


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, PackError, InputError, FileNotFoundError, ValueError, KeyError))
