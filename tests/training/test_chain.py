"""Chains of training runs are checked whole before the first step; a run checks its own base at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pixal3d.errors import UserError
from pixal3d.training.chain import ChainRun, check_chain
from pixal3d.training.config import load_config
from pixal3d.training.recipe import load_recipe
from pixal3d.training.run import main as train_main
from tests.training.conftest import CONFIGS, REPO, load_tiny_config, write_config


def _runs(bases: dict[str, str | None]) -> list[ChainRun]:
    runs = []
    for name, base in bases.items():
        cfg = load_config(CONFIGS / f"{name}_tiny.json")
        cfg.trainer.setdefault("args", {})
        cfg.trainer["args"].pop("base_pipeline", None)
        if base:
            cfg.trainer["args"]["base_pipeline"] = f"runs/{base}"
        runs.append(ChainRun(name, cfg, Path("runs") / name))
    return runs


def test_the_walkthrough_bug_is_caught_before_training(tmp_path):
    # the chain the README once listed: the SC-VAEs named no base, so the flows' bases never held them
    broken = _runs({"ss_vae": None, "shape_vae": None, "tex_vae": None, "ss_flow": "ss_vae",
                    "shape_flow": "ss_flow", "tex_flow": "shape_flow"})
    with pytest.raises(UserError, match=r"run shape_flow: its base \(runs/ss_flow\) will lack shape_slat_encoder"):
        check_chain(broken, tmp_path)


def test_base_must_be_earlier_or_existing(tmp_path):
    with pytest.raises(UserError, match="comes later in the chain"):
        check_chain(_runs({"ss_flow": "ss_vae", "ss_vae": None}), tmp_path)
    with pytest.raises(UserError, match="neither an earlier run of the chain nor an existing"):
        check_chain(_runs({"ss_flow": "elsewhere"}), tmp_path)


def test_default_recipe_chain_is_consistent():
    recipe = load_recipe()
    holds = check_chain(recipe.chain(), recipe.root)
    assert recipe.stages[0] == "ss_vae" and "tex_slat_flow_model_1024" in holds[recipe.stages[-1]]
    # the cross-attention ablation trains on the same base as the back-projection SS flow, at the same budget
    runs = {r.name: r.config for r in recipe.chain()}
    assert runs["ss_flow_cross"].trainer_args["base_pipeline"] == runs["ss_flow"].trainer_args["base_pipeline"]
    assert runs["ss_flow_cross"].max_steps == runs["ss_flow"].max_steps
    assert runs["ss_flow_cross"].models["sparse_structure_flow_model"]["args"]["image_attn_mode"] == "cross"
    assert recipe.build["resolution"] >= 128
    assert {r.config.models.get("shape_slat_decoder", {}).get("args", {}).get("resolution") for r in recipe.chain()} \
        >= {recipe.build["resolution"]}


def test_a_run_checks_its_base_before_building(tiny_data, tmp_path, capsys):
    ss_vae = tmp_path / "ss_vae"
    argv = ["--data_dir", str(tiny_data), "--num_gpus", "0", "--no_progress", "--max_steps", "1"]
    assert train_main(["--config", str(write_config(tmp_path / "a.json", load_tiny_config("ss_vae_tiny"))),
                       "--output_dir", str(ss_vae), *argv]) == 0
    # a shape flow straight on the SS VAE: no shape encoder, no image encoder
    cfg = load_tiny_config("shape_flow_tiny", trainer_args={"base_pipeline": str(ss_vae)})
    assert train_main(["--config", str(write_config(tmp_path / "b.json", cfg)), "--output_dir",
                       str(tmp_path / "bad"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "lacks image_encoder, shape_slat_encoder" in err and not (tmp_path / "bad").exists()


def test_recipe_errors_are_one_line(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"format": "nope"}))
    with pytest.raises(UserError, match="not a pixal3d recipe"):
        load_recipe(tmp_path / "r.json")
    assert (REPO / "configs" / "train" / "small" / "recipe.json").is_file()
