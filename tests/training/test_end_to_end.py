"""From meshes to a model folder to a GLB: synth → build (R 64, 2 views, 128² images) → the shipped tiny configs
through ``train.py`` exactly as docs/training.md runs them (chained by their own ``base_pipeline``s, 2 steps each via
``--max_steps``) → ``inference.py`` on a training view."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pixal3d.cli.train import main as train_main
from pixal3d.models.pipeline_folder import PIXAL3D_STAGES, open_pipeline_folder
from pixal3d.training.chain import ChainRun, check_chain
from pixal3d.training.config import load_config
from tests.clients import assert_valid_gltf
from tests.training.conftest import CONFIGS, REPO

#: (config, run folder) in training order, as docs/training.md runs them
CHAIN = [("ss_vae_tiny", "ss_vae"), ("shape_vae_tiny", "shape_vae"), ("tex_vae_tiny", "tex_vae"),
         ("ss_flow_tiny", "ss_flow"), ("shape_flow_tiny", "shape_flow"), ("tex_flow_tiny", "tex_flow")]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_shipped_tiny_chain_is_consistent(tmp_path):
    runs = [ChainRun(out, load_config(CONFIGS / f"{config}.json"), Path("runs") / out) for config, out in CHAIN]
    holds = check_chain(runs, tmp_path)
    assert set(PIXAL3D_STAGES) <= set(holds["tex_flow"])


def test_meshes_to_model_folder_to_glb(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("-m", "pixal3d", "data", "synth", "-n", "2", "-o", "assets", "--workers", "1", "--no-sheet", "-q", cwd=tmp_path)
    run("-m", "pixal3d", "data", "build", "--assets", "assets", "-o", "data", "--resolution", "64", "--views", "2",
        "--image-size", "128", "--workers", "1", "-q", cwd=tmp_path)
    for config, out in CHAIN:
        argv = ["--config", str(CONFIGS / f"{config}.json"), "--output_dir", f"runs/{out}", "--data_dir", "data",
                "--num_gpus", "0", "--no_progress", "--max_steps", "2"]
        assert train_main(argv) == 0, config

    model = tmp_path / "runs" / "tex_flow" / "ckpts" / "step_0000002"
    folder = open_pipeline_folder(model)
    assert set(PIXAL3D_STAGES) <= set(folder.stages)
    # 64³ data, 5-level SC-VAEs: latent grid 4, one shape network for both stages, cascade of that resolution
    assert folder.config.cascade.to_args() == {"structure_grid": 4, "upsample_times": 4, "pipeline_types": {"64_cascade": 64},
                                      "min_resolution": 64, "resolution_step": 16}
    assert folder.config.image_encoder["name"] == "small_conv"
    assert {stage: c["grid_resolution"] for stage, c in folder.config.image_cond_configs.items()} == {
        "ss": 4, "shape_512": 4, "shape_1024": 4, "tex_1024": 4}

    view = next((tmp_path / "data").glob("*/view_00.png"))
    proc = run(str(REPO / "inference.py"), "--image", str(view), "--output", "out.glb", "--model", str(model),
               "--min_component_area", "0", cwd=tmp_path)
    assert "resolution=64" in proc.stderr, proc.stderr[-2000:]
    assert_valid_gltf(tmp_path / "out.glb")
    assert json.loads((tmp_path / "runs" / "ss_flow" / "config.json").read_text())["trainer"]["name"] == \
        "SparseStructureFlowTrainer"
