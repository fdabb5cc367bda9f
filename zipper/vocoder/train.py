"""The vocoder's GAN training loop: a generator and a discriminator, each with its own optimizer.

zipper.train.trainer.Trainer runs one loss and one optimizer; a GAN alternates two, so it has this loop, with
the same guarantees: checkpoints written atomically every `--save_every_steps` updates, a resumed run that
continues exactly where the interrupted one stopped (batches are drawn from (seed, step); the RNG state that
dropout uses is in the checkpoint), tensorboard scalars, a progress line every `--log_interval` updates and
loss curves in `images/loss.png`.

Losses are HiFi-GAN's (ESPnet's modules): mel-spectrogram L1 (x lambda_mel), least-squares adversarial
(x lambda_adv) and discriminator feature matching (x lambda_fm); plus the duration predictor's MSE in the log
domain (x lambda_dur).  The discriminator joins at `--discriminator_start_steps` (ParallelWaveGAN's schedule):
on a CPU budget the first updates are spent on the mel loss, which makes speech intelligible fastest.
The WORLD vocoder (zipper.vocoder.world) trains in the same loop without a discriminator: its losses are the
feature regression's, and it has no waveform in the loop.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from zipper.train.trainer import StatSums, atomic_save, fmt
from zipper.utils.atomic import atomic_path, atomic_write_json
from zipper.utils.precision import resolve_amp
from zipper.vocoder.data import SegmentSampler, dedup_batch
from zipper.vocoder.model import DURATION_OFFSET

logger = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pth"
MODEL_FILE = "vocoder.pth"
DEFAULT_MEL_LOSS = {"n_fft": 1024, "hop_length": 256, "n_mels": 80, "fmin": 0, "fmax": None}


@dataclasses.dataclass
class GanState:
    step: int = 0  # generator updates so far
    history: list = dataclasses.field(default_factory=list)  # {"step", "train": {...}} per log interval
    valid: list = dataclasses.field(default_factory=list)  # {"step", "valid": {...}} per validation


class GanTrainer:
    """Trains `model` (UnitVocoder) against `discriminator` on `train` segments; validates on whole utterances.

    A WorldVocoder (discriminator None) trains on its feature losses alone, in the same loop."""

    def __init__(self, args, model: nn.Module, discriminator: Optional[nn.Module], train: SegmentSampler,
                 valid: list[dict[str, torch.Tensor]]):
        from espnet.nets.pytorch_backend.fastspeech.duration_predictor import DurationPredictorLoss
        from espnet2.gan_tts.hifigan.loss import (DiscriminatorAdversarialLoss, FeatureMatchLoss,
                                                  GeneratorAdversarialLoss, MelSpectrogramLoss)

        self.args = args
        self.output_dir = Path(args.output_dir)
        self.device = torch.device("cuda" if args.ngpu > 0 else "cpu")
        self.model = model.to(self.device)
        self.discriminator = discriminator.to(self.device) if discriminator is not None else None
        self.train, self.valid = train, valid
        # bf16 autocast for the WORLD network's forward pass (its losses stay fp32); not for the HiFi-GAN
        self.use_amp = discriminator is None and resolve_amp(args.use_amp, self.device)
        logger.info("training precision: %s", "bf16 autocast" if self.use_amp else "fp32")
        self.mel_loss = MelSpectrogramLoss(fs=args.fs, **dict(DEFAULT_MEL_LOSS, **(args.mel_loss_conf or {})))
        self.mel_loss.to(self.device)
        self.adv_loss = GeneratorAdversarialLoss(loss_type="mse")
        self.dis_loss = DiscriminatorAdversarialLoss(loss_type="mse")
        self.fm_loss = FeatureMatchLoss()
        self.dur_loss = DurationPredictorLoss(offset=DURATION_OFFSET)
        self.optim_g = torch.optim.AdamW(self.model.parameters(), lr=args.lr, betas=tuple(args.betas),
                                         weight_decay=args.weight_decay)
        # a WORLD vocoder (no waveform in the loop) has no discriminator: the GAN parts are left out
        self.optim_d = (torch.optim.AdamW(self.discriminator.parameters(), lr=args.discriminator_lr or args.lr,
                                          betas=tuple(args.betas), weight_decay=args.weight_decay)
                        if self.discriminator is not None else None)
        decay = lambda step: args.lr_decay ** step  # noqa: E731 - per update, as HiFi-GAN's per-epoch decay
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.optim_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.optim_d, decay) if self.optim_d else None
        self.state = GanState()
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        except ImportError:  # pragma: no cover - tensorboard is in tools/requirements.txt
            logger.warning("tensorboard is not installed: no event files")

    # ---------------------------------------------------------------------------------------------- state
    def checkpoint(self) -> dict[str, Any]:
        state = lambda module: module.state_dict() if module is not None else None  # noqa: E731
        return {
            "model": self.model.state_dict(), "discriminator": state(self.discriminator),
            "optim_g": self.optim_g.state_dict(), "optim_d": state(self.optim_d),
            "sched_g": self.sched_g.state_dict(), "sched_d": state(self.sched_d),
            "state": dataclasses.asdict(self.state),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None},
        }

    def save_checkpoint(self) -> None:
        atomic_save(self.checkpoint(), self.output_dir / CHECKPOINT)

    def maybe_resume(self) -> None:
        path = self.output_dir / CHECKPOINT
        if not (self.args.resume and path.exists()):
            return
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ckpt["model"])
        self.optim_g.load_state_dict(ckpt["optim_g"])
        self.sched_g.load_state_dict(ckpt["sched_g"])
        for name in ("discriminator", "optim_d", "sched_d"):
            if getattr(self, name) is not None:
                getattr(self, name).load_state_dict(ckpt[name])
        self.state = GanState(**ckpt["state"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if ckpt["rng"]["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        logger.info("resumed from %s at update %d", path, self.state.step)

    # ------------------------------------------------------------------------------------------- updates
    def duration_loss(self, units: torch.Tensor, speakers: torch.Tensor, lengths: Optional[torch.Tensor] = None
                      ) -> torch.Tensor:
        values, durations, known = (t.to(self.device) for t in dedup_batch(units, self.model.n_units, lengths))
        log_d = self.model.log_durations(values, speakers)  # (B, N)
        if not known.any():
            return log_d.sum() * 0.0
        return self.dur_loss(log_d[known], durations[known])

    def world_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        units, feats, speakers = (batch[k].to(self.device) for k in ("units", "feats", "speakers"))
        lengths = batch["lengths"]  # (B,) real frames: short utterances are padded
        masked = lengths.to(self.device) if int(lengths.min()) < units.shape[1] else None  # None: no padding
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            predicted = self.model(units, speakers, masked)  # (B, T * ratio, dim)
            dur = self.duration_loss(units, speakers, lengths).float()
        losses = self.model.feature_loss(predicted.float(), feats, masked)
        loss = sum(losses.values()) + self.args.lambda_dur * dur
        self.optim_g.zero_grad(set_to_none=True)
        loss.backward()
        if self.args.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.args.grad_clip)
        self.optim_g.step()
        self.sched_g.step()
        self.state.step += 1
        return {k: float(v.detach()) for k, v in dict(losses, dur=dur, feat=sum(losses.values())).items()}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        if self.discriminator is None:
            return self.world_step(batch)
        args = self.args
        units, audio, speakers = (batch[k].to(self.device) for k in ("units", "audio", "speakers"))
        with_gan = self.state.step >= args.discriminator_start_steps
        self.model.train()
        self.discriminator.train()
        audio_hat = self.model(units, speakers)  # (B, 1, F * hop)
        mel = self.mel_loss(audio_hat, audio)
        dur = self.duration_loss(units, speakers)
        loss_g = args.lambda_mel * mel + args.lambda_dur * dur
        stats = {"mel": mel.detach(), "dur": dur.detach()}
        if with_gan:
            outs_hat = self.discriminator(audio_hat)
            with torch.no_grad():
                outs = self.discriminator(audio)
            adv = self.adv_loss(outs_hat)
            fm = self.fm_loss(outs_hat, outs)
            loss_g = loss_g + args.lambda_adv * adv + args.lambda_fm * fm
            stats.update(adv=adv.detach(), fm=fm.detach())
        self.optim_g.zero_grad(set_to_none=True)
        loss_g.backward()
        if args.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), args.grad_clip)
        self.optim_g.step()
        self.sched_g.step()
        if with_gan:
            real, fake = self.dis_loss(self.discriminator(audio_hat.detach()), self.discriminator(audio))
            self.optim_d.zero_grad(set_to_none=True)
            (real + fake).backward()
            if args.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.discriminator.parameters(), args.grad_clip)
            self.optim_d.step()
            stats.update(real=real.detach(), fake=fake.detach())
            self.sched_d.step()
        self.state.step += 1
        stats["loss_g"] = loss_g.detach()
        return {k: float(v) for k, v in stats.items()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mel L1 of whole validation utterances resynthesised from their units, and the duration loss."""
        self.model.eval()
        totals = StatSums()
        for batch in self.valid:
            units, speakers = batch["units"].to(self.device), batch["speakers"].to(self.device)
            stats = {"dur": self.duration_loss(units, speakers)}
            if self.discriminator is None:
                losses = self.model.feature_loss(self.model(units, speakers), batch["feats"].to(self.device))
                stats.update(losses, feat=sum(losses.values()))
            else:
                stats["mel"] = self.mel_loss(self.model(units, speakers), batch["audio"].to(self.device))
            totals.add(stats, units.shape[1])
        return totals.means()

    # ------------------------------------------------------------------------------------------------ run
    def run(self) -> GanState:
        args = self.args
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.maybe_resume()
        window = StatSums()
        begin, steps_in_window = time.time(), 0
        while self.state.step < args.max_steps:
            stats = self.train_step(self.train.batch(self.state.step))
            window.add(stats, 1)
            steps_in_window += 1
            step = self.state.step
            if step % args.log_interval == 0 or step == args.max_steps:
                means = window.means()
                seconds = (time.time() - begin) / max(steps_in_window, 1)
                logger.info("step %d/%d: %s lr=%.3g %.2f s/step", step, args.max_steps, fmt(means),
                            self.sched_g.get_last_lr()[0], seconds)
                self.state.history.append({"step": step, "train": means, "seconds_per_step": seconds})
                if self.writer:
                    for k, v in means.items():
                        self.writer.add_scalar(f"train/{k}", v, step)
                    self.writer.add_scalar("train/lr", self.sched_g.get_last_lr()[0], step)
                    self.writer.add_scalar("train/seconds_per_step", seconds, step)
                window, begin, steps_in_window = StatSums(), time.time(), 0
            if (args.valid_interval and step % args.valid_interval == 0) or step == args.max_steps:
                self.log_validation(step)
                plot_losses(self.state, self.output_dir / "images" / "loss.png")
            if (args.save_every_steps and step % args.save_every_steps == 0) or step == args.max_steps:
                self.save_checkpoint()
        if self.writer:
            self.writer.close()
        return self.state

    def log_validation(self, step: int) -> None:
        valid = self.validate()
        logger.info("step %d: valid %s", step, fmt(valid))
        self.state.valid = [v for v in self.state.valid if v["step"] != step] + [{"step": step, "valid": valid}]
        if self.writer:
            for k, v in valid.items():
                self.writer.add_scalar(f"valid/{k}", v, step)
        atomic_write_json(self.output_dir / "history.json", {"train": self.state.history, "valid": self.state.valid})

    def save_model(self) -> Path:
        """What synthesis needs: unit/speaker embeddings, generator (or WORLD network), duration predictor."""
        path = self.output_dir / MODEL_FILE
        atomic_save({k: v.cpu() for k, v in self.model.state_dict().items()}, path)
        return path


def plot_losses(state: GanState, path: Path) -> None:
    """One panel per statistic: the training curve (per log interval) and the validation points."""
    if not state.history and not state.valid:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k for h in state.history for k in h["train"]} | {k for v in state.valid for k in v["valid"]})
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        train = [(h["step"], h["train"][name]) for h in state.history if name in h["train"]]
        valid = [(v["step"], v["valid"][name]) for v in state.valid if name in v["valid"]]
        if train:
            ax.plot(*zip(*train), label="train")
        if valid:
            ax.plot(*zip(*valid), marker="o", label="valid")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def valid_batches(utts, speaker_ids: dict[str, int], hop_length: int, count: int,
                  target_speaker: str) -> list[dict[str, torch.Tensor]]:
    """The first `count` validation utterances, the target voice's first when it has any (a voice the vocoder
    was not trained on is resynthesised in the target voice)."""
    from zipper.vocoder.data import whole_utterance

    ordered = sorted(utts, key=lambda u: (u.speaker != target_speaker, u.utt))
    return [whole_utterance(u, speaker_ids, hop_length, speaker_ids.get(target_speaker, 0)) for u in ordered[:count]]
