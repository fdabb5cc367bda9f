"""The trainer: an interrupted run resumes to exactly the uninterrupted result, atomic checkpoints, n-best average."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from zipper.models.lm import TowerLM
from zipper.models.tower import DecoderTower, TowerConfig
from zipper.tasks.tower_task import SequenceBatches
from zipper.train import trainer as trainer_module
from zipper.train.trainer import Trainer, add_trainer_arguments, rank_epochs


class Interrupt(Exception):
    pass


class InterruptingSource(SequenceBatches):
    """Raises after handing out `limit` batches (a kill in the middle of an epoch)."""

    def __init__(self, *args, limit: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit, self.given = limit, 0

    def collate(self, indices):
        if self.given == self.limit:
            raise Interrupt()
        self.given += 1
        return super().collate(indices)


def make_args(tmp_path, name, **overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_trainer_arguments(parser)
    argv = ["--output_dir", str(tmp_path / name), "--max_epoch", "2", "--batch_bins", "64", "--lr", "0.01",
            "--warmup_steps", "2", "--log_interval", "1", "--save_every_steps", "1", "--keep_nbest_models", "2"]
    args = parser.parse_args(argv)
    for k, v in overrides.items():
        setattr(args, k, v)
    return args


def data(seed=0, n=24):
    rng = np.random.default_rng(seed)
    return [np.concatenate(([2], rng.integers(8, 30, size=rng.integers(4, 9)), [3])) for _ in range(n)]


def model(seed=0):
    torch.manual_seed(seed)
    return TowerLM(DecoderTower(TowerConfig(vocab_size=30, d_model=16, n_layers=1, n_heads=2, dropout=0.1)))


def run(tmp_path, name, limit=None, **overrides):
    args = make_args(tmp_path, name, **overrides)
    torch.manual_seed(1)
    cls_kwargs = {"limit": limit} if limit is not None else {}
    source_cls = InterruptingSource if limit is not None else SequenceBatches
    train = source_cls(data(), 0, args.batch_bins, args.seed, True, **cls_kwargs)
    valid = SequenceBatches(data(1, 6), 0, args.batch_bins, args.seed, False)
    m = model()
    return Trainer(args, m, train, valid).run(), m


@pytest.mark.parametrize("iters", [0, 5])
def test_interrupted_run_resumes_to_the_same_model(tmp_path, iters):
    history, reference = run(tmp_path, "full", num_iters_per_epoch=iters)
    with pytest.raises(Interrupt):
        run(tmp_path, "cut", limit=7, num_iters_per_epoch=iters)  # dies in the middle of an epoch
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pth", weights_only=False)
    assert ckpt["state"]["step"] == 7 and ckpt["state"]["batch_in_epoch"] > 0
    resumed_history, resumed = run(tmp_path, "cut", num_iters_per_epoch=iters)
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert [h["valid"]["loss"] for h in resumed_history] == pytest.approx([h["valid"]["loss"] for h in history])


def test_exp_dir_layout_and_nbest_average(tmp_path):
    history, _ = run(tmp_path, "exp", max_epoch=3)
    out = tmp_path / "exp"
    ranked = rank_epochs(history, "valid", "loss", "min")
    kept = sorted(int(p.name[:-len("epoch.pth")]) for p in out.glob("*epoch.pth"))
    assert kept == sorted(set(ranked[:2]) | {3})
    assert (out / "valid.loss.best.pth").resolve().name == f"{ranked[0]}epoch.pth"
    average = torch.load(out / "valid.loss.ave.pth")
    a, b = (torch.load(out / f"{e}epoch.pth") for e in ranked[:2])
    for k in average:
        if average[k].is_floating_point():
            torch.testing.assert_close(average[k], (a[k] + b[k]) / 2)
    assert (out / "images" / "loss.png").stat().st_size > 1000 and (out / "images" / "ppl.png").exists()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert all("ppl" in h["valid"] for h in history)


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth"
    trainer_module.atomic_save({"step": 1}, path)

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        trainer_module.atomic_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]  # no temporary left behind


def test_rank_epochs_modes():
    history = [{"epoch": 1, "valid": {"loss": 2.0, "acc": 0.5}}, {"epoch": 2, "valid": {"loss": 1.0, "acc": 0.4}},
               {"epoch": 3, "valid": {"loss": 1.5, "acc": 0.7}}]
    assert rank_epochs(history, "valid", "loss", "min") == [2, 3, 1]
    assert rank_epochs(history, "valid", "acc", "max") == [3, 1, 2]
