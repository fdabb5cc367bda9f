"""Stage 3: frame features of every utterance from an s3prl upstream, written as kaldiio ark/scp.

Run as `nj` jobs (`--nj N --job J`) and then once with `--merge true`, which writes <out_dir>/feats.scp,
utt2num_frames and provenance.json (upstream, layer, config, data hash).  An output dir that already holds
features of another upstream/config/data is refused rather than overwritten.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

from zipper.data.audio import AudioError, read_audio
from zipper.data.kaldi_dir import DataDirError, read_kv, write_kv
from zipper.utils.atomic import atomic_path, mark_done
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main, yaml_value
from zipper.utils.provenance import (PROVENANCE_FILE, ProvenanceError, check_provenance, hash_lines,
                                     read_provenance, write_provenance)
from zipper.utils.sharding import add_sharding_options, finished_job_dirs, mark_job_finished, pending_job

logger = logging.getLogger(__name__)
SAMPLE_RATE = 16000  # what s3prl upstreams take


def get_parser():
    parser = make_parser(__doc__, config=True)
    parser.add_argument("--data_dir", required=True, help="formatted data dir (dump/audio/<set>)")
    parser.add_argument("--out_dir", required=True, help="where feats.scp goes (dump/feats/<feat_tag>/<set>)")
    parser.add_argument("--upstream", default="mfcc", help="s3prl upstream name (mfcc, fbank, hubert_local, ...)")
    parser.add_argument("--upstream_conf", type=yaml_value, default={},
                        help="YAML dict: s3prl baseline config overrides, or kwargs of the hub entry (ckpt: PATH)")
    parser.add_argument("--layer", type=int, default=-1, help="which hidden state of the upstream to keep")
    parser.add_argument("--batched", type=yaml_value, default=True,
                        help="use the batched MFCC (same numbers as s3prl's, faster) when the config allows")
    parser.add_argument("--batch_seconds", type=float, default=100.0,
                        help="padded audio seconds per forward pass")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--num_threads", type=positive_int, default=1, help="torch threads per job")
    add_sharding_options(parser)
    return parser


def data_hash(data_dir: Path) -> str:
    """Identity of the audio: utterance ids and lengths (stable when the dump dir moves)."""
    table = read_kv(data_dir / "utt2num_samples")
    return hash_lines(f"{u} {n}" for u, n in sorted(table.items()))


def batches(utts: list[str], lengths: dict[str, int], batch_seconds: float) -> list[list[str]]:
    """Longest first, each batch's padded size (count x longest) within batch_seconds."""
    order = sorted(utts, key=lambda u: -lengths[u])
    out: list[list[str]] = []
    limit = batch_seconds * SAMPLE_RATE
    for utt in order:
        if out and (len(out[-1]) + 1) * lengths[out[-1][0]] <= limit:
            out[-1].append(utt)
        else:
            out.append([utt])
    return out


def feature_provenance(upstream, data_dir: Path) -> dict:
    prov = upstream.provenance()  # with its feature_hash
    prov["data_hash"] = data_hash(data_dir)
    prov["data_dir"] = str(data_dir)
    return prov


def refuse_mismatch(out_dir: Path, prov: dict) -> None:
    if (out_dir / PROVENANCE_FILE).exists():
        check_provenance(read_provenance(out_dir), prov, ["feature_hash", "data_hash"],
                         f"{out_dir} already holds other features; remove it (or use another feat tag): it")


def merge(out_dir: Path, nj: int, utts: list[str]) -> None:
    """Assemble the jobs' outputs (no model needed: each job left its provenance)."""
    dirs = finished_job_dirs(out_dir, nj)
    provs = [read_provenance(d) for d in dirs]
    if any(p != provs[0] for p in provs[1:]):
        raise ProvenanceError(f"the jobs in {out_dir}/split{nj} did not all compute the same features")
    prov = provs[0]
    scp: dict[str, str] = {}
    frames: dict[str, str] = {}
    for d in dirs:
        scp.update(read_kv(d / "feats.scp"))
        frames.update(read_kv(d / "utt2num_frames"))
    missing = sorted(set(utts) - set(scp))
    if missing:
        raise DataDirError(f"{len(missing)} utterances have no features, e.g. '{missing[0]}'")
    refuse_mismatch(out_dir, prov)
    write_kv(out_dir / "feats.scp", scp)
    write_kv(out_dir / "utt2num_frames", frames)
    prov = dict(prov, num_utts=len(scp), num_frames=sum(int(n) for n in frames.values()))
    write_provenance(out_dir, prov, overwrite=True)
    mark_done(out_dir, info={"num_utts": len(scp)})
    logger.info("%s: %d utterances, %d frames, upstream %s layer %d", out_dir, len(scp), prov["num_frames"],
                prov["upstream"], prov["layer"])


def run_job(args, data_dir: Path, out_dir: Path, wav: dict[str, str]) -> None:
    import kaldiio
    import torch
    from tqdm import tqdm

    from zipper.tokens.features import FeatureUpstream

    torch.set_num_threads(args.num_threads)
    lengths = {u: int(n) for u, n in read_kv(data_dir / "utt2num_samples").items()}
    upstream = FeatureUpstream(args.upstream, args.layer, args.upstream_conf, batched=bool(args.batched))
    prov = feature_provenance(upstream, data_dir)
    refuse_mismatch(out_dir, prov)
    pending = pending_job(out_dir, args.nj, args.job, list(wav), prov=prov)
    if pending is None:
        return
    mine, directory, key = pending
    upstream.to(args.device)
    directory.mkdir(parents=True, exist_ok=True)
    ark = (directory / "feats.ark").resolve()
    frames: dict[str, str] = {}
    begin, audio_seconds = time.time(), 0.0
    with atomic_path(directory / "feats.scp") as tmp_scp, \
            kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}") as writer:
        for batch in tqdm(batches(mine, lengths, args.batch_seconds), desc=f"feats job {args.job}",
                          disable=None, mininterval=10):
            wavs = []
            for utt in batch:
                try:
                    rate, samples = read_audio(wav[utt])
                except AudioError as e:
                    raise DataDirError(f"{data_dir / 'wav.scp'}: utterance '{utt}': {e}") from e
                if rate != SAMPLE_RATE:
                    raise DataDirError(f"{data_dir / 'wav.scp'}: utterance '{utt}' is at {rate} Hz; upstreams "
                                       f"take {SAMPLE_RATE} Hz (stage 2 with --resample true converts it)")
                wavs.append(torch.from_numpy(samples).to(args.device))
                audio_seconds += len(samples) / rate
            for utt, feat in zip(batch, upstream.extract(wavs)):
                if feat.shape[0] == 0:
                    raise DataDirError(f"{data_dir / 'wav.scp'}: utterance '{utt}' is too short for one frame")
                writer[utt] = feat.cpu().numpy()
                frames[utt] = str(feat.shape[0])
    write_kv(directory / "utt2num_frames", frames)
    write_provenance(directory, prov, overwrite=True)
    mark_job_finished(directory, key)
    elapsed = time.time() - begin
    logger.info("job %d/%d: %d utterances, %.2f h of audio in %.1f s (%.0fx real time)", args.job, args.nj,
                len(mine), audio_seconds / 3600, elapsed, audio_seconds / max(elapsed, 1e-9))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    data_dir, out_dir = Path(args.data_dir), Path(args.out_dir)
    wav = read_kv(data_dir / "wav.scp")
    if args.merge:
        merge(out_dir, args.nj, list(wav))
    else:
        run_job(args, data_dir, out_dir, wav)


if __name__ == "__main__":
    run_main(main, expected_errors=(DataDirError, ProvenanceError, RuntimeError, ValueError))
