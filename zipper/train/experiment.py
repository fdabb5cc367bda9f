"""An experiment dir's bookkeeping shared by every training CLI: config.yaml, the replay run.sh, and the refusal
to continue an experiment with options that would change what it trains."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import yaml

from zipper.utils.atomic import atomic_write_text
from zipper.utils.provenance import ProvenanceError

# Options that may change between a run and its resumption without changing what is trained.
RESUMABLE_CHANGES = {"max_epoch", "log_interval", "save_every_steps", "ngpu", "num_threads", "patience", "resume",
                     "log_level", "keep_nbest_models", "max_valid_batches", "print_config", "config", "compile",
                     "max_steps", "valid_interval"}


def resolved_config(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("config", "print_config")}


def check_same_experiment(output_dir: Path, config: dict) -> None:
    """Refuse to continue an experiment with options that change what is trained."""
    path = output_dir / "config.yaml"
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        old = yaml.safe_load(f) or {}
    changed = sorted(k for k in set(old) | set(config) if k not in RESUMABLE_CHANGES and old.get(k) != config.get(k))
    if changed:
        lines = "\n".join(f"  {k}: {old.get(k)!r} -> {config.get(k)!r}" for k in changed)
        raise ProvenanceError(f"{output_dir} holds an experiment made with other options:\n{lines}\n"
                              "Use another --output_dir (or remove this one) to train with them.")


def start_experiment(args, module: str, rank: int = 0) -> dict:
    """Check (when resuming) and write config.yaml and run.sh; returns the resolved config."""
    output_dir = Path(args.output_dir)
    config = resolved_config(args)
    if args.resume:
        check_same_experiment(output_dir, config)
    if rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        script = (f"#!/usr/bin/env bash\n# Re-run (or resume) this experiment: bash {output_dir}/run.sh [options]\n"
                  f"cd {shlex.quote(os.getcwd())}\n. ./path.sh\n"
                  f"python -m {module} --config {shlex.quote(str(output_dir / 'config.yaml'))} \"$@\"\n")
        atomic_write_text(output_dir / "run.sh", script)
        os.chmod(output_dir / "run.sh", 0o755)
    return config


def begin_run(args, module: str) -> tuple[int, int]:
    """What every training CLI does first: join torch.distributed when launched that way, seed torch, write
    config.yaml and run.sh (rank 0, refusing changed options when resuming) and log the run header.
    Returns (rank, world size)."""
    import torch

    from zipper.train.trainer import setup_distributed
    from zipper.utils.log import log_run_header

    setup_distributed(args)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    torch.manual_seed(args.seed)
    config = start_experiment(args, module, rank)
    log_run_header(module, config)
    return rank, world
