"""The training loop every Zipper model uses (towers, fusion, baseline), with ESPnet's options and exp layout.

Why not espnet2's Trainer (we keep ESPnet's habits, not its loop):
  * it writes `checkpoint.pth` with a plain `torch.save`, once per epoch: a kill during the write leaves a
    corrupt checkpoint, and a kill mid-epoch loses the epoch - with the built-in recipe's ten-minute budgets an
    epoch can be the whole run.  Here checkpoints are written to a temporary name and renamed, every
    `--save_every_steps` updates too, and a resumed run continues at the exact batch (same result as a run
    that was never interrupted: tested);
  * it autocasts only through `torch.cuda.amp`, so `--use_amp` cannot reach bf16 on CPU (on CPUs without AMX
    bf16 autocast is slower than fp32, with AMX faster: `--use_amp auto` takes it only where it pays);
  * its data pipeline needs ESPnet's collect_stats pass and shape files; ours batches in-memory token
    sequences by `--batch_bins` directly;
  * the performance work (torch.compile, no host syncs in the hot loop) needs the loop in our hands.
What an ESPnet user finds as expected: `--ngpu`, `--use_amp`, `--resume`, `--max_epoch`, `--batch_bins`,
`--accum_grad`, `--grad_clip`, `--keep_nbest_models`, `--best_model_criterion`, `--patience`,
`--num_iters_per_epoch`; and in the exp dir `config.yaml`, `train.log`, `checkpoint.pth`, `{N}epoch.pth`,
`valid.<metric>.best.pth`, `valid.<metric>.ave.pth` (n-best average), `images/*.png`, `tensorboard/`.
Several GPUs or machines go through torch.distributed (DDP; launch with torchrun, or `--ngpu N` here).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol

import numpy as np
import torch
from torch import nn

from zipper.utils.atomic import atomic_path, atomic_write_json
from zipper.utils.cli import positive_int, str2bool
from zipper.utils.precision import amp_mode, resolve_amp

logger = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pth"


class BatchSource(Protocol):
    """What the trainer iterates: a reproducible batch order per epoch, and batches made from indices."""

    def batches(self, epoch: int) -> list[list[int]]: ...

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]: ...


def add_trainer_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("trainer (ESPnet names)")
    group.add_argument("--output_dir", required=True, help="experiment dir")
    group.add_argument("--ngpu", type=int, default=0, help="GPUs on this machine (0: CPU; >1: DDP)")
    group.add_argument("--seed", type=int, default=0, help="random seed (model init, batch order)")
    group.add_argument("--max_epoch", type=int, default=10, help="epochs to train (0: no training, e.g. an imported model)")
    group.add_argument("--num_iters_per_epoch", type=int, default=0,
                       help="updates per epoch (0: one pass over the data); batches continue across epochs")
    group.add_argument("--batch_bins", type=positive_int, default=4096, help="padded tokens per batch")
    group.add_argument("--max_batch_size", type=int, default=0, help="cap on sequences per batch (0: none)")
    group.add_argument("--accum_grad", type=positive_int, default=1, help="batches per optimizer update")
    group.add_argument("--grad_clip", type=float, default=1.0, help="gradient norm clip (<= 0: none)")
    group.add_argument("--optim", default="adamw", choices=["adam", "adamw", "sgd"], help="optimizer")
    group.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    group.add_argument("--betas", type=float, nargs=2, default=[0.9, 0.99], help="Adam betas")
    group.add_argument("--weight_decay", type=float, default=0.0, help="weight decay")
    group.add_argument("--scheduler", default="warmup_cosine", choices=["constant", "warmup", "warmup_cosine"],
                       help="learning-rate schedule (warmup: linear warmup then constant)")
    group.add_argument("--warmup_steps", type=int, default=100, help="linear warmup updates")
    group.add_argument("--use_amp", type=amp_mode, default=False,
                       help="mixed precision (bf16 autocast on CPU and GPU; fp16 + loss scaling with --amp_dtype); "
                            "auto: where bf16 pays, a GPU or a CPU with AMX (zipper/utils/precision.py)")
    group.add_argument("--amp_dtype", default="bfloat16", choices=["bfloat16", "float16"], help="autocast dtype")
    group.add_argument("--compile", type=str2bool, default=False, help="torch.compile the model")
    group.add_argument("--num_threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    group.add_argument("--log_interval", type=positive_int, default=50, help="updates between log lines")
    group.add_argument("--save_every_steps", type=int, default=200,
                       help="updates between resumable checkpoints (besides every epoch end; 0: epochs only)")
    group.add_argument("--keep_nbest_models", type=positive_int, default=3, help="epoch models kept and averaged")
    group.add_argument("--best_model_criterion", nargs=3, default=["valid", "loss", "min"],
                       metavar=("SET", "METRIC", "MODE"), help="what makes an epoch model one of the best")
    group.add_argument("--patience", type=int, default=0, help="stop after this many epochs without improving (0: off)")
    group.add_argument("--resume", type=str2bool, default=True, help="continue from output_dir/checkpoint.pth")
    group.add_argument("--max_valid_batches", type=int, default=0, help="validate on at most this many batches")


@dataclasses.dataclass
class TrainState:
    epoch: int = 1  # the epoch in progress
    batch_in_epoch: int = 0  # batches of this epoch already consumed
    step: int = 0  # optimizer updates so far
    cursor: int = 0  # position in the endless batch stream (with num_iters_per_epoch)
    history: list = dataclasses.field(default_factory=list)  # one dict of stats per finished epoch
    bad_epochs: int = 0


def lr_lambda(args) -> Callable[[int], float]:
    """Multiplier of --lr at each update: linear warmup, then constant or a cosine down to 10 %."""

    def factor(step: int) -> float:
        if args.scheduler == "constant":
            return 1.0
        if step < args.warmup_steps:
            return (step + 1) / args.warmup_steps
        if args.scheduler == "warmup":
            return 1.0
        progress = min(1.0, (step - args.warmup_steps) / max(args.total_steps - args.warmup_steps, 1))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_optimizer(args, model: nn.Module) -> torch.optim.Optimizer:
    """A model may ask for its own parameter groups (e.g. a larger learning rate for gates)."""
    if hasattr(model, "optimizer_groups"):
        params = model.optimizer_groups(args.lr)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    if args.optim == "sgd":
        return torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    cls = torch.optim.AdamW if args.optim == "adamw" else torch.optim.Adam
    # the fused kernel: one pass over all parameters (3.5x faster than foreach here; docs/performance.md)
    flat = [p for group in params for p in group["params"]] if params and isinstance(params[0], dict) else params
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in flat)
    return cls(params, lr=args.lr, betas=tuple(args.betas), weight_decay=args.weight_decay, fused=fused or None)


def atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path, suffix=".pth") as tmp:
        torch.save(obj, tmp)


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a model file holds: a model may leave out what it does not train (a frozen pre-trained tower)."""
    return model.checkpoint_state_dict() if hasattr(model, "checkpoint_state_dict") else model.state_dict()


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    if hasattr(model, "load_checkpoint_state_dict"):
        model.load_checkpoint_state_dict(state)
    else:
        model.load_state_dict(state)


def parameter_report(model: nn.Module) -> str:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{total / 1e6:.2f} M parameters, {trainable / 1e6:.2f} M trainable"


class StatSums:
    """Weighted sums of statistics, each with its own weight: a statistic only some batches report (one
    task's loss in a multi-task batch stream) is averaged over those batches only."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}

    def add(self, stats: dict[str, Any], weight: Any) -> None:
        """Tensor statistics are summed where they are (on a GPU: no host-device sync per batch, the training
        loop never waits for the device); they become Python floats in `means`."""
        w = weight.detach().double() if torch.is_tensor(weight) else float(weight)
        for k, v in stats.items():
            v = v.detach().double() if torch.is_tensor(v) else float(v)
            self.sums[k] = self.sums.get(k, 0.0) + v * w
            self.weights[k] = self.weights.get(k, 0.0) + w

    def means(self) -> dict[str, float]:
        return {k: float(v) / max(float(self.weights[k]), 1e-9) for k, v in self.sums.items()}

    def all_reduce(self, device: torch.device) -> None:
        keys = sorted(self.sums)
        t = torch.tensor([float(self.sums[k]) for k in keys] + [float(self.weights[k]) for k in keys],
                         device=device, dtype=torch.float64)
        torch.distributed.all_reduce(t)
        values = t.tolist()
        self.sums = dict(zip(keys, values[:len(keys)]))
        self.weights = dict(zip(keys, values[len(keys):]))


class Trainer:
    """Runs epochs of `model(**batch) -> (loss, stats, weight)` over a BatchSource, resumably."""

    def __init__(self, args, model: nn.Module, train: BatchSource, valid: BatchSource,
                 on_epoch_end: Optional[Callable[[int, dict], None]] = None,
                 on_log: Optional[Callable[[int], None]] = None,
                 epoch_extras: Optional[Callable[[], dict]] = None):
        """on_epoch_end(epoch, stats) after an epoch is saved; on_log(step) with every log line;
        epoch_extras() -> more entries of an epoch's history record (e.g. a fused model's gates)."""
        self.args = args
        self.output_dir = Path(args.output_dir)
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if args.ngpu > 0 else "cpu")
        if args.num_threads > 0:
            torch.set_num_threads(args.num_threads)
        self.model = model.to(self.device)
        self.train, self.valid = train, valid
        self.on_epoch_end = on_epoch_end
        self.on_log = on_log
        self.epoch_extras = epoch_extras
        self.optimizer = build_optimizer(args, self.model)
        args.total_steps = self.total_steps()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(args))
        self.amp_dtype = getattr(torch, args.amp_dtype)
        self.use_amp = resolve_amp(args.use_amp, self.device)
        if self.use_amp:
            logger.info("training precision: %s autocast", args.amp_dtype)
        self.scaler = (torch.amp.GradScaler("cuda") if self.use_amp and self.amp_dtype == torch.float16
                       and self.device.type == "cuda" else None)
        self.state = TrainState()
        self.forward_model: nn.Module = self.model
        if self.world_size > 1:
            self.forward_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if args.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.writer = None
        if self.rank == 0:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.output_dir / "tensorboard"))
            except ImportError:  # pragma: no cover - tensorboard is in tools/requirements.txt
                logger.warning("tensorboard is not installed: no event files")

    def total_steps(self) -> int:
        per_epoch = self.args.num_iters_per_epoch or math.ceil(len(self.train.batches(1)) / self.args.accum_grad)
        return per_epoch * self.args.max_epoch

    # ---------------------------------------------------------------------------------------------- state
    def checkpoint(self) -> dict:
        return {
            "model": model_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "state": dataclasses.asdict(self.state),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        }

    def save_checkpoint(self) -> None:
        if self.rank == 0:
            atomic_save(self.checkpoint(), self.output_dir / CHECKPOINT)

    def maybe_resume(self) -> None:
        path = self.output_dir / CHECKPOINT
        if not (self.args.resume and path.exists()):
            return
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        load_model_state(self.model, ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler and ckpt["scaler"]:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["state"])
        random.setstate(ckpt["rng"]["python"])
        np.random.set_state(ckpt["rng"]["numpy"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        logger.info("resumed from %s: epoch %d, batch %d of it, %d updates done", path, self.state.epoch,
                    self.state.batch_in_epoch, self.state.step)

    # ------------------------------------------------------------------------------------------- batches
    def epoch_batches(self) -> Iterator[tuple[int, list[int]]]:
        """(position, indices) of the current epoch's batches from where it stopped.

        Without --num_iters_per_epoch an epoch is one pass over the data; with it, an epoch is that many
        updates taken from an endless stream of passes (pass p shuffled with seed + p).
        """
        args = self.args
        if not args.num_iters_per_epoch:
            batches = self.train.batches(self.state.epoch)
            for k in range(self.state.batch_in_epoch, len(batches)):
                yield k, batches[k]
            return
        wanted = args.num_iters_per_epoch * args.accum_grad
        taken = self.state.batch_in_epoch
        cursor = self.state.cursor
        while taken < wanted:
            passes = self.train.batches(1)
            n = len(passes)
            pass_index, k = divmod(cursor, n)
            batches = self.train.batches(pass_index + 1)
            yield taken, batches[k]
            taken += 1
            cursor += 1

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp)

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    # ------------------------------------------------------------------------------------------ training
    def train_epoch(self) -> dict[str, float]:
        args, model = self.args, self.forward_model
        model.train()
        totals, window = StatSums(), StatSums()
        log_tokens, log_begin = 0, time.time()
        self.optimizer.zero_grad(set_to_none=True)
        for position, indices in self.epoch_batches():
            batch = self.to_device(self.train.collate(indices))
            with self.autocast():
                loss, stats, weight = model(**batch)
            loss_for_backward = loss / args.accum_grad
            if self.scaler:
                self.scaler.scale(loss_for_backward).backward()
            else:
                loss_for_backward.backward()
            totals.add(stats, weight)
            window.add(stats, weight)
            log_tokens = log_tokens + weight  # a tensor: read (a sync) only when logging
            self.state.batch_in_epoch = position + 1
            self.state.cursor += 1 if args.num_iters_per_epoch else 0
            if (position + 1) % args.accum_grad:
                continue
            grad_norm = self.update()
            if self.state.step % args.log_interval == 0:
                elapsed = time.time() - log_begin
                means, grad_norm, log_tokens = window.means(), float(grad_norm), float(log_tokens)
                logger.info("epoch %d step %d: %s grad_norm=%.3g lr=%.3g %.0f tokens/s", self.state.epoch,
                            self.state.step, fmt(means), grad_norm, self.scheduler.get_last_lr()[0],
                            log_tokens / max(elapsed, 1e-9))
                if self.writer:
                    for k, v in means.items():
                        self.writer.add_scalar(f"train/{k}", v, self.state.step)
                    self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.state.step)
                    self.writer.add_scalar("train/tokens_per_second", log_tokens / max(elapsed, 1e-9),
                                           self.state.step)
                if self.on_log:
                    self.on_log(self.state.step)
                window, log_tokens, log_begin = StatSums(), 0, time.time()
            if args.save_every_steps and self.state.step % args.save_every_steps == 0:
                self.save_checkpoint()
        return totals.means()

    def update(self) -> torch.Tensor:
        """One optimizer step; returns the gradient norm as a tensor (read only when logged: no sync per step)."""
        args = self.args
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = (torch.nn.utils.clip_grad_norm_(params, args.grad_clip) if args.grad_clip > 0
                     else torch.zeros(()))
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        return grad_norm

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        model = self.forward_model
        model.eval()
        totals = StatSums()
        batches = self.valid.batches(0)
        if self.args.max_valid_batches:
            batches = batches[:self.args.max_valid_batches]
        for indices in batches:
            batch = self.to_device(self.valid.collate(indices))
            with self.autocast():
                _, stats, weight = model(**batch)
            totals.add(stats, weight)
        if self.world_size > 1:
            totals.all_reduce(self.device)
        return totals.means()

    # ------------------------------------------------------------------------------------------- epochs
    def run(self) -> list[dict]:
        args = self.args
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.maybe_resume()
        set_name, metric, mode = args.best_model_criterion
        while self.state.epoch <= args.max_epoch:
            begin = time.time()
            train_stats = with_perplexity(self.train_epoch())
            valid_stats = with_perplexity(self.validate())
            stats = {"epoch": self.state.epoch, "train": train_stats, "valid": valid_stats,
                     "seconds": round(time.time() - begin, 1), "step": self.state.step}
            if self.epoch_extras:
                stats.update(self.epoch_extras())
            self.state.history.append(stats)
            logger.info("epoch %d done in %.0f s: train %s | valid %s", self.state.epoch, stats["seconds"],
                        fmt(train_stats), fmt(valid_stats))
            if self.writer:
                for k, v in valid_stats.items():
                    self.writer.add_scalar(f"valid/{k}", v, self.state.step)
            improved = self.finish_epoch(stats, set_name, metric, mode)
            self.state.bad_epochs = 0 if improved else self.state.bad_epochs + 1
            stop = args.patience and self.state.bad_epochs >= args.patience
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            self.save_checkpoint()
            if self.on_epoch_end and self.rank == 0:
                self.on_epoch_end(self.state.epoch - 1, stats)
            if stop:
                logger.info("no improvement of %s.%s for %d epochs: stopping", set_name, metric, args.patience)
                break
        if self.rank == 0:
            self.average_nbest(set_name, metric, mode)
            plot_history(self.state.history, self.output_dir / "images")
        if self.writer:
            self.writer.close()
        end_distributed()
        return self.state.history

    def finish_epoch(self, stats: dict, set_name: str, metric: str, mode: str) -> bool:
        """Save this epoch's model, keep the n best, point valid.<metric>.best.pth at the best."""
        if self.rank != 0:
            return True
        epoch = self.state.epoch
        atomic_save(model_state(self.model), self.output_dir / f"{epoch}epoch.pth")
        ranked = rank_epochs(self.state.history, set_name, metric, mode)
        keep = set(ranked[:self.args.keep_nbest_models]) | {epoch}
        for old in self.output_dir.glob("*epoch.pth"):
            n = int(old.name[:-len("epoch.pth")])
            if n not in keep:
                old.unlink()
        best = ranked[0]
        link = self.output_dir / f"{set_name}.{metric}.best.pth"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(f"{best}epoch.pth")
        atomic_write_json(self.output_dir / "history.json", self.state.history)
        return best == epoch

    def average_nbest(self, set_name: str, metric: str, mode: str) -> None:
        ranked = [e for e in rank_epochs(self.state.history, set_name, metric, mode)[:self.args.keep_nbest_models]
                  if (self.output_dir / f"{e}epoch.pth").exists()]
        if not ranked:
            return
        average: dict[str, torch.Tensor] = {}
        for e in ranked:
            state = torch.load(self.output_dir / f"{e}epoch.pth", map_location="cpu")
            for k, v in state.items():
                if v.is_floating_point():
                    average[k] = average.get(k, 0) + v.double() / len(ranked)
                else:
                    average.setdefault(k, v)
        average = {k: v.float() if torch.is_tensor(v) and v.dtype == torch.float64 else v for k, v in average.items()}
        atomic_save(average, self.output_dir / f"{set_name}.{metric}.ave.pth")
        atomic_write_json(self.output_dir / f"{set_name}.{metric}.ave.json", {"epochs": ranked})
        logger.info("averaged epochs %s -> %s.%s.ave.pth", ranked, set_name, metric)


def with_perplexity(stats: dict[str, float]) -> dict[str, float]:
    """Add ppl = exp(loss) when the loss is a mean token negative log-likelihood."""
    if "loss" in stats:
        stats = dict(stats, ppl=math.exp(min(stats["loss"], 700.0)))
    return stats


def rank_epochs(history: list[dict], set_name: str, metric: str, mode: str) -> list[int]:
    scored = [(h[set_name][metric], h["epoch"]) for h in history if metric in h.get(set_name, {})]
    if not scored:
        return [h["epoch"] for h in reversed(history)]
    return [e for _, e in sorted(scored, key=lambda x: (x[0] if mode == "min" else -x[0], -x[1]))]


def fmt(stats: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in stats.items())


def plot_history(history: list[dict], images: Path) -> None:
    """images/<metric>.png: train and valid curves per epoch, for every metric."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted(set(history[-1].get("train", {})) | set(history[-1].get("valid", {})))
    images.mkdir(parents=True, exist_ok=True)
    for metric in metrics:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for part in ("train", "valid"):
            points = [(h["epoch"], h[part][metric]) for h in history if metric in h.get(part, {})]
            if points:
                ax.plot(*zip(*points), marker="o", label=part)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_path(images / f"{metric}.png", suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)


def setup_distributed(args) -> None:
    """Join the process group that torchrun (or --ngpu N's spawn) set up through RANK/WORLD_SIZE."""
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if args.ngpu > 0 else "gloo"
        torch.distributed.init_process_group(backend)
        if args.ngpu > 0:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def end_distributed() -> None:
    """Leave the process group once every rank is done: a rank exiting with gloo's threads still alive aborts
    ("terminate called without an active exception"), which fails the whole torchrun launch."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
