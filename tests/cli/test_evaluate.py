"""``pixal3d evaluate`` / ``python -m pixal3d.evaluation``: runs and every bad-input path (one line, exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trimesh

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--image-size", "64", "--held-out", "2", "--points", "2000", "--views-per-mesh", "1"]


def run_cli(*args, module=("pixal3d", "evaluate"), env=None):
    environ = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, "-m", module[0], *module[1:], *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=environ, timeout=600)


@pytest.fixture(scope="module")
def meshes(tmp_path_factory):
    root = tmp_path_factory.mktemp("meshes")
    trimesh.creation.icosphere(subdivisions=3).export(root / "ball.obj")
    trimesh.creation.torus(major_radius=1.0, minor_radius=0.4, major_sections=32, minor_sections=12).export(root / "ring.ply")
    return root


def run_main(capsys, *args):
    """``pixal3d evaluate ARGS`` in this process → ``(exit code, stderr)`` (same handler as the console script)."""
    from pixal3d.cli import main

    try:
        code = main(["evaluate", *map(str, args)])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line(code, stderr, fragment):
    assert code == 2, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0] == lines[-1] and fragment in errors[0], stderr


def test_bad_inputs_are_one_line_errors(meshes, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    assert_one_line(*run_main(capsys, "--meshes", tmp_path / "empty", "-o", out, "--baseline", "sphere"), "no mesh files")
    (tmp_path / "bad").mkdir()
    broken = tmp_path / "bad" / "broken.obj"
    broken.write_text("v 0 0 0\nf 1 2 3\n")
    assert_one_line(*run_main(capsys, "--meshes", broken, "-o", out, "--baseline", "sphere"), "broken.obj")
    assert_one_line(*run_main(capsys, "--meshes", meshes, "-o", out, "--model", tmp_path / "nowhere"), "not found")
    monkeypatch.setenv("PIXAL3D_MODELS", str(tmp_path / "models"))
    assert_one_line(*run_main(capsys, "--meshes", meshes, "-o", out), "no model installed")
    assert_one_line(*run_main(capsys, "--meshes", meshes, "-o", out, "--baseline", "cube"), "unknown baseline 'cube'")
    assert_one_line(*run_main(capsys, "--meshes", meshes, "-o", out, "--baseline", "sphere", "--num-views", "0"), "--num-views")
    assert_one_line(*run_main(capsys, "--meshes", meshes, "-o", out, "--baseline", "sphere", "--subset", "tiny"), "--subset")
    assert_one_line(*run_main(capsys, "--meshes", meshes, "-o", meshes / "inside", "--baseline", "sphere"), "only read")
    assert not (out / "results.json").exists()


def test_baselines_run_through_both_entry_points(meshes, tmp_path, capsys):
    out = tmp_path / "out"
    proc = run_cli("--meshes", meshes, "-o", out, "--baseline", "sphere,silhouette_hull", *SMALL,
                   module=("pixal3d.evaluation",))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "evaluate" in proc.stderr and "silhouette_hull: 2 ok, 0 failed" in proc.stderr  # progress bar and summary
    data = json.loads((out / "results.json").read_text())
    assert list(data["methods"]) == ["sphere", "silhouette_hull"]
    assert (out / "results.md").is_file() and (out / "sheet.png").is_file()
    assert len(list((out / "glb").glob("*.glb"))) == 4
    again = tmp_path / "again"
    code, err = run_main(capsys, "--meshes", meshes / "ball.obj", "-o", again, "--baseline", "sphere", *SMALL)
    assert code == 0, err[-3000:]
    first = json.loads((again / "results.json").read_text())["methods"]["sphere"]["results"][0]["mean"]
    assert first == next(r["mean"] for r in data["methods"]["sphere"]["results"] if r["mesh"] == "ball")
    # a bad input in a real process of the console command: one line, exit code 2, no traceback
    (tmp_path / "empty").mkdir()
    proc = run_cli("--meshes", tmp_path / "empty", "-o", tmp_path / "none", "--baseline", "sphere")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: no mesh files")
    assert "Traceback" not in proc.stderr and not (tmp_path / "none").exists()


@pytest.fixture(scope="module")
def tiny_model(reference, tmp_path_factory):
    from tests.pipelines.tiny_folder import write_tiny_pipeline

    return write_tiny_pipeline(tmp_path_factory.mktemp("models") / "Pixal3D", reference("pipeline_e2e_tiny"),
                               reference("dinov3_tiny"), reference("naf_tiny"))


@pytest.mark.parametrize("mode", ["oracle", "heuristic"])
def test_model_run_with_its_floors(meshes, tiny_model, tmp_path, capsys, mode):
    out = tmp_path / "out"
    code, err = run_main(capsys, "--meshes", meshes / "ball.obj", "-o", out, "--model", tiny_model, "--mode", mode,
                         "--steps", "2", "--resolution", "1024", *SMALL)
    assert code == 0, err[-3000:]
    data = json.loads((out / "results.json").read_text())
    name = f"model ({mode})"
    assert list(data["methods"]) == [name, "sphere", "silhouette_hull"]  # the floors beside the model
    assert data["model"]["mode"] == mode and len(data["model"]["sha256"]) == 64
    view = data["methods"][name]["results"][0]["views"][0]
    assert data["methods"][name]["ok"] == 1 and view["metrics"]["chamfer_l1"] is not None
    assert view["info"]["resolution"] == 1024
    if mode == "oracle":
        assert view["info"]["camera"].startswith("given")  # the true camera, no alignment
        assert "alignment" not in view["info"]
    else:
        assert not view["info"]["camera"].startswith("given")
    assert view["glb"] is not None and (out / view["glb"]).is_file()
    if mode == "oracle":  # the multi-view protocol: 2 oracle views through the pipeline's multi-view path
        code, _ = run_main(capsys, "--meshes", meshes / "ball.obj", "-o", tmp_path / "mv", "--model", tiny_model,
                           "--num-views", "2", "--baseline", "silhouette_hull", *SMALL)
        assert code == 0
        mv = json.loads((tmp_path / "mv" / "results.json").read_text())["methods"]
        two = [m for m in mv.values() if m["method"] == name and m["num_views"] == 2]
        assert two and two[0]["ok"] == 1
        assert two[0]["results"][0]["views"][0]["info"]["camera"].startswith("view 0 of 2")
    else:  # without the true cameras there is no multi-view input
        code, err = run_main(capsys, "--meshes", meshes / "ball.obj", "-o", tmp_path / "mv", "--model", tiny_model,
                             "--mode", "heuristic", "--num-views", "2", *SMALL)
        assert code == 2 and "--mode oracle" in err
