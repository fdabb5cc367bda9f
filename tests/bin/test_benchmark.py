"""zipper.bin.benchmark at tiny sizes prints every table with its rows and columns (speeds are not checked)."""

from __future__ import annotations

import json
from pathlib import Path

from zipper.bin import benchmark
from zipper.models.tower import TowerConfig

REPO = Path(__file__).resolve().parents[2]
TINY = ["--sizes", "debug", "--device", "cpu", "--vocab_size", "64", "--speech_vocab", "24", "--batch", "2",
        "--seq_len", "16", "--steps", "1", "--warmup", "1", "--prompt_len", "6", "--new_tokens", "4",
        "--decode_batches", "1,3", "--asr_seconds", "0.2", "--asr_tokens", "3", "--peak_tflops", "1"]


def section(out: str, title: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 1:end]


def test_benchmark_prints_training_decoding_rtf_and_target_tables(tmp_path, capsys):
    results = benchmark.main(TINY + ["--compile", "false", "--output_json", str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    assert "MFU peak 1.00 TFLOP/s (given)" in out

    train = section(out, "Training:")
    for column in ("tokens/s", "MFU", "peak GiB", "x tower", "x HF"):
        assert column in train[0]
    assert [line.split()[1] for line in train[1:]] == ["tower", "zipper", "hf-llama"]
    assert all(line.split()[6].endswith("%") for line in train[1:])  # size model params batch compile tok/s MFU
    assert "cross" in train[2]  # the Zipper row names its layout

    decode = section(out, "Decoding:")
    for column in ("tokens/s", "x HF gen", "x uncached"):
        assert column in decode[0]
    methods = ["ours cached (dynamic)", "ours cached (eager)", "ours uncached", "HF generate (cache)",
               "HF generate (no cache)"]
    for batch in (1, 3):
        rows = [line for line in decode[1:] if int(line.split()[1]) == batch]
        assert [m for m in methods if any(m in r for r in rows)] == methods

    asr = section(out, "ASR real-time factor:")
    assert "RTF" in asr[0]
    assert sum("zipper cached (dynamic)" in line for line in asr[1:]) == 2
    assert sum("zipper uncached" in line for line in asr[1:]) == 2

    targets = section(out, "Targets")
    assert any("tower training MFU" in t for t in targets) and any("HF generate" in t for t in targets)
    assert all("not judged on a CPU" in t or "no target" in t for t in targets)

    assert {r["model"] for r in results["train"]} == {"tower", "zipper", "hf-llama"}
    assert json.loads((tmp_path / "b.json").read_text())["decode"][0]["tokens_per_s"] > 0


def test_benchmark_help_and_bad_mode(capsys):
    import pytest

    with pytest.raises(SystemExit):
        benchmark.main(["--help"])
    assert "--peak_tflops" in capsys.readouterr().out
    with pytest.raises(ValueError, match="needs a CUDA device"):
        benchmark.main(TINY + ["--parts", "decode", "--decode_steps", "cuda_graph"])


def test_zipper_layout_matches_one_tower_in_size():
    import torch

    for d, layers in ((768, 12), (2048, 16)):  # the m and l presets
        config = TowerConfig(vocab_size=32000, d_model=d, n_layers=layers, n_heads=d // 64)
        layout = benchmark.zipper_layout(config, 1026)
        assert abs(layout.params / layout.target - 1) <= 0.05 and layout.n_cross >= 2
        with torch.device("meta"):  # the count the layout was chosen by is the built model's
            assert benchmark.n_params(benchmark.build_zipper(config, layout, 1026)) == layout.params


def test_recipe_wrappers_reach_the_benchmark():
    import subprocess

    for corpus in ("synth_en", "librispeech", "libritts"):
        script = REPO / "egs" / corpus / "zipper1" / "local" / "benchmark.sh"
        assert script.exists(), script
    result = subprocess.run([str(REPO / "egs" / "synth_en" / "zipper1" / "local" / "benchmark.sh"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--decode_steps" in result.stdout
