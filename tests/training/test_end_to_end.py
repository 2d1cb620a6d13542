"""From meshes to a model folder to a GLB: synth → build (R 64, 2 views, 128² images) → every stage through
``train.py`` (a few steps each, chained by ``base_pipeline``) → ``inference.py`` on a training view."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pixal3d.models.pipeline_folder import PIXAL3D_STAGES, open_pipeline_folder
from pixal3d.training.run import main as train_main
from tests.clients import assert_valid_gltf
from tests.training.conftest import REPO, load_tiny_config, write_config

#: (config, run folder, base_pipeline run) in training order; the README's Training section lists the same chain
CHAIN = [
    ("ss_vae_tiny", "ss_vae", None),
    ("shape_vae_tiny", "shape_vae", "ss_vae"),
    ("tex_vae_tiny", "tex_vae", "shape_vae"),
    ("ss_flow_tiny", "ss_flow", "tex_vae"),
    ("shape_flow_tiny", "shape_flow", "ss_flow"),
    ("tex_flow_tiny", "tex_flow", "shape_flow"),
]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_meshes_to_model_folder_to_glb(tmp_path):
    run("-m", "pixal3d", "data", "synth", "-n", "2", "-o", "assets", "--workers", "1", "--no-sheet", "-q", cwd=tmp_path)
    run("-m", "pixal3d", "data", "build", "--assets", "assets", "-o", "data", "--resolution", "64", "--views", "2",
        "--image-size", "128", "--workers", "1", "-q", cwd=tmp_path)
    for config, out, base in CHAIN:
        cfg = load_tiny_config(config, max_steps=2, save_every=2, log_every=1, batch_size=2)
        if base is not None:
            cfg["trainer"]["args"]["base_pipeline"] = str(tmp_path / "runs" / base)
        argv = ["--config", str(write_config(tmp_path / f"{out}.json", cfg)), "--output_dir", str(tmp_path / "runs" / out),
                "--data_dir", str(tmp_path / "data"), "--num_gpus", "0", "--no_progress"]
        assert train_main(argv) == 0, config

    model = tmp_path / "runs" / "tex_flow" / "ckpts" / "step_0000002"
    folder = open_pipeline_folder(model)
    assert set(PIXAL3D_STAGES) <= set(folder.stages)
    # 64³ data, 5-level SC-VAEs: latent grid 4, one shape network for both stages, cascade of that resolution
    assert folder.args["cascade"] == {"structure_grid": 4, "upsample_times": 4, "pipeline_types": {"64_cascade": 64},
                                      "min_resolution": 64, "resolution_step": 16}
    assert folder.image_encoder["name"] == "small_conv"
    assert {stage: c["grid_resolution"] for stage, c in folder.args["image_cond_configs"].items()} == {
        "ss": 4, "shape_512": 4, "shape_1024": 4, "tex_1024": 4}

    view = next((tmp_path / "data").glob("*/view_00.png"))
    proc = run(str(REPO / "inference.py"), "--image", str(view), "--output", "out.glb", "--model", str(model),
               "--min_component_area", "0", cwd=tmp_path)
    assert "resolution=64" in proc.stderr, proc.stderr[-2000:]
    assert_valid_gltf(tmp_path / "out.glb")
    assert json.loads((tmp_path / "runs" / "ss_flow" / "config.json").read_text())["trainer"]["name"] == \
        "SparseStructureFlowTrainer"
