"""Stage 11: train a unit vocoder (unit HiFi-GAN + duration predictor) on a speech set's units and audio.

The vocoder speaks one target voice: --target_speaker, by default the speaker with most audio in the training
set.  --train_speakers target trains on that voice only; --train_speakers all trains on every voice with a
speaker embedding and still synthesises the target voice (units that the target voice never produced, which
speaker-dependent units such as MFCC k-means have many of, are then learned from the other voices).
The experiment dir gets config.yaml, run.sh, vocoder.json (units inventory, voices), checkpoint.pth (resumable),
vocoder.pth (what synthesis loads), history.json, images/loss.png, tensorboard/, train.log via the caller,
scores.json (validation mel L1) and .done.
Print a preset with --print_config; conf/vocoder_{debug,s}.yaml are the repository's presets.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from zipper.tokens.units import INVENTORY_KEYS, UnitSet
from zipper.train.experiment import start_experiment
from zipper.train.trainer import parameter_report
from zipper.utils.atomic import atomic_write_json, mark_done, read_json
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main, str2bool, yaml_value
from zipper.utils.log import log_run_header
from zipper.utils.precision import amp_mode
from zipper.utils.provenance import ProvenanceError
from zipper.vocoder.data import (SegmentSampler, VocoderUtt, load_utterances, most_audio_speaker,
                                 speaker_durations)
from zipper.vocoder.inference import INFO_FILE, build_vocoder
from zipper.vocoder.model import build_discriminator
from zipper.vocoder.parallel import pair_readings, parallel_utterances
from zipper.vocoder.train import GanTrainer, valid_batches
from zipper.vocoder.world import FeatureSegmentSampler, WorldVocoder, cached_features, whole_utterance_features

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__, config=True)
    data = parser.add_argument_group("data")
    data.add_argument("--train_units", required=True, help="units dir of the training set (stage 5)")
    data.add_argument("--train_audio", required=True, help="audio dir (wav.scp, utt2spk) of the training set (stage 2)")
    data.add_argument("--valid_units", required=True, help="units dir of the validation set")
    data.add_argument("--valid_audio", required=True, help="audio dir of the validation set")
    data.add_argument("--fs", type=int, default=16000, help="sample rate of the audio")
    data.add_argument("--target_speaker", default="", help="the voice synthesis speaks (default: most audio)")
    data.add_argument("--train_speakers", default="target", choices=["target", "all"],
                      help="train on the target voice only, or on every voice (with speaker embeddings)")
    data.add_argument("--segment_frames", type=positive_int, default=32, help="frames per training segment")
    data.add_argument("--min_segment_frames", type=int, default=0,
                      help="WORLD vocoder: utterances of at least this many frames but shorter than a segment are "
                           "trained on whole, padded (0: --segment_frames, shorter ones are left out)")
    data.add_argument("--batch_size", type=positive_int, default=8, help="segments per update")
    data.add_argument("--num_valid_utts", type=int, default=8, help="validation utterances (target voice first)")
    data.add_argument("--max_utts_per_speaker", type=int, default=0,
                      help="with --train_speakers all: at most this many utterances of each other voice (0: all)")
    data.add_argument("--parallel_units", default="",
                      help="WORLD vocoder: units dir of other voices reading the training set's sentences (same "
                           "id after the speaker prefix); each becomes a training utterance: its units in, the "
                           "target voice's frames out, aligned by DTW (default: none)")
    data.add_argument("--parallel_audio", default="", help="audio dir (utt2spk, utt2num_samples) of --parallel_units")
    data.add_argument("--parallel_centroids", default="",
                      help="k-means centroids.npy of the units: the DTW's frame distances")
    model = parser.add_argument_group("model")
    model.add_argument("--vocoder", default="hifigan", choices=["hifigan", "world"],
                       help="hifigan: unit HiFi-GAN (GAN training, the quality path for GPUs); world: units -> "
                            "WORLD parameters -> pyworld synthesis (trains in minutes on a CPU)")
    model.add_argument("--embed_dim", type=positive_int, default=128, help="unit embedding size")
    model.add_argument("--spk_embed_dim", type=positive_int, default=64, help="speaker embedding size (several voices)")
    model.add_argument("--generator_conf", type=yaml_value, default={},
                       help="YAML dict of espnet2 HiFiGANGenerator options (upsample scales: product = frame shift)")
    model.add_argument("--discriminator_conf", type=yaml_value, default={},
                       help="YAML dict of espnet2 HiFiGANMultiScaleMultiPeriodDiscriminator options")
    model.add_argument("--duration_conf", type=yaml_value, default={},
                       help="YAML dict of ESPnet's DurationPredictor options (n_layers, n_chans, kernel_size, ...)")
    model.add_argument("--world_conf", type=yaml_value, default={},
                       help="YAML dict, --vocoder world: frame_period (ms), n_sp (envelope bands), f0_floor, f0_ceil")
    model.add_argument("--encoder_conf", type=yaml_value, default={},
                       help="YAML dict, --vocoder world: channels, layers, kernel_size, dropout of the conv encoder")
    model.add_argument("--mel_loss_conf", type=yaml_value, default={},
                       help="YAML dict of MelSpectrogramLoss options (n_fft, hop_length, n_mels, fmin, fmax)")
    train = parser.add_argument_group("training")
    train.add_argument("--output_dir", required=True, help="experiment dir (exp/vocoder_<tag>)")
    train.add_argument("--ngpu", type=int, default=0, choices=[0, 1], help="0: CPU, 1: one GPU")
    train.add_argument("--seed", type=int, default=0, help="random seed (init, segments)")
    train.add_argument("--max_steps", type=positive_int, default=2000, help="generator updates")
    train.add_argument("--lr", type=float, default=2e-4, help="generator learning rate")
    train.add_argument("--discriminator_lr", type=float, default=0.0, help="discriminator learning rate (0: --lr)")
    train.add_argument("--betas", type=float, nargs=2, default=[0.8, 0.99], help="AdamW betas (HiFi-GAN's)")
    train.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay")
    train.add_argument("--lr_decay", type=float, default=1.0, help="learning-rate factor per update")
    train.add_argument("--grad_clip", type=float, default=10.0, help="gradient norm clip (<= 0: none)")
    train.add_argument("--lambda_mel", type=float, default=45.0, help="weight of the mel L1 loss")
    train.add_argument("--lambda_adv", type=float, default=1.0, help="weight of the adversarial loss")
    train.add_argument("--lambda_fm", type=float, default=2.0, help="weight of the feature-matching loss")
    train.add_argument("--lambda_dur", type=float, default=1.0, help="weight of the duration loss")
    train.add_argument("--discriminator_start_steps", type=int, default=0,
                       help="updates on the mel (+ duration) loss alone before the discriminator joins")
    train.add_argument("--use_amp", type=amp_mode, default=False,
                       help="bf16 autocast for the WORLD vocoder (auto: where it pays, a GPU or a CPU with AMX; "
                            "on other CPUs bf16 is slower than fp32)")
    train.add_argument("--num_threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    train.add_argument("--log_interval", type=positive_int, default=50, help="updates between progress lines")
    train.add_argument("--valid_interval", type=int, default=500, help="updates between validations (0: at the end)")
    train.add_argument("--save_every_steps", type=int, default=200, help="updates between resumable checkpoints")
    train.add_argument("--resume", type=str2bool, default=True, help="continue from output_dir/checkpoint.pth")
    return parser


def vocoder_info(args, units_dir: str, train_utts, target: str) -> dict:
    provenance = UnitSet(units_dir).provenance
    hop = provenance.get("frame_shift_samples")
    if not hop:
        raise ProvenanceError(f"{units_dir}/provenance.json has no frame_shift_samples: re-run stage 5")
    speakers = sorted({u.speaker for u in train_utts})
    frames = speaker_durations(train_utts)
    info = {"n_units": int(provenance["n_clusters"]), "hop_length": int(hop), "fs": args.fs,
            "speakers": speakers, "target_speaker": target,
            "train_frames": {s: frames[s] for s in speakers},
            "inventory": {k: provenance[k] for k in INVENTORY_KEYS}}
    if args.parallel_units:  # other voices' readings are training data too: a resume must see the same ones
        info["parallel_units"] = str(args.parallel_units)
    return info


def select_utterances(utts: list[VocoderUtt], target: str, train_speakers: str, max_per_speaker: int
                      ) -> list[VocoderUtt]:
    """The target voice's utterances, and with `all` those of the other voices (at most max_per_speaker each)."""
    if train_speakers == "target":
        return [u for u in utts if u.speaker == target]
    taken: dict[str, int] = {}
    selected = []
    for u in utts:
        if u.speaker != target and max_per_speaker and taken.get(u.speaker, 0) >= max_per_speaker:
            continue
        taken[u.speaker] = taken.get(u.speaker, 0) + 1
        selected.append(u)
    return selected


def load_parallel(args, provenance: dict, targets: list[VocoderUtt], hop: int
                  ) -> tuple[list[tuple[VocoderUtt, VocoderUtt]], np.ndarray]:
    """(other voice's reading, target voice's reading) of the sentences --parallel_units shares with the training
    set, and the centroids (K, D) that align them; checked before the WORLD analysis, which takes minutes."""
    UnitSet(args.parallel_units).check_inventory(provenance, f"training units {args.train_units}")
    centroids = np.load(args.parallel_centroids)  # (K, D)
    if len(centroids) != int(provenance["n_clusters"]):
        raise ValueError(f"{args.parallel_centroids} holds {len(centroids)} centroids, the units "
                         f"{provenance['n_clusters']}")
    pairs = pair_readings(targets, load_utterances(args.parallel_units, args.parallel_audio, args.fs, hop))
    if not pairs:
        raise ValueError(f"no utterance of {args.parallel_units} reads a sentence of {args.train_units} in another "
                         "voice (utterance ids <speaker>-<sentence>)")
    return pairs, centroids


def world_data(args, model: WorldVocoder, train_utts, valid_utts, speaker_ids: dict[str, int], target: str,
               parallel: Optional[tuple[list[tuple[VocoderUtt, VocoderUtt]], np.ndarray]] = None):
    """WORLD features (analysed once into <output_dir>/world_feats/) as a segment sampler and validation batches;
    with `parallel` (pairs, centroids: load_parallel), the other voices' readings join the training utterances."""
    cache = Path(args.output_dir) / "world_feats"
    feats = cached_features(train_utts, model.world, model.hop_length, cache)
    model.set_statistics(feats.values())
    if parallel is not None:
        pairs, centroids = parallel
        extra, warped = parallel_utterances(pairs, feats, centroids, model.ratio)
        train_utts, feats = list(train_utts) + extra, {**feats, **warped}
    sampler = FeatureSegmentSampler(train_utts, feats, speaker_ids, args.segment_frames, args.batch_size,
                                    model.ratio, args.seed, min_frames=args.min_segment_frames)
    chosen = sorted(valid_utts, key=lambda u: (u.speaker != target, u.utt))[:args.num_valid_utts]
    valid_feats = cached_features(chosen, model.world, model.hop_length, cache)
    default = speaker_ids.get(target, 0)
    return sampler, [whole_utterance_features(u, valid_feats[u.utt], speaker_ids, default) for u in chosen]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    if args.ngpu > 0 and not torch.cuda.is_available():
        raise ValueError("--ngpu 1 but torch sees no GPU (use --ngpu 0 for the CPU)")
    if args.parallel_units and not (args.parallel_audio and args.parallel_centroids):
        raise ValueError("--parallel_units needs --parallel_audio and --parallel_centroids")
    if args.use_amp is True and args.vocoder != "world":
        raise ValueError("--use_amp true is for --vocoder world (the HiFi-GAN trains in fp32; auto leaves it so)")
    if args.parallel_units and args.vocoder != "world":
        raise ValueError("--parallel_units is for --vocoder world (a HiFi-GAN learns the warped audio's samples)")
    output_dir = Path(args.output_dir)
    config = start_experiment(args, "zipper.bin.vocoder_train")
    log_run_header("zipper.bin.vocoder_train", config)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)

    train_units = UnitSet(args.train_units)
    UnitSet(args.valid_units).check_inventory(train_units.provenance, f"training units {args.train_units}")
    hop = int(train_units.provenance.get("frame_shift_samples") or 0)
    if not hop:
        raise ProvenanceError(f"{args.train_units}/provenance.json has no frame_shift_samples: re-run stage 5")
    every_voice = load_utterances(args.train_units, args.train_audio, args.fs, hop)
    target = args.target_speaker or most_audio_speaker(every_voice)
    voices = speaker_durations(every_voice)
    if target not in voices:
        raise ValueError(f"--target_speaker {target} has no utterance in {args.train_units} with audio in "
                         f"{args.train_audio}; voices there: {', '.join(sorted(voices))}")
    train_utts = select_utterances(every_voice, target, args.train_speakers, args.max_utts_per_speaker)
    parallel = (load_parallel(args, train_units.provenance, [u for u in train_utts if u.speaker == target], hop)
                if args.parallel_units else None)
    info = vocoder_info(args, args.train_units, train_utts, target)
    logger.info("target voice %s (%.1f min of %.1f min in %s); training on %s: %d utterances, %.1f min",
                target, voices[target] * hop / args.fs / 60, sum(voices.values()) * hop / args.fs / 60,
                args.train_audio, args.train_speakers, len(train_utts),
                sum(info["train_frames"].values()) * hop / args.fs / 60)
    old_info = output_dir / INFO_FILE
    if args.resume and old_info.exists():
        if read_json(old_info) != info:
            raise ProvenanceError(f"{old_info} describes other training data (voices, units) than this run's; "
                                  "use another --output_dir or remove it")
    atomic_write_json(old_info, info)
    speaker_ids = {s: i for i, s in enumerate(info["speakers"])}

    model = build_vocoder(args, info)
    valid_utts = load_utterances(args.valid_units, args.valid_audio, args.fs, hop)
    if args.vocoder == "world":
        discriminator = None
        sampler, valid = world_data(args, model, train_utts, valid_utts, speaker_ids, target, parallel)
    else:
        if args.min_segment_frames:
            raise ValueError("--min_segment_frames is for --vocoder world (HiFi-GAN's losses are not masked)")
        discriminator = build_discriminator(args.discriminator_conf)
        sampler = SegmentSampler(train_utts, speaker_ids, args.segment_frames, args.batch_size, hop, args.seed)
        valid = valid_batches(valid_utts, speaker_ids, hop, args.num_valid_utts, target)
    logger.info("vocoder (%s): %s%s", args.vocoder, parameter_report(model),
                f"; discriminator: {parameter_report(discriminator)}" if discriminator is not None else "")
    trainer = GanTrainer(args, model, discriminator, sampler, valid)
    state = trainer.run()
    path = trainer.save_model()
    final = state.valid[-1]["valid"] if state.valid else trainer.validate()
    metric = "feat" if args.vocoder == "world" else "mel"
    scores = {"vocoder": args.vocoder, f"valid_{metric}_l1": final[metric], "valid_dur_mse": final["dur"],
              "steps": state.step, "precision": "bf16" if trainer.use_amp else "fp32", "target_speaker": target,
              "train_speakers": args.train_speakers, "model": path.name}
    atomic_write_json(output_dir / "scores.json", scores)
    mark_done(output_dir, info=scores)
    print(f"{output_dir}: {path.name} after {state.step} updates; valid {metric} L1 {final[metric]:.3f}, "
          f"duration MSE {final['dur']:.3f} (target voice {target})")


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError, KeyError))
