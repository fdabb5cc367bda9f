"""egs/TEMPLATE/zipper1/setup.sh makes a recipe dir wired to the shared stage script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "egs" / "TEMPLATE" / "zipper1" / "setup.sh"


def test_setup_makes_a_wired_recipe_and_refuses_to_overwrite(tmp_path):
    target = tmp_path / "egs" / "mycorpus" / "zipper1"
    done = subprocess.run(["bash", str(SETUP), str(target)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.path.realpath(target / "zipper.sh") == str(REPO / "egs" / "TEMPLATE" / "zipper1" / "zipper.sh")
    assert os.path.realpath(target / "utils") == str(REPO / "utils")
    assert not os.path.isabs(os.readlink(target / "zipper.sh"))  # relative links survive moving the repo
    help_text = subprocess.run(["./run.sh", "--help"], cwd=target, capture_output=True, text=True)
    assert help_text.returncode == 0 and "--feats_config <conf/feats_mfcc.yaml>" in help_text.stdout
    stage1 = subprocess.run(["./run.sh", "--stop_stage", "1"], cwd=target, capture_output=True, text=True)
    assert stage1.returncode != 0 and "write the data preparation of this corpus here" in stage1.stderr
    again = subprocess.run(["bash", str(SETUP), str(target)], capture_output=True, text=True)
    assert again.returncode == 1 and "already exists" in again.stderr
