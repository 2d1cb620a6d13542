"""``scripts/train_gpu.sh``: from a pack to the weights that replace pixal3d-small's structure flow (CPU smoke run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from safetensors.torch import load_file

from pixal3d.data.pack import pack_dataset
from tests.training.conftest import REPO

MODEL_CKPTS = REPO / "models" / "pixal3d-small" / "ckpts"


def test_the_gpu_script_returns_a_drop_in_structure_flow(tiny_data, tmp_path):
    pack = pack_dataset(tiny_data, tmp_path / "pack", grid=16).path
    env = {**os.environ, "PYTHON": sys.executable, "RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "train_gpu.sh"), str(pack), str(tmp_path / "out"), "5",
                           "--max_steps", "1", "--num_gpus", "0"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "sparse_structure_flow_model.json", "sparse_structure_flow_model.safetensors", "log.csv", "loss.png",
        "config.json", "step.txt"])
    assert (out / "step.txt").read_text().strip() == "step_0000001"
    shipped = load_file(MODEL_CKPTS / "sparse_structure_flow_model.safetensors")
    trained = load_file(out / "sparse_structure_flow_model.safetensors")
    assert {k: v.shape for k, v in trained.items()} == {k: v.shape for k, v in shipped.items()}
    assert json.loads((out / "sparse_structure_flow_model.json").read_text()) == \
        json.loads((MODEL_CKPTS / "sparse_structure_flow_model.json").read_text())
    assert sum(p.stat().st_size for p in out.iterdir()) < 16 * 2**20


def test_the_gpu_script_needs_a_pack_and_an_output(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "scripts" / "train_gpu.sh"), str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("usage:")
