"""Stage 4: fit k-means on frames of a portion of the speech-pretraining set.

Writes exp/kmeans/<feat_tag>_k<K>_<hash>/ (centroids.npy, provenance.json, cluster_sizes.png), the hash
covering features, data, K, portion, seed and algorithm.  `--print_tag` prints that dir name and exits, so the
stage script knows where stage 5 reads from even when stage 4 was done earlier.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from zipper.tokens.kmeans import (CENTROIDS_FILE, POSITION_FILE, UNIT_ENCODER_DIR, assign_with_distance, fit,
                                  fit_position, kmeans_identity, kmeans_tag, load_sample, remove_position)
from zipper.utils.atomic import atomic_path, is_done, mark_done
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main, str2bool
from zipper.utils.provenance import ProvenanceError, read_provenance, write_provenance

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__, config=True)
    parser.add_argument("--feats_dir", required=True, help="features of the k-means training set (stage 3)")
    parser.add_argument("--feat_tag", required=True, help="name of the feature config (first part of the tag)")
    parser.add_argument("--exp_root", default="exp/kmeans", help="where k-means dirs are made")
    parser.add_argument("--n_clusters", type=positive_int, default=256, help="codebook size K")
    parser.add_argument("--portion", type=float, default=0.1, help="fraction of the utterances to fit on")
    parser.add_argument("--max_frames", type=positive_int, default=500_000, help="cap on frames to fit on")
    parser.add_argument("--seed", type=int, default=0, help="seed of the utterance sample and of k-means")
    parser.add_argument("--algorithm", default="faiss", choices=["faiss", "sklearn"], help="k-means library")
    parser.add_argument("--niter", type=positive_int, default=20, help="k-means iterations")
    parser.add_argument("--num_threads", type=positive_int, default=2, help="threads for fitting")
    parser.add_argument("--remove_position", type=int, default=0,
                        help="subtract a least-squares map from this many sinusoids of the frame index to the "
                             "features before clustering (0: off; for upstreams whose frames encode their "
                             "position, e.g. whisper; zipper/tokens/kmeans.py)")
    parser.add_argument("--print_tag", type=str2bool, default=False, help="print the k-means dir name and exit")
    return parser


def plot_cluster_sizes(counts: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(np.arange(len(counts)), np.sort(counts)[::-1] / counts.sum(), width=1.0)
    ax.set_xlabel("cluster (sorted by size)")
    ax.set_ylabel("share of frames")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def copy_unit_encoder(encoder_dir: Path, out_dir: Path, expected_hash: str) -> None:
    """The unit encoder's files into <k-means dir>/unit_encoder/, so that the dir alone turns audio into units."""
    import shutil

    from zipper.tokens.unit_encoder import CONFIG_FILE, WEIGHTS_FILE, read_info

    info = read_info(encoder_dir)
    if info["hash"] != expected_hash:
        raise ProvenanceError(f"the unit encoder in {encoder_dir} (hash {info['hash']}) is not the one the features "
                              f"were made with (hash {expected_hash})")
    (out_dir / UNIT_ENCODER_DIR).mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        with atomic_path(out_dir / UNIT_ENCODER_DIR / name) as tmp:
            shutil.copyfile(encoder_dir / name, tmp)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    feats_prov = read_provenance(args.feats_dir)
    identity = kmeans_identity(feats_prov, args.n_clusters, args.portion, args.max_frames, args.seed,
                               args.algorithm, args.niter, args.remove_position)
    tag = kmeans_tag(args.feat_tag, identity)
    if args.print_tag:
        print(tag)
        return
    out_dir = Path(args.exp_root) / tag
    if is_done(out_dir):
        logger.info("%s is complete; nothing to do", out_dir)
        return
    torch.set_num_threads(args.num_threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.num_threads)
    except ImportError:
        pass
    begin = time.time()
    x, positions = load_sample(Path(args.feats_dir) / "feats.scp", args.portion, args.max_frames, args.seed)
    position = None
    if args.remove_position:
        position = fit_position(x, positions, args.remove_position)
        before = float(x.var(axis=0).sum())
        x = remove_position(torch.from_numpy(x), positions, torch.from_numpy(position)).numpy()
        logger.info("position removed: %.1f %% of the feature variance was explained by %d sinusoids of the frame "
                    "index", 100 * (1 - float(x.var(axis=0).sum()) / before), args.remove_position)
    logger.info("fitting K=%d on %d frames of dim %d (%s, %d iterations)", args.n_clusters, len(x), x.shape[1],
                args.algorithm, args.niter)
    centroids, inertia = fit(x, args.n_clusters, args.seed, args.algorithm, args.niter)
    ids, _ = assign_with_distance(torch.from_numpy(x), torch.from_numpy(centroids))
    counts = np.bincount(ids.numpy(), minlength=args.n_clusters)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, array in [(CENTROIDS_FILE, centroids), (POSITION_FILE, position)]:
        if array is not None:
            with atomic_path(out_dir / name, suffix=".npy") as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, array)
    provenance = dict(identity, kmeans_tag=tag, feat_tag=args.feat_tag, dim=int(x.shape[1]),
                      upstream_conf=feats_prov.get("upstream_conf"),
                      frame_shift_samples=feats_prov.get("frame_shift_samples"))
    if feats_prov.get("unit_encoder"):  # features made by a unit encoder: the codebook needs it to read audio
        provenance.update(unit_encoder=feats_prov["unit_encoder"],
                          upstream_feature_hash=feats_prov["upstream_feature_hash"])
        copy_unit_encoder(Path(feats_prov["unit_encoder"]["dir"]), out_dir, feats_prov["unit_encoder"]["hash"])
    write_provenance(out_dir, provenance, overwrite=True)
    plot_cluster_sizes(counts, out_dir / "cluster_sizes.png", f"{tag}: {len(x)} frames")
    stats = {"frames": int(len(x)), "mean_sq_distance": inertia, "empty_clusters": int((counts == 0).sum()),
             "largest_cluster_share": float(counts.max() / counts.sum()), "seconds": round(time.time() - begin, 1)}
    mark_done(out_dir, info=stats)
    logger.info("%s: %s", out_dir, " ".join(f"{k}={v}" for k, v in stats.items()))


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, ValueError, FileNotFoundError))
