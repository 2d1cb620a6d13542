"""Faults survived: training, data synth and data build killed with SIGKILL at exact places resume without
losing or redoing work and without keeping a broken file; generation interrupted with SIGINT exits 130
with one line and no output. The kill points are named fail points (:mod:`pixal3d.utils.failpoints`),
so every run is deterministic and bounded in time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.reliability.cases import FAST
from tests.reliability.test_corpus import ERROR, PROGRESS, snapshot
from tests.training.conftest import load_tiny_config, write_config

REPO = Path(__file__).resolve().parents[2]
MAX_STEPS, SAVE_EVERY = 4, 2


def run(script: list[str], *args, failpoint: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("PIXAL3D_FAILPOINT", None)
    if failpoint:
        env["PIXAL3D_FAILPOINT"] = failpoint
    # a job started in the background of a non-interactive shell inherits SIGINT ignored, and Python then never
    # turns a SIGINT into KeyboardInterrupt: give the child the default disposition, as a terminal's Ctrl-C meets
    return subprocess.run([sys.executable, *script, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd or REPO, timeout=300, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def train(config: Path, data: Path, out: Path, failpoint: str | None = None) -> subprocess.CompletedProcess:
    return run([str(REPO / "train.py")], "--config", config, "--output_dir", out, "--data_dir", data, "--num_gpus", "0",
               "--no_progress", failpoint=failpoint)


def pixal3d(*args, failpoint: str | None = None) -> subprocess.CompletedProcess:
    return run(["-m", "pixal3d"], *args, failpoint=failpoint)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------------
# training


@pytest.fixture(scope="module")
def train_setup(tiny_data, tmp_path_factory):
    """The tiny config and an uninterrupted reference run (``MAX_STEPS`` steps, a checkpoint every ``SAVE_EVERY``)."""
    root = tmp_path_factory.mktemp("faults_train")
    config = write_config(root / "config.json", load_tiny_config("ss_vae_tiny", max_steps=MAX_STEPS, batch_size=2,
                                                                  log_every=1, save_every=SAVE_EVERY, ema_rate=0.7))
    proc = train(config, tiny_data, root / "reference")
    assert proc.returncode == 0, proc.stderr
    return config, tiny_data, root / "reference"


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "ckpts" / f"step_{MAX_STEPS:07d}" / "trainer_state.pt", weights_only=False)


def assert_latest_complete(run_dir: Path) -> int:
    """``latest`` names a complete checkpoint (pipeline folder loads strictly, trainer state loads); its step."""
    from pixal3d.models.pipeline_folder import open_pipeline_folder

    ckpts = run_dir / "ckpts"
    name = (ckpts / "latest").read_text().strip()
    folder = open_pipeline_folder(ckpts / name)
    for key in folder.stages:
        folder.load(key)
    state = torch.load(ckpts / name / "trainer_state.pt", weights_only=False)
    return int(state["step"])


@pytest.mark.parametrize("point, latest_after_kill", [
    ("train.step:3", 2),  # inside step 3 (after backward, before the optimiser update)
    ("checkpoint.weights:2", 2),  # writing checkpoint 4: pipeline folder written, trainer state not yet
    ("checkpoint.latest:2", 2),  # checkpoint 4 renamed into place, `latest` not updated yet
])
def test_training_killed_resumes_bit_identically(train_setup, tmp_path, point, latest_after_kill):
    config, data, reference = train_setup
    out = tmp_path / "run"
    killed = train(config, data, out, failpoint=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert assert_latest_complete(out) == latest_after_kill
    visible = sorted(p.name for p in (out / "ckpts").iterdir() if not p.name.startswith("."))
    assert all(name == "latest" or (out / "ckpts" / name / "trainer_state.pt").is_file() for name in visible), visible

    resumed = train(config, data, out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {latest_after_kill}" in resumed.stdout
    assert assert_latest_complete(out) == MAX_STEPS
    assert not [p.name for p in (out / "ckpts").iterdir() if p.name.startswith(".")]  # temporaries cleared
    want, got = final_state(reference), final_state(out)
    for part in ("weights", "ema"):
        for key, value in want[part].items():
            assert torch.equal(value, got[part][key]), f"{part}.{key} differs from the uninterrupted run"
    steps = [int(line.split(",")[0]) for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, MAX_STEPS + 1))


def test_resume_skips_a_damaged_latest_checkpoint(train_setup, tmp_path):
    """A checkpoint damaged after the fact (a disk error) is skipped, with a note, for the one before; the run
    then redoes the lost steps, rewriting that checkpoint, and ends bit-identical."""
    config, data, reference = train_setup
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "ckpts" / f"step_{MAX_STEPS:07d}" / "trainer_state.pt").write_bytes(b"\0" * 100)
    proc = train(config, data, out)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and notes[0].startswith("note: resuming from step_0000002: skipped"), proc.stderr
    assert "resumed from step 2" in proc.stdout
    want, got = final_state(reference), final_state(out)
    assert all(torch.equal(v, got["weights"][k]) for k, v in want["weights"].items())
    assert not [p.name for p in (out / "ckpts").iterdir() if p.name.startswith(".")]


def test_resume_drops_a_torn_log_row(train_setup, tmp_path):
    """A crash in the middle of appending to log.csv leaves a partial row; resuming drops it."""
    from pixal3d.data.dataset import ViewDataset, collate_views
    from pixal3d.training.config import parse_config
    from pixal3d.training.registry import trainer_class

    config, data, reference = train_setup
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    with open(out / "log.csv", "a") as f:
        f.write("1")  # the row of a step 1x torn after its first digit: reads as step 1, fields missing
    cfg = parse_config(json.loads(config.read_text()))
    trainer = trainer_class(cfg.trainer_name)(cfg, ViewDataset(data, **cfg.dataset["args"]), collate_views, out,
                                              progress=False)
    assert trainer.resume(out) and trainer.step == MAX_STEPS
    steps = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(1, MAX_STEPS + 1)]


# --------------------------------------------------------------------------------------------------
# data synth and data build


def test_synth_killed_resumes_without_redoing_or_keeping_broken_files(tmp_path):
    from pixal3d.data.synth import synthesize

    fresh, out = tmp_path / "fresh", tmp_path / "out"
    common = ["-n", "4", "--workers", "1", "--seed", "3", "--no-sheet", "-q"]
    synthesize(4, fresh, seed=3, workers=1, sheet=False)  # the uninterrupted run
    killed = pixal3d("data", "synth", *common, "-o", out, failpoint="synth.item:2")
    assert killed.returncode == -signal.SIGKILL
    done = sorted(p.name for p in out.glob("*.glb"))
    assert done == ["synth_0003_000000.glb", "synth_0003_000001.glb"]
    inodes = {name: os.stat(out / name).st_ino for name in done}
    # what a kill during a write leaves (a temporary), and a file broken by hand or by a copy
    (out / ".synth_0003_000002.x1y2z3.glb").write_bytes(b"glTF half")
    (out / "synth_0003_000003.glb").write_bytes((fresh / "synth_0003_000003.glb").read_bytes()[:500])
    resumed = pixal3d("data", "synth", *common, "-o", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 written, 2 kept" in resumed.stdout
    assert {name: os.stat(out / name).st_ino for name in done} == inodes  # finished items not redone
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in fresh.iterdir())  # no temporaries
    for path in fresh.glob("*.glb"):
        assert sha(out / path.name) == sha(path), path.name


def test_build_killed_resumes_without_redoing_or_keeping_broken_views(tmp_path):
    from pixal3d.data.build import BuildConfig, build_dataset
    from pixal3d.data.synth import synthesize

    assets = tmp_path / "assets"
    synthesize(3, assets, seed=5, workers=1, sheet=False)
    common = ["--assets", assets, "--views", "2", "--resolution", "16", "--image-size", "32", "--workers", "1", "-q"]
    fresh, out = tmp_path / "fresh", tmp_path / "out"
    build_dataset(assets, fresh, BuildConfig(views=2, resolution=16, image_size=32), workers=1)  # uninterrupted
    killed = pixal3d("data", "build", *common, "-o", out, failpoint="build.view:3")  # asset 1, view 0: image only
    assert killed.returncode == -signal.SIGKILL
    first = sorted((out / "synth_0005_000000").iterdir())
    assert [p.name for p in first] == ["view_00.npz", "view_00.png", "view_01.npz", "view_01.png"]
    kept = {p: os.stat(p).st_ino for p in first}
    assert sorted(p.name for p in (out / "synth_0005_000001").iterdir()) == ["view_00.png"]  # its voxels never came
    resumed = pixal3d("data", "build", *common, "-o", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 assets built, 1 kept, 0 failed" in resumed.stdout
    assert {p: os.stat(p).st_ino for p in first} == kept  # the finished asset was not redone
    want, got = snapshot(fresh), snapshot(out)
    assert {Path(p).relative_to(fresh) for p in want} == {Path(p).relative_to(out) for p in got}
    for path, digest in want.items():
        rel = Path(path).relative_to(fresh)
        if rel.suffix == ".png":  # images are bit-exact; .npz zip headers hold timestamps
            assert got[str(out / rel)] == digest, rel


# --------------------------------------------------------------------------------------------------
# generation interrupted


def assert_interrupted(proc: subprocess.CompletedProcess, out: Path) -> None:
    """Exit 130, no traceback, one error line last (after progress bars only), nothing in ``out``."""
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert all(PROGRESS.search(line) for line in lines[:-1]), proc.stderr
    assert ERROR.match(lines[-1]) and "interrupted" in lines[-1], lines[-1]
    assert list(out.iterdir()) == []  # neither the output nor a temporary


def test_generation_interrupted_exits_130_with_one_line_and_no_output(shared_inputs, tmp_path):
    """Ctrl-C (a real SIGINT) after the second generation stage."""
    out = tmp_path / "out"
    out.mkdir()
    proc = run([str(REPO / "inference.py")], "--image", shared_inputs["image"], "--output", out / "result.glb",
               "--model", shared_inputs["model"], *FAST, "--save_asset", out / "result.npz", "--preview",
               failpoint="generate.stage:2:int")
    assert_interrupted(proc, out)


def test_interrupted_while_the_output_is_put_in_place(shared_inputs, tmp_path):
    """Ctrl-C with the GLB complete in its temporary, just before the rename: the temporary goes too."""
    out = tmp_path / "out"
    out.mkdir()
    proc = pixal3d("export", shared_inputs["asset"], "-o", out / "x.glb", "--texture_size", "64",
                   "--decimation_target", "500", "--quiet", failpoint="output.commit:1:int")
    assert_interrupted(proc, out)
