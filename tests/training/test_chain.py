"""Chains of training runs are checked whole before the first step; a run checks its own base at start."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from pixal3d.errors import UserError
import torch

from pixal3d.cli.train import main as train_main
from pixal3d.training.chain import ChainRun, base_runs, check_chain
from pixal3d.training.config import load_config
from pixal3d.training.recipe import load_recipe
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
    # the cross-attention ablation: the back-projection SS flow's run (its image encoder, frozen) as base, at the
    # same budget, so the exported model with its SS flow swapped differs in that flow only
    runs = {r.name: r.config for r in recipe.chain()}
    assert runs["ss_flow_cross"].trainer_args["base_pipeline"] == "runs/small/ss_flow"
    assert runs["ss_flow_cross"].trainer_args["image_encoder"] == "base"
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


def test_a_run_may_stand_on_several_runs(tmp_path):
    runs = _runs({"ss_vae": None, "shape_vae": None, "ss_flow": "ss_vae", "shape_flow": None})
    runs[-1].config.trainer["args"]["base_pipeline"] = ["runs/ss_flow", "runs/shape_vae"]
    holds = check_chain(runs, tmp_path)
    assert {"image_encoder", "sparse_structure_flow_model", "shape_slat_encoder"} <= set(holds["shape_flow"])
    assert base_runs(runs[-1], runs, tmp_path) == ["ss_flow", "shape_vae"] and base_runs(runs[0], runs, tmp_path) == []
    # one stage from two bases is ambiguous
    runs[-1].config.trainer["args"]["base_pipeline"] = ["runs/ss_flow", "runs/ss_vae"]
    with pytest.raises(UserError, match="sparse_structure_encoder would come from two of its bases"):
        check_chain(runs, tmp_path)


def test_merged_bases_hold_every_stage_once(tiny_data, tmp_path):
    from pixal3d.models.pipeline_folder import open_pipeline_folder
    from pixal3d.training.trainer import merge_pipeline_folders

    argv = ["--data_dir", str(tiny_data), "--num_gpus", "0", "--no_progress", "--max_steps", "1"]
    for name in ("ss_vae", "shape_vae"):
        cfg = load_tiny_config(f"{name}_tiny", trainer_args={"stats_items": 2} if name == "shape_vae" else {})
        assert train_main(["--config", str(write_config(tmp_path / f"{name}.json", cfg)), "--output_dir",
                           str(tmp_path / name), *argv]) == 0
    folders = [open_pipeline_folder(tmp_path / n / "ckpts" / "step_0000001") for n in ("ss_vae", "shape_vae")]
    merged = merge_pipeline_folders(folders, tmp_path / "merged")
    assert set(merged.stages) == set(folders[0].stages) | set(folders[1].stages)
    for folder in folders:
        for key in folder.stages:
            torch.testing.assert_close(merged.load(key).state_dict(), folder.load(key).state_dict())
    assert merged.config.normalization["shape_slat"] == folders[1].config.normalization["shape_slat"]
    with pytest.raises(UserError, match="both hold"):
        merge_pipeline_folders([folders[0], folders[0]], tmp_path / "twice")
    # a flow trained on the two runs writes checkpoints holding all three
    cfg = load_tiny_config("ss_flow_tiny", trainer_args={"base_pipeline": [str(tmp_path / "ss_vae"), str(tmp_path / "shape_vae")]})
    assert train_main(["--config", str(write_config(tmp_path / "flow.json", cfg)), "--output_dir", str(tmp_path / "flow"),
                       *argv]) == 0
    out = open_pipeline_folder(tmp_path / "flow" / "ckpts" / "step_0000001")
    assert {"shape_slat_decoder", "sparse_structure_decoder", "sparse_structure_flow_model"} <= set(out.stages)


class _FakeRun:
    """Stands in for a ``train.py`` process: exits with ``code`` at its second poll."""

    def __init__(self, code: int = 0):
        self.code, self.polls, self.terminated = code, 0, False

    def poll(self):
        self.polls += 1
        return self.code if self.polls > 1 else None

    def terminate(self):
        self.terminated = True

    def wait(self):
        return self.code


def test_jobs_start_runs_when_their_bases_are_done(tmp_path, monkeypatch):
    from pixal3d.training import recipe as R

    recipe = load_recipe()
    started, procs = [], []

    def start(recipe_, run, num_gpus, progress, env, to_log):
        running = [name for name, proc in procs if proc.polls < 2]
        started.append((run.name, running))
        procs.append((run.name, _FakeRun()))
        return procs[-1][1]

    monkeypatch.setattr(R, "_start_run", start)
    monkeypatch.setattr(R.time, "sleep", lambda s: None)
    monkeypatch.setattr(R, "run_finished", lambda d, n: False)
    R.train_chain(recipe, jobs=2)
    order = [name for name, _ in started]
    assert sorted(order) == sorted(recipe.stages + recipe.ablations)
    waits = {r.name: base_runs(r, recipe.chain(), recipe.root) for r in recipe.chain()}
    for name in order:  # nothing starts before the runs it stands on
        assert all(order.index(w) < order.index(name) for w in waits[name])
    assert started[:2] == [("ss_vae", []), ("shape_vae", ["ss_vae"])]  # two at once
    assert max(len(running) for _, running in started) == 1  # never more than two
    # a failing run stops the chain with one line
    monkeypatch.setattr(R, "_start_run", lambda *a: _FakeRun(code=3))
    with pytest.raises(UserError, match="run ss_vae failed"):
        R.train_chain(recipe, jobs=1)
    # … and the runs still training beside it are stopped
    procs = {"ss_vae": _FakeRun(code=0), "shape_vae": _FakeRun(code=3)}
    procs["ss_vae"].poll = lambda: None  # never ends by itself
    monkeypatch.setattr(R, "_start_run", lambda recipe_, run, *a: procs[run.name])
    with pytest.raises(UserError, match="run shape_vae failed"):
        R.train_chain(recipe, jobs=2)
    assert procs["ss_vae"].terminated and not procs["shape_vae"].terminated
    # `kill` (SIGTERM) of train-default stops its runs too, instead of leaving them training unattended
    procs = {"ss_vae": _FakeRun(code=0), "shape_vae": _FakeRun(code=0)}
    for proc in procs.values():
        proc.poll = lambda: None
    monkeypatch.setattr(R, "_start_run", lambda recipe_, run, *a: procs[run.name])
    monkeypatch.setattr(R.time, "sleep", lambda s: os.kill(os.getpid(), signal.SIGTERM))
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit):
        R.train_chain(recipe, jobs=2)
    assert procs["ss_vae"].terminated and procs["shape_vae"].terminated
    assert signal.getsignal(signal.SIGTERM) is handler  # put back


def test_export_stores_shared_weights_once(tmp_path):
    from pixal3d.models.pipeline_folder import StageWeights, open_pipeline_folder, write_pipeline_folder
    from pixal3d.models.registry import build_model
    from pixal3d.training.recipe import _store_shared_weights_once

    cfg = load_tiny_config("ss_vae_tiny")["models"]
    stages = {key: StageWeights(build_model(spec["name"], spec["args"]), spec["name"], spec["args"])
              for key, spec in cfg.items()}
    dec = stages["sparse_structure_decoder"]
    stages["copy_of_decoder"] = StageWeights(dec.weights, dec.name, dec.args)
    write_pipeline_folder(tmp_path / "p", stages)
    _store_shared_weights_once(tmp_path / "p")
    folder = open_pipeline_folder(tmp_path / "p")
    assert set(folder.stages) == {"sparse_structure_encoder", "sparse_structure_decoder", "copy_of_decoder"}
    assert folder.stages["copy_of_decoder"].stem == folder.stages["sparse_structure_decoder"].stem
    assert sorted(p.name for p in (tmp_path / "p" / "ckpts").iterdir()) == [
        "sparse_structure_decoder.json", "sparse_structure_decoder.safetensors",
        "sparse_structure_encoder.json", "sparse_structure_encoder.safetensors"]
    torch.testing.assert_close(folder.load("copy_of_decoder").state_dict(), dec.weights.state_dict())


def test_ablation_export_swaps_its_stages_in_at_a_chosen_step(tmp_path):
    """``export_ablation``: a copy of the model with the run's stages from its latest checkpoint, or from the checkpoint
    at ``step`` (``runs/<run>@<step>.model``, also for a run of the chain: its equal-budget counterpart)."""
    from safetensors.torch import load_file

    from pixal3d.models.pipeline_folder import StageWeights, write_pipeline_folder
    from pixal3d.models.registry import build_model
    from pixal3d.training.recipe import _ablations_below, export_ablation

    folder = tmp_path / "configs" / "train" / "r"
    folder.mkdir(parents=True)
    for name in ("ss_vae", "ss_vae_alt"):
        shutil.copyfile(CONFIGS / "ss_vae_tiny.json", folder / f"{name}.json")
    write_config(folder / "ss_vae_on_alt.json",
                 load_tiny_config("ss_vae_tiny", trainer_args={"base_pipeline": "runs/ss_vae_alt"}))
    (folder / "recipe.json").write_text(json.dumps({"format": "pixal3d-recipe", "model": "model", "assets": "assets",
                                                    "data": "data", "runs": "runs", "stages": ["ss_vae"],
                                                    "ablations": ["ss_vae_alt", "ss_vae_on_alt"]}))
    recipe = load_recipe(folder / "recipe.json")
    # an ablation standing on another swaps that one's stages in too (shape_flow_cross on ss_flow_cross)
    chain = {r.name: r for r in recipe.chain()}
    assert [r.name for r in _ablations_below(chain["ss_vae_on_alt"], list(chain.values()), recipe)] == ["ss_vae_alt"]
    assert _ablations_below(chain["ss_vae_alt"], list(chain.values()), recipe) == []
    spec = load_tiny_config("ss_vae_tiny")["models"]["sparse_structure_decoder"]
    max_steps = recipe.chain()[0].config.max_steps
    for run, steps in (("ss_vae", (1, max_steps)), ("ss_vae_alt", (1, max_steps))):
        for step in steps:
            torch.manual_seed(step + 10 * (run == "ss_vae_alt"))
            stage = StageWeights(build_model(spec["name"], spec["args"]), spec["name"], spec["args"])
            write_pipeline_folder(tmp_path / "runs" / run / "ckpts" / f"step_{step:07d}", {"sparse_structure_decoder": stage})
        (tmp_path / "runs" / run / "ckpts" / "latest").write_text(f"step_{max_steps:07d}")
    shutil.copytree(tmp_path / "runs" / "ss_vae" / "ckpts" / f"step_{max_steps:07d}", tmp_path / "model")

    def weights(model, run, step):
        key = "sparse_structure_decoder"
        got = load_file(model / "ckpts" / f"{key}.safetensors")
        want = load_file(tmp_path / "runs" / run / "ckpts" / f"step_{step:07d}" / "ckpts" / f"{key}.safetensors")
        return all(torch.equal(got[k].float(), want[k].half().float()) for k in want)  # stored as fp16

    latest = export_ablation(recipe, "ss_vae_alt")
    assert latest == tmp_path / "runs" / "ss_vae_alt.model" and weights(latest, "ss_vae_alt", max_steps)
    early = export_ablation(recipe, "ss_vae_alt", step=1)
    assert early.name == "ss_vae_alt@1.model" and weights(early, "ss_vae_alt", 1)
    counterpart = export_ablation(recipe, "ss_vae", step=1)
    assert counterpart.name == "ss_vae@1.model" and weights(counterpart, "ss_vae", 1)
    with pytest.raises(UserError, match="no checkpoint at step 7"):
        export_ablation(recipe, "ss_vae", step=7)
    with pytest.raises(UserError, match="not an ablation"):
        export_ablation(recipe, "ss_vae")


def test_export_writes_the_recipes_pipeline_settings(tmp_path):
    from pixal3d.core.pipeline_config import PipelineConfig
    from pixal3d.models.pipeline_folder import StageWeights, write_pipeline_folder
    from pixal3d.models.registry import build_model
    from pixal3d.training.recipe import export_model

    folder = tmp_path / "configs" / "train" / "r"
    folder.mkdir(parents=True)
    shutil.copyfile(CONFIGS / "ss_vae_tiny.json", folder / "ss_vae.json")
    text = {"format": "pixal3d-recipe", "model": "model", "assets": "assets", "data": "data", "runs": "runs",
            "stages": ["ss_vae"], "pipeline_settings": {"silhouette_constraint": True}}
    (folder / "recipe.json").write_text(json.dumps(text))
    recipe = load_recipe(folder / "recipe.json")
    spec = load_tiny_config("ss_vae_tiny")["models"]["sparse_structure_decoder"]
    max_steps = recipe.chain()[0].config.max_steps
    stage = StageWeights(build_model(spec["name"], spec["args"]), spec["name"], spec["args"])
    write_pipeline_folder(tmp_path / "runs" / "ss_vae" / "ckpts" / f"step_{max_steps:07d}", {"sparse_structure_decoder": stage})
    (tmp_path / "runs" / "ss_vae" / "ckpts" / "latest").write_text(f"step_{max_steps:07d}")
    assert PipelineConfig.read(export_model(recipe) / "pipeline.json").silhouette_constraint is True
    (folder / "recipe.json").write_text(json.dumps({**text, "pipeline_settings": ["silhouette_constraint"]}))
    with pytest.raises(UserError, match="'pipeline_settings' must be an object"):
        load_recipe(folder / "recipe.json")


def _calibration_recipe(tmp_path, calibration_seed: int):
    folder = tmp_path / "configs" / "train" / "r"
    folder.mkdir(parents=True)
    shutil.copyfile(CONFIGS / "ss_vae_tiny.json", folder / "ss_vae.json")
    (folder / "recipe.json").write_text(json.dumps({
        "format": "pixal3d-recipe", "model": "model", "assets": "assets", "data": "data", "runs": "runs",
        "synth": {"count": 4, "seed": 0}, "stages": ["ss_vae"],
        "calibration": {"synth": {"count": 2, "seed": calibration_seed}, "biases": [0, 2]}}))
    return load_recipe(folder / "recipe.json")


def test_calibration_refuses_the_training_seed_and_applies_only_to_the_weights_it_measured(tmp_path):
    """The held-out calibration assets must come from another synth seed than the training data; the recorded
    bias is written into a model folder only when that folder holds the shape-decoder weights it was measured on."""
    from pixal3d import paths
    from pixal3d.training.recipe import CALIBRATION_FILE, _shape_decoder_sha256, apply_calibration, calibrate_model

    with pytest.raises(UserError, match="training data's"):
        calibrate_model(_calibration_recipe(tmp_path / "a", calibration_seed=0))
    recipe = _calibration_recipe(tmp_path / "b", calibration_seed=1)
    model = paths.component_path("pixal3d-small")
    if not model.exists():
        pytest.skip("the default model is not installed (models/pixal3d-small)")
    shutil.copytree(model, recipe.model)
    assert apply_calibration(recipe, recipe.model) is None  # nothing measured yet
    recipe.runs.mkdir(parents=True)
    record = {"subdivision_bias": 3.0, "shape_decoder_sha256": "0" * 64}
    (recipe.runs / CALIBRATION_FILE).write_text(json.dumps(record))
    assert apply_calibration(recipe, recipe.model) is None  # measured on other weights
    record["shape_decoder_sha256"] = _shape_decoder_sha256(recipe.model)
    (recipe.runs / CALIBRATION_FILE).write_text(json.dumps(record))
    assert apply_calibration(recipe, recipe.model) == 3.0
    spec = json.loads((recipe.model / "ckpts" / "shape_slat_decoder.json").read_text())
    assert spec["args"]["subdivision_bias"] == 3.0


def test_the_shipped_model_is_a_base_for_fine_tuning_its_flows():
    """The model folder keeps the VAE encoders, so each flow of the recipe can be fine-tuned on the shipped VAEs
    (its config's ``base_pipeline`` set to the model folder) without retraining them."""
    from pixal3d import paths

    model = paths.component_path("pixal3d-small")
    if not model.exists():
        pytest.skip("the default model is not installed (models/pixal3d-small)")
    recipe = load_recipe()
    runs = []
    for run in recipe.chain():
        if run.name in ("ss_flow", "shape_flow", "tex_flow"):
            run.config.trainer["args"]["base_pipeline"] = str(model)
            run.config.trainer["args"]["image_encoder"] = "base"
            runs.append(ChainRun(run.name, run.config, Path("runs") / f"{run.name}_finetune"))
    holds = check_chain(runs, recipe.root)
    assert {"sparse_structure_encoder", "shape_slat_encoder", "tex_slat_encoder"} <= set(holds["tex_flow"])
