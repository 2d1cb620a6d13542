"""``inference.py`` / ``pixal3d generate``: options and every bad-input path (one line, exit 2, no output)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from pixal3d.cli.generate import parse_fov

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, str(REPO / "inference.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def assert_one_line_error(proc, fragment):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_fov_parsing():
    assert parse_fov("0.2") == 0.2 and parse_fov("0.2rad") == 0.2
    assert parse_fov("40deg") == pytest.approx(math.radians(40)) and parse_fov("40°") == pytest.approx(math.radians(40))
    import argparse

    for bad in ("0", "180deg", "abc", "-1", "4"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_fov(bad)


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "in.png"
    Image.new("RGBA", (64, 64), (200, 30, 30, 255)).save(path)
    return path


@pytest.mark.parametrize("extra, fragment", [
    (["--steps", "0"], "--steps: must be positive"),
    (["--fov", "200deg"], "--fov: field of view"),
    (["--resolution", "999"], "--resolution: invalid choice"),
    (["--texture_size", "10"], "--texture_size: texture size"),
    (["--guidance", "-1"], "--guidance: must be a non-negative"),
    (["--seed", "x"], "--seed: invalid int"),
])
def test_bad_option_values(image, tmp_path, extra, fragment):
    out = tmp_path / "out.glb"
    assert_one_line_error(run_cli("--image", image, "--output", out, *extra), fragment)
    assert not out.exists()


def test_bad_paths(image, tmp_path, monkeypatch):
    out = tmp_path / "out.glb"
    env = {"PATH": "", "PIXAL3D_MODELS": str(tmp_path / "models")}
    assert_one_line_error(run_cli("--image", tmp_path / "missing.png", "--output", out, env=env), "input image not found")
    assert_one_line_error(run_cli("--image", image, "--output", tmp_path / "out.obj", env=env), "output must be a .glb")
    assert_one_line_error(run_cli("--image", image, "--output", out, env=env), "no model installed")
    assert_one_line_error(run_cli("--image", image, "--output", out, "--model", tmp_path / "nowhere", env=env), "not found")
    (tmp_path / "empty_model").mkdir()
    assert_one_line_error(run_cli("--image", image, "--output", out, "--model", tmp_path / "empty_model", env=env),
                          "pipeline.json is missing")
    assert not out.exists()


@pytest.fixture(scope="module")
def tiny_model(reference, tmp_path_factory):
    from tests.pipelines.tiny_folder import write_tiny_pipeline

    return write_tiny_pipeline(tmp_path_factory.mktemp("models") / "Pixal3D", reference("pipeline_e2e_tiny"),
                               reference("dinov3_tiny"), reference("naf_tiny"))


def test_corrupt_image_fails_before_loading_models(tiny_model, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out.glb"
    proc = run_cli("--image", bad, "--output", out, "--model", tiny_model)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()


def test_missing_stage_names_the_file(tiny_model, tmp_path, image):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "ckpts" / "slat_flow_imgshape2tex_dit_1_3B_1024_bf16.safetensors").unlink()
    out = tmp_path / "out.glb"
    assert_one_line_error(run_cli("--image", image, "--output", out, "--model", broken), "slat_flow_imgshape2tex_dit_1_3B_1024_bf16")
    assert not out.exists()
