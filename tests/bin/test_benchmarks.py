"""The benchmark CLIs run on tiny sizes and print their tables (figures are not checked: they are the output)."""

from __future__ import annotations

from pathlib import Path

from zipper.bin import benchmark_towers, benchmark_units

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_towers_prints_throughput_and_mfu(capsys):
    benchmark_towers.main(["--preset", str(REPO / "conf" / "tower_debug.yaml"), "--vocab_size", "64", "--batch", "2",
                           "--seq_len", "16", "--steps", "1", "--warmup", "1", "--dtypes", "float32"])
    out = capsys.readouterr().out
    assert "tokens/s" in out and "MFU" in out
    row = out.strip().splitlines()[-1].split()
    assert row[0] == "float32" and float(row[3]) > 0 and row[5].endswith("%")


def test_benchmark_units_on_generated_audio(tmp_path, capsys):
    benchmark_units.main(["--hours", "0.01", "--nj", "1", "--n_clusters", "4", "--kmeans_portion", "1.0",
                          "--work_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "3 + 5 (per-hour work)" in out
    rows = [line for line in out.splitlines() if line.startswith(("3 features", "5 units"))]
    # wall-clock h/min is always a number; compute h/min may read 'n/a' when a tiny job's recorded time is 0.0 s
    assert len(rows) == 2 and all(float(r.split()[3]) > 0 for r in rows)
