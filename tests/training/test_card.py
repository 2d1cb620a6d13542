"""The model card's facts are read off the runs: parameters, steps, samples, wall-clock, the data counts."""

from __future__ import annotations

import pytest

from pixal3d.cli.train import main as train_main
from pixal3d.errors import UserError
from pixal3d.models.registry import build_model
from pixal3d.training.card import card_tables, data_facts, run_facts
from pixal3d.training.config import parse_config
from pixal3d.training.recipe import load_recipe
from tests.training.conftest import load_tiny_config, write_config


def test_run_facts_and_tables(tiny_data, tmp_path):
    cfg = load_tiny_config("ss_vae_tiny", max_steps=2, log_every=1)
    out = tmp_path / "ss_vae"
    assert train_main(["--config", str(write_config(tmp_path / "c.json", cfg)), "--output_dir", str(out),
                       "--data_dir", str(tiny_data), "--num_gpus", "0", "--no_progress"]) == 0
    facts = run_facts(out, parse_config(cfg))
    for key, spec in cfg["models"].items():
        expected = sum(p.numel() for p in build_model(spec["name"], spec["args"]).state_dict().values())
        assert facts.stages[key] == {"class": spec["name"], "params": expected}
    assert facts.steps == 2 and facts.samples == 2 * cfg["batch_size"] and facts.seconds > 0
    assert set(facts.last) >= {"loss", "bce"} and "lr" not in facts.last
    data = data_facts(type("R", (), {"data": tiny_data, "assets": tmp_path / "none"})())
    assert data["assets"] == 3 and data["views"] == 6 and data["config"]["resolution"] == 32
    table = card_tables([facts], data, [])
    assert "| `ss_vae` | SparseStructureVaeTrainer | 2 × " in table and "3 assets" in table and "6 views" in table
    assert "subdivision bias" not in table
    calibration = {"subdivision_bias": 2.0, "meshes": 12, "assets": "synth seed 1, 12 assets", "candidates": [
        {"bias": b, "score": s, "iou_input": s, "iou_heldout": s, "fscore@0.05": s, "chamfer_l1": 0.05,
         "voxels": 1000 * b + 500, "seconds": 2.5}
        for b, s in ((0.0, 0.6), (2.0, 0.7))]}
    table = card_tables([facts], data, [], calibration)
    assert "subdivision bias +2, chosen by `--steps calibrate` on 12 held-out assets" in table
    assert "| **+2** | 0.700 | 0.700 | 0.700 | 0.700 | 0.0500 | 2,500 | 2.5 |" in table and "| +0 | 0.600 |" in table


def test_card_needs_its_facts_block(tmp_path):
    from pixal3d.training.card import write_card

    recipe = load_recipe()
    object.__setattr__(recipe, "model", tmp_path)
    (tmp_path / "README.md").write_text("# a card without the markers\n")
    with pytest.raises(UserError, match="has no facts block"):
        write_card(recipe)
