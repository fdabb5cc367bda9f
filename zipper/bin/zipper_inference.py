"""Stage 10: decode a test set with a trained Zipper or vocabulary-expansion model (ASR, TTS, or chained).

The model is rebuilt from its experiment's config.yaml (no training flags to repeat).  ASR reads the set's
units and writes a Kaldi `text` of hypotheses; TTS reads the set's transcripts and writes `units.scp` (int32,
0-based units, with provenance of the speech token list) and, with several samples, `nbest/units.<k>.scp`.
Search settings per output modality come from --decode_config (YAML), e.g.
    text:   {method: beam, beam_size: 4, max_len: 200}
    speech: {method: sample, temperature: 0.8, top_k: 50, top_p: 1.0, nbest: 1, max_len: 800}
Run as `nj` jobs (`--nj N --job J`), then once with `--merge true`; decode.json records the settings and the
speed (tokens/s, real-time factor when the set has utt2dur).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml

from zipper.data.kaldi_dir import read_kv, write_kv
from zipper.inference.api import decode_rows, load_fused, search_configs
from zipper.inference.graphs import DECODE_STEPS
from zipper.tasks.fusion_task import load_paired
from zipper.tokens.token_list import TokenList
from zipper.tokens.units import UNITS_SCP, UnitArkWriter
from zipper.utils.atomic import atomic_path, atomic_write_json, mark_done
from zipper.utils.cli import make_parser, parse_and_setup, positive_int, run_main, str2bool, yaml_value
from zipper.utils.provenance import ProvenanceError, write_provenance
from zipper.utils.sharding import add_sharding_options, finished_job_dirs, mark_job_finished, pending_job

logger = logging.getLogger(__name__)


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--exp_dir", required=True, help="zipper_train experiment dir")
    parser.add_argument("--checkpoint", default="valid.loss.ave.pth", help="model file in exp_dir")
    parser.add_argument("--task", default="asr", choices=["asr", "tts"], help="asr: speech -> text; tts: the reverse")
    parser.add_argument("--units_dir", required=True, help="units of the set (ASR input, TTS reference)")
    parser.add_argument("--data_dir", required=True, help="data dir of the set (TTS input, ASR reference)")
    parser.add_argument("--output_dir", required=True, help="decode dir of the set")
    parser.add_argument("--decode_config", type=yaml_value, default={},
                        help="YAML dict or file: search settings per output modality (text, speech)")
    parser.add_argument("--batch_size", type=positive_int, default=16, help="utterances decoded together")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--num_threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--chain", type=str2bool, default=False,
                        help="Zipper ASR: after the text, also decode speech ([text, speech] outputs)")
    parser.add_argument("--step_mode", default="dynamic",
                        choices=list(DECODE_STEPS),
                        help="how a cached Zipper decoding step runs: dynamic (growing cache) or on the static cache "
                             "(eager, compile, cuda_graph: GPU; docs/performance.md)")
    add_sharding_options(parser)
    return parser


def run_job(args, out_dir: Path) -> None:
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    model, tokenizer, train_args = load_fused(args.exp_dir, args.checkpoint, args.device)
    configs = search_configs(args.decode_config)
    speech_tokens = TokenList(train_args.speech_token_list)
    data = load_paired(args.units_dir, args.data_dir, speech_tokens, tokenizer, train_args.dedup,
                       train_args.max_speech_len, train_args.max_text_len)
    pending = pending_job(out_dir, args.nj, args.job, data.utts, exp=str(args.exp_dir), ckpt=args.checkpoint,
                          task=args.task, search={k: dataclasses.asdict(v) for k, v in configs.items()},
                          chain=args.chain)
    if pending is None:
        return
    mine, directory, key = pending
    index = {u: i for i, u in enumerate(data.utts)}
    begin = time.time()
    hyps = decode_rows(model, tokenizer, train_args, configs, [data.speech[index[u]] for u in mine],
                       [data.text[index[u]] for u in mine], args.device, args.task, args.batch_size, args.chain,
                       args.step_mode, progress=lambda done, n: logger.info("decoded %d / %d utterances", done, n))
    results: dict[str, dict[str, list[int]]] = {}
    generated = 0
    for modality, per_utt in hyps.items():
        for utt, nbest in zip(mine, per_utt):
            for k, row in enumerate(nbest):
                results.setdefault(modality, {})[utt if k == 0 else f"{utt}#{k + 1}"] = row
                generated += len(row)
    seconds = time.time() - begin
    directory.mkdir(parents=True, exist_ok=True)
    if "text" in results:
        write_kv(directory / "text", {u: tokenizer.decode(ids) for u, ids in results["text"].items()})
    if "speech" in results:
        ark = (directory / "units.ark").resolve()
        with atomic_path(directory / UNITS_SCP) as tmp, open(ark, "wb") as f, open(tmp, "w", encoding="utf-8") as scp:
            writer = UnitArkWriter(f, str(ark), scp)
            for utt, units in results["speech"].items():
                writer[utt] = np.asarray(units, dtype=np.int32)
    atomic_write_json(directory / "timing.json", {"seconds": seconds, "tokens": generated, "utts": len(mine)})
    mark_job_finished(directory, key)
    logger.info("job %d/%d: %d utterances, %d tokens in %.1f s (%.1f tokens/s)", args.job, args.nj, len(mine),
                generated, seconds, generated / max(seconds, 1e-9))


def merge(args, out_dir: Path) -> None:
    dirs = finished_job_dirs(out_dir, args.nj)
    with open(Path(args.exp_dir) / "config.yaml", encoding="utf-8") as f:
        train_args = yaml.safe_load(f)
    summary: dict[str, Any] = {"exp_dir": args.exp_dir, "checkpoint": args.checkpoint, "task": args.task,
                               "search": {k: dataclasses.asdict(v) for k, v in search_configs(args.decode_config).items()},
                               "units_dir": args.units_dir, "data_dir": args.data_dir}
    if all((d / "text").exists() for d in dirs):
        hyps: dict[str, str] = {}
        for d in dirs:
            hyps.update(read_kv(d / "text", allow_empty_value=True))
        write_kv(out_dir / "text", hyps)
        summary["utts"] = len(hyps)
    if all((d / UNITS_SCP).exists() for d in dirs):
        scp: dict[str, str] = {}
        for d in dirs:
            scp.update(read_kv(d / UNITS_SCP))
        first = {u: v for u, v in scp.items() if "#" not in u}
        write_kv(out_dir / UNITS_SCP, first)
        samples = sorted({int(u.split("#")[1]) for u in scp if "#" in u})
        for k in [1] + samples:
            name = lambda u: u if k == 1 else f"{u}#{k}"  # noqa: E731
            write_kv(out_dir / "nbest" / f"units.{k}.scp", {u: scp[name(u)] for u in first if name(u) in scp})
        speech_provenance = TokenList(train_args["speech_token_list"]).provenance
        write_provenance(out_dir, {k: v for k, v in speech_provenance.items() if k != "kind"}, overwrite=True)
        summary["utts"] = len(first)
    timing = [yaml.safe_load((d / "timing.json").read_text()) for d in dirs]
    seconds = max(t["seconds"] for t in timing)
    tokens = sum(t["tokens"] for t in timing)
    summary.update(seconds=seconds, tokens_per_second=tokens / max(seconds, 1e-9))
    utt2dur = Path(args.data_dir) / "utt2dur"
    if utt2dur.exists() and args.task == "asr":
        audio = sum(float(v) for v in read_kv(utt2dur).values())
        summary["rtf"] = sum(t["seconds"] for t in timing) / max(audio, 1e-9)
    atomic_write_json(out_dir / "decode.json", summary)
    mark_done(out_dir, info={"utts": summary.get("utts", 0)})
    logger.info("%s: %s utterances, %.1f tokens/s%s", out_dir, summary.get("utts"), summary["tokens_per_second"],
                f", RTF {summary['rtf']:.3f}" if "rtf" in summary else "")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_and_setup(get_parser(), argv)
    out_dir = Path(args.output_dir)
    if args.merge:
        merge(args, out_dir)
    else:
        run_job(args, out_dir)


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError, KeyError))
