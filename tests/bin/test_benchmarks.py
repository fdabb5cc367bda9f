"""The benchmark CLIs run on tiny sizes and print their tables (figures are not checked: they are the output)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zipper.bin import benchmark_towers, benchmark_units, benchmark_vocoder

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_towers_prints_throughput_and_mfu(capsys):
    benchmark_towers.main(["--preset", str(REPO / "conf" / "tower_debug.yaml"), "--vocab_size", "64", "--batch", "2",
                           "--seq_len", "16", "--steps", "1", "--warmup", "1", "--dtypes", "float32"])
    out = capsys.readouterr().out
    assert "tokens/s" in out and "MFU" in out
    row = out.strip().splitlines()[-1].split()
    assert row[0] == "float32" and float(row[3]) > 0 and row[5].endswith("%")


def test_benchmark_units_on_generated_audio(tmp_path, capsys):
    tiny = ["--hours", "0.01", "--nj", "1", "--n_clusters", "4", "--kmeans_portion", "1.0"]
    benchmark_units.main([*tiny, "--work_dir", str(tmp_path / "plain")])
    out = capsys.readouterr().out
    assert "3 + 5 (per-hour work)" in out and "unit encoder" not in out
    rows = [line for line in out.splitlines() if line.startswith(("3 features", "5 units"))]
    # wall-clock h/min is always a number; compute h/min may read 'n/a' when a tiny job's recorded time is 0.0 s
    assert len(rows) == 2 and all(float(r.split()[3]) > 0 for r in rows)

    # the default recipe's stage 3 also runs a unit encoder over the features: an untrained one times the same
    import kaldiio

    from zipper.tokens.unit_encoder import UnitEncoder, UnitEncoderConfig
    from zipper.utils.provenance import read_provenance

    feats = tmp_path / "plain" / "feats"
    dim = next(iter(kaldiio.load_scp(str(feats / "feats.scp")).values())).shape[1]
    config = UnitEncoderConfig(stride=2, remove_position=0, layer=1, d_model=16, n_heads=2, d_ff=32, n_layers=2)
    UnitEncoder(config, dim, 3).save(tmp_path / "encoder", ["<blank>", "a", "b"],
                                     {"feature_hash": read_provenance(feats)["feature_hash"]})
    benchmark_units.main([*tiny, "--work_dir", str(tmp_path / "encoded"), "--unit_encoder_dir",
                          str(tmp_path / "encoder")])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("3 unit encoder states"))
    assert float(row.split()[5]) > 0  # its wall-clock h/min
    assert (tmp_path / "encoded" / "encoded" / ".done").exists()


def test_benchmark_vocoder_times_a_world_preset(tmp_path, capsys):
    preset = tmp_path / "vocoder_tiny.yaml"
    preset.write_text("vocoder: world\nsegment_frames: 8\nbatch_size: 2\nembed_dim: 8\nspk_embed_dim: 4\n"
                      "world_conf: {n_sp: 8}\nencoder_conf: {channels: 16, layers: 1, attention_layers: 1, "
                      "attention_heads: 2}\nduration_conf: {n_layers: 1, n_chans: 8}\nmax_steps: 600\n"
                      "use_amp: auto\n")  # as conf/vocoder_s.yaml: each row's dtype replaces it
    rows = benchmark_vocoder.main(["--preset", str(preset), "--n_units", "12", "--steps", "1", "--warmup", "1",
                                   "--dtypes", "float32,bfloat16"])
    out = capsys.readouterr().out
    assert [r["dtype"] for r in rows] == ["float32", "bfloat16"] and "--use_amp auto here" in out
    assert all(r["step_s"] > 0 and abs(r["train_min"] - 600 * r["step_s"] / 60) < 1e-9 for r in rows)
    (tmp_path / "hifigan.yaml").write_text("vocoder: hifigan\n")
    with pytest.raises(ValueError, match="hifigan.yaml: times WORLD vocoders only"):
        benchmark_vocoder.main(["--preset", str(tmp_path / "hifigan.yaml")])
