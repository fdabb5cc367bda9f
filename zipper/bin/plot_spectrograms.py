"""Spectrograms of the same utterances from several wav.scp files, one above the other: <output_dir>/<utt>.png.

To see what a vocoder changes: `--wav_scp dump/audio/test/wav.scp exp/vocoder_x/resynth_test/wav.scp
--labels original vocoded`.  Utterances: --utts, else --num_utts spread evenly over the sorted ids that every
wav.scp has (so that several voices show).  Log-mel spectrograms (80 bands, 25 ms windows, 10 ms hop).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from zipper.data.audio import AudioError, read_audio
from zipper.data.kaldi_dir import read_kv
from zipper.utils.atomic import atomic_path
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--wav_scp", nargs="+", required=True, help="wav.scp files (or their dirs), top to bottom")
    parser.add_argument("--labels", nargs="+", default=[], help="a title per wav.scp (default: its dir name)")
    parser.add_argument("--output_dir", required=True, help="where <utt>.png go")
    parser.add_argument("--utts", nargs="+", default=[], help="utterances to plot (default: --num_utts spread out)")
    parser.add_argument("--num_utts", type=positive_int, default=4, help="how many utterances when --utts is not given")
    return parser


def log_mel(samples: np.ndarray, fs: int) -> np.ndarray:
    """(80, frames) log10 mel energies."""
    import librosa

    mel = librosa.feature.melspectrogram(y=samples, sr=fs, n_fft=int(0.025 * fs), hop_length=int(0.01 * fs),
                                         n_mels=80, fmin=0, fmax=fs / 2)
    return np.log10(np.maximum(mel, 1e-10))


def pick(common: list[str], count: int) -> list[str]:
    if len(common) <= count:
        return common
    return [common[int(i)] for i in np.linspace(0, len(common) - 1, count).round()]


def plot_utterance(utt: str, scps: list[dict[str, str]], labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(scps), 1, figsize=(8, 2.4 * len(scps)), squeeze=False)
    for ax, scp, label in zip(axes[:, 0], scps, labels):
        try:
            fs, samples = read_audio(scp[utt])
        except AudioError as e:
            raise AudioError(f"utterance '{utt}' ({label}): {e}") from e
        spec = log_mel(samples, fs)
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=spec.max() - 8, vmax=spec.max(),
                  extent=(0, len(samples) / fs, 0, spec.shape[0]))
        ax.set_title(f"{utt}: {label}", fontsize=9)
        ax.set_ylabel("mel band")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    paths = [Path(p) / "wav.scp" if Path(p).is_dir() else Path(p) for p in args.wav_scp]
    labels = args.labels or [p.parent.name for p in paths]
    if len(labels) != len(paths):
        raise ValueError(f"{len(labels)} --labels for {len(paths)} --wav_scp")
    scps = [read_kv(p) for p in paths]
    common = sorted(set.intersection(*(set(s) for s in scps)))
    if args.utts:
        absent = [(u, str(p)) for u in args.utts for s, p in zip(scps, paths) if u not in s]
        if absent:
            raise KeyError(f"utterance '{absent[0][0]}' is not in {absent[0][1]}")
        utts = list(args.utts)
    else:
        if not common:
            raise ValueError(f"the wav.scp files {', '.join(map(str, paths))} have no utterance in common")
        utts = pick(common, args.num_utts)
    out = Path(args.output_dir)
    for utt in utts:
        plot_utterance(utt, scps, labels, out / f"{utt}.png")
    print(f"{out}: {len(utts)} spectrogram plots ({', '.join(utts)})")


if __name__ == "__main__":
    run_main(main, expected_errors=(AudioError, FileNotFoundError, ValueError, KeyError))
