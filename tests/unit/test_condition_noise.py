"""--condition_noise (zipper/tasks/fusion_task.py): only the conditioning side of a training batch is corrupted,
reproducibly, within its vocabulary, and <bos>/<eos> survive."""

from __future__ import annotations

import numpy as np
import pytest

from zipper.bin import zipper_train
from zipper.tasks.fusion_task import PairedBatches, PairedData
from zipper.tokens.token_list import BOS, EOS, NUM_SPECIAL

SIZES = {"speech": 40, "text": 30}


def paired(n: int = 6) -> PairedData:
    rng = np.random.default_rng(0)
    speech = [np.concatenate([[BOS], rng.integers(NUM_SPECIAL, SIZES["speech"], 50), [EOS]]) for _ in range(n)]
    text = [np.concatenate([[BOS], rng.integers(NUM_SPECIAL, SIZES["text"], 20), [EOS]]) for _ in range(n)]
    return PairedData([f"u{i}" for i in range(n)], speech, text)


def batches(noise: float) -> PairedBatches:
    return PairedBatches(paired(), {"asr": 1.0, "tts": 1.0}, 0, 10_000, seed=3, shuffle=True,
                         condition_noise=noise, vocab_sizes=SIZES)


@pytest.mark.parametrize("task, noisy, clean", [("asr", "speech", "text"), ("tts", "text", "speech")])
def test_only_the_conditioning_side_is_replaced_within_its_vocabulary(task, noisy, clean):
    item = (task, [0, 2, 4])
    plain, noised = batches(0.0).collate(item), batches(0.3).collate(item)
    assert np.array_equal(plain[clean], noised[clean])
    changed = (plain[noisy] != noised[noisy]).float().mean().item()
    assert 0.15 < changed < 0.35  # 0.3 replaced, a few by the same token
    x = noised[noisy]
    lengths = noised[f"{noisy}_lengths"]
    for row, n in zip(x, lengths):
        assert row[0] == BOS and row[n - 1] == EOS
        assert ((row[1:n - 1] >= NUM_SPECIAL) & (row[1:n - 1] < SIZES[noisy])).all()
    assert np.array_equal(x, batches(0.3).collate(item)[noisy])  # the same batch gets the same noise (resumption)


def test_noise_is_checked_and_reaches_the_cli():
    with pytest.raises(ValueError, match=r"--condition_noise must be in \[0, 1\), not 1.5"):
        batches(1.5)
    with pytest.raises(ValueError, match="needs the vocabulary sizes"):
        PairedBatches(paired(), {"asr": 1.0}, 0, 10_000, 0, True, condition_noise=0.1)
    args = zipper_train.get_parser().parse_args(
        ["--text_tower_exp", "t", "--speech_token_list", "s", "--train_units", "u", "--train_text", "x",
         "--valid_units", "v", "--valid_text", "y", "--output_dir", "o", "--condition_noise", "0.1"])
    assert args.condition_noise == 0.1
