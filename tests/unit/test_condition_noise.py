"""--condition_noise and --history_noise (zipper/tasks/fusion_task.py): the conditioning side of a training batch,
or what its predicted side reads (never its targets), is corrupted reproducibly, within its vocabulary, and
<bos>/<eos> survive; both fused models read the noisy history and score the clean targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zipper.bin import zipper_train
from zipper.models.tower import DecoderTower, TowerConfig
from zipper.models.vocab_expansion import VocabExpansionModel
from zipper.models.zipper import ZipperModel
from zipper.tasks.fusion_task import PairedBatches, PairedData
from zipper.tokens.token_list import BOS, EOS, NUM_SPECIAL, PAD

SIZES = {"speech": 40, "text": 30}


def paired(n: int = 6) -> PairedData:
    rng = np.random.default_rng(0)
    speech = [np.concatenate([[BOS], rng.integers(NUM_SPECIAL, SIZES["speech"], 50), [EOS]]) for _ in range(n)]
    text = [np.concatenate([[BOS], rng.integers(NUM_SPECIAL, SIZES["text"], 20), [EOS]]) for _ in range(n)]
    return PairedData([f"u{i}" for i in range(n)], speech, text)


def batches(noise: float, history: float = 0.0) -> PairedBatches:
    return PairedBatches(paired(), {"asr": 1.0, "tts": 1.0}, 0, 10_000, seed=3, shuffle=True,
                         condition_noise=noise, vocab_sizes=SIZES, history_noise=history)


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
    with pytest.raises(ValueError, match=r"--history_noise \(asr\) must be in \[0, 1\), not -0.1"):
        batches(0.0, history=-0.1)
    with pytest.raises(ValueError, match="needs the vocabulary sizes"):
        PairedBatches(paired(), {"asr": 1.0}, 0, 10_000, 0, True, condition_noise=0.1)
    with pytest.raises(ValueError, match=r"history_noise \(asr\) needs the vocabulary sizes"):
        PairedBatches(paired(), {"asr": 1.0}, 0, 10_000, 0, True, history_noise=0.1)
    args = zipper_train.get_parser().parse_args(
        ["--text_tower_exp", "t", "--speech_token_list", "s", "--train_units", "u", "--train_text", "x",
         "--valid_units", "v", "--valid_text", "y", "--output_dir", "o", "--condition_noise", "0.1",
         "--history_noise", "0.2"])
    assert args.condition_noise == 0.1 and args.history_noise == 0.2
    args = zipper_train.get_parser().parse_args(
        ["--text_tower_exp", "t", "--speech_token_list", "s", "--train_units", "u", "--train_text", "x",
         "--valid_units", "v", "--valid_text", "y", "--output_dir", "o", "--history_noise", "{asr: 0.4}"])
    assert args.history_noise == {"asr": 0.4}
    with pytest.raises(ValueError, match="--history_noise: unknown task 'mt'"):
        batches(0.0, history={"mt": 0.1})
    with pytest.raises(ValueError, match=r"--history_noise \(tts\) must be in \[0, 1\), not 1.0"):
        batches(0.0, history={"asr": 0.2, "tts": 1.0})


def test_history_noise_per_task_leaves_the_other_task_clean():
    source = batches(0.0, history={"asr": 0.3})
    assert "history" in source.collate(("asr", [0, 2])) and "history" not in source.collate(("tts", [0, 2]))
    item = ("asr", [1, 3])  # the ASR history is that of the same probability for every task
    assert np.array_equal(source.collate(item)["history"], batches(0.0, history=0.3).collate(item)["history"])


@pytest.mark.parametrize("task, predicted", [("asr", "text"), ("tts", "speech")])
def test_history_noise_changes_what_the_predicted_side_reads_not_its_targets(task, predicted):
    item = (task, [1, 3, 5])
    plain, noised = batches(0.0).collate(item), batches(0.0, history=0.3).collate(item)
    assert "history" not in plain
    for side in ("speech", "text"):  # both sides, the targets included, stay clean
        assert np.array_equal(plain[side], noised[side])
    history, clean = noised["history"], noised[predicted]
    assert history.shape == clean.shape
    changed = (history != clean).float().mean().item()
    assert 0.15 < changed < 0.35
    for row, n in zip(history, noised[f"{predicted}_lengths"]):
        assert row[0] == BOS and row[n - 1] == EOS
        assert ((row[1:n - 1] >= NUM_SPECIAL) & (row[1:n - 1] < SIZES[predicted])).all()
    assert np.array_equal(history, batches(0.0, history=0.3).collate(item)["history"])


class Tok:
    bos_id, eos_id, pad_id = BOS, EOS, PAD


def fused_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    text = DecoderTower(TowerConfig(vocab_size=SIZES["text"], d_model=32, n_layers=2, n_heads=4))
    speech = DecoderTower(TowerConfig(vocab_size=SIZES["speech"], d_model=24, n_layers=2, n_heads=4))
    zipper = ZipperModel({"text": text, "speech": speech}, {"text": 1, "speech": 1}, cross_heads=4)
    with torch.no_grad():
        for layers in zipper.cross.values():
            for layer in layers:
                layer.attn_gate.fill_(0.5)
    baseline = VocabExpansionModel(DecoderTower(TowerConfig(vocab_size=SIZES["text"], d_model=32, n_layers=2,
                                                            n_heads=4)), Tok(), n_units=SIZES["speech"] - NUM_SPECIAL)
    return {"zipper": zipper.eval(), "baseline": baseline.eval()}


@pytest.mark.parametrize("name", ["zipper", "baseline"])
@pytest.mark.parametrize("task", ["asr", "tts"])
def test_fused_models_read_the_history_and_score_the_clean_targets(name, task):
    model = fused_models()[name]
    source = batches(0.0, history=0.4)
    batch = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v
             for k, v in source.collate((task, [0, 2, 4])).items()}
    predicted = "text" if task == "asr" else "speech"
    clean_loss, _, count = model(**{k: v for k, v in batch.items() if k != "history"})
    same_loss, _, same_count = model(**{**batch, "history": batch[predicted]})
    noisy_loss, _, noisy_count = model(**batch)
    assert torch.allclose(clean_loss, same_loss) and int(count) == int(same_count) == int(noisy_count)
    assert not torch.allclose(clean_loss, noisy_loss)  # it reads the history ...
    targets_swapped = {**batch, predicted: batch["history"]}  # ... and scores the targets, not the history
    assert not torch.allclose(noisy_loss, model(**{**targets_swapped, "history": batch["history"]})[0])
    if name == "zipper":
        with pytest.raises(ValueError, match="does not match"):
            model(**{**batch, "history": batch["history"][:, :-1]})
