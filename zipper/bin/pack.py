"""Pack a trained model into one zip that transcribes and synthesizes on another machine, from any directory.

    python -m zipper.bin.pack --exp_dir exp/zipper_xs_rope_train_paired_100pct --output model.zip
    python -m zipper.bin.pack --exp_dir exp/zipper_xs_rope_train_paired_100pct \\
        --vocoder_dir exp/vocoder_s_train_speech_mfcc_k256_97541ae1 --decode_config conf/decode.yaml --output model.zip

It collects the fusion config and weights, both towers' configs and weights (frozen towers included), both
token lists with the sentencepiece model, the k-means dir of the speech units (centroids; its provenance names
the feature upstream, layer and config, and the upstream's own weights when its config names a `ckpt`, as
hubert_local / hf_hubert_custom do), the vocoder and the search settings, with manifest.json: where each
came from (provenance, git hash) and the sha256 of every member, which loading checks.  Found next to the
experiment unless given: the k-means in exp/kmeans/<kmeans_tag>, the vocoder among exp/vocoder_* (one trained
on the model's units), the search settings from stage 10's decode dirs (decode_*/<set>/decode.json).
Use it with `zipper.bin.transcribe --model model.zip ...`, `zipper.bin.synthesize --model model.zip ...`, or
zipper.inference.api.Speech2Text / Text2Speech.from_pretrained("model.zip").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from zipper.inference.packing import PackError, experiment_files, pack, read_yaml
from zipper.utils.cli import make_parser, parse_and_setup, run_main, str2bool, yaml_value
from zipper.utils.provenance import ProvenanceError

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--exp_dir", required=True, help="fusion experiment dir (stage 9: exp/zipper_...)")
    parser.add_argument("--checkpoint", default="valid.loss.ave.pth", help="model file in exp_dir")
    parser.add_argument("--output", required=True, help="the packed model (.zip) to write")
    parser.add_argument("--kmeans_dir", default="", help="k-means dir of the units (default: exp/kmeans/<tag>)")
    parser.add_argument("--vocoder_dir", default="", help="vocoder experiment (default: the exp/vocoder_* that fits)")
    parser.add_argument("--vocoder_checkpoint", default="vocoder.pth", help="model file in vocoder_dir")
    parser.add_argument("--require_vocoder", type=str2bool, default=False,
                        help="fail when no vocoder is found (else the model is packed without one)")
    parser.add_argument("--decode_config", type=yaml_value, default=None,
                        help="YAML dict or file: search settings to ship (default: stage 10's for exp_dir)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_and_setup(get_parser(), argv)
    decode_config = read_yaml(Path(args.decode_config)) if isinstance(args.decode_config, str) else args.decode_config
    files = experiment_files(args.exp_dir, args.checkpoint, args.kmeans_dir or None, args.vocoder_dir or None,
                             args.vocoder_checkpoint, decode_config)
    manifest = pack(files, args.output, require_vocoder=args.require_vocoder)
    size = Path(args.output).stat().st_size
    print(f"{args.output}: {args.exp_dir} ({manifest['model']}), k-means {manifest['kmeans']['kmeans_tag']}, "
          f"vocoder {manifest['source'].get('vocoder_dir', 'none')}; {size / 2 ** 20:.1f} MiB")
    return manifest


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, PackError, FileNotFoundError, ValueError, KeyError))
