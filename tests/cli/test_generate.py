"""``inference.py`` / ``pixal3d generate``: options and every bad-input path (one line, exit 2, no output)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from pixal3d.cli.options import parse_fov

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, str(REPO / "inference.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def run_in_process(capsys, *args) -> subprocess.CompletedProcess:
    """``inference.py`` in this process (no interpreter start: for the many error paths) → its exit code and
    stderr as a :class:`subprocess.CompletedProcess`."""
    from pixal3d.cli.generate import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["inference.py", *map(str, args)], code, captured.out, captured.err)


def assert_one_line_error(proc, fragment):
    """Exit code 2 and exactly one error line, the last thing on stderr (progress bars may precede it)."""
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0] == lines[-1] and fragment in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


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
    (["--resolution", "0"], "--resolution: must be positive"),
    (["--texture_size", "10"], "texture_size must be between 16 and 8192"),
    (["--guidance", "-1"], "--guidance: must be a non-negative"),
    (["--seed", "x"], "--seed: invalid int"),
])
def test_bad_option_values(image, tmp_path, capsys, extra, fragment):
    out = tmp_path / "out.glb"
    assert_one_line_error(run_in_process(capsys, "--image", image, "--output", out, *extra), fragment)
    assert not out.exists()


def test_bad_paths(image, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.glb"
    env = {"PATH": "", "PIXAL3D_MODELS": str(tmp_path / "models")}
    # the message a fresh machine without a model meets, from a real process
    assert_one_line_error(run_cli("--image", image, "--output", out, env=env), "no model installed")
    monkeypatch.setenv("PIXAL3D_MODELS", env["PIXAL3D_MODELS"])
    assert_one_line_error(run_in_process(capsys, "--image", tmp_path / "missing.png", "--output", out),
                          "input image not found")
    assert_one_line_error(run_in_process(capsys, "--image", image, "--output", tmp_path / "out.obj"), "output must be a .glb")
    assert_one_line_error(run_in_process(capsys, "--image", image, "--output", out, "--model", tmp_path / "nowhere"),
                          "not found")
    (tmp_path / "empty_model").mkdir()
    assert_one_line_error(run_in_process(capsys, "--image", image, "--output", out, "--model", tmp_path / "empty_model"),
                          "pipeline.json is missing")
    assert not out.exists()


def test_corrupt_image_fails_before_loading_models(tiny_model, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out.glb"
    proc = run_cli("--image", bad, "--output", out, "--model", tiny_model)
    assert_one_line_error(proc, "error:")
    assert "Loading" not in proc.stderr  # failed before any model was loaded
    assert not out.exists()


def test_unknown_resolution_for_the_model(tiny_model, tmp_path, image):
    out = tmp_path / "out.glb"
    assert_one_line_error(run_cli("--image", image, "--output", out, "--model", tiny_model, "--resolution", "999"),
                          "no 999 pipeline (resolutions: 1024, 1536)")
    assert not out.exists()


def test_missing_stage_names_the_file(tiny_model, tmp_path, image):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "ckpts" / "slat_flow_imgshape2tex_dit_1_3B_1024_bf16.safetensors").unlink()
    out = tmp_path / "out.glb"
    assert_one_line_error(run_cli("--image", image, "--output", out, "--model", broken), "slat_flow_imgshape2tex_dit_1_3B_1024_bf16")
    assert not out.exists()


@pytest.fixture(scope="module")
def object_image(reference, tmp_path_factory):
    """The tiny run's input (an ellipse on black) as an RGBA product shot with real alpha."""
    import numpy as np
    from PIL import Image

    rgb = reference("pipeline_e2e_tiny")["image_uint8_HWC"].numpy()
    alpha = np.where(rgb.max(axis=2) > 0, 255, 0).astype(np.uint8)
    path = tmp_path_factory.mktemp("img") / "object.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(path)
    return path


# the tiny random-weight networks make fragments far smaller than the default floater threshold: keep them all
FAST = ["--steps", "2", "--texture_size", "256", "--decimation_target", "4000", "--resolution", "1024",
        "--min_component_area", "0"]


@pytest.mark.parametrize("layout", ["pixal3d", "trellis2"])
def test_generates_a_valid_glb_in_both_official_layouts(reference, tmp_path, object_image, layout):
    from pixal3d.core.asset import VoxelAsset
    from tests.clients import assert_valid_gltf
    from tests.pipelines.tiny_folder import write_tiny_pipeline

    folder = write_tiny_pipeline(tmp_path / "models" / ("Pixal3D" if layout == "pixal3d" else "TRELLIS.2-4B"),
                                 reference("pipeline_e2e_tiny"), reference("dinov3_tiny"), reference("naf_tiny"), layout)
    out = tmp_path / "out.glb"
    proc = run_cli("--image", object_image, "--output", out, "--model", folder, *FAST,
                   "--save_asset", tmp_path / "out.npz", "--preview")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sparse structure" in proc.stderr and "total" in proc.stderr  # per-stage time summary
    assert_valid_gltf(out)
    asset = VoxelAsset.load(tmp_path / "out.npz")
    assert asset.resolution == 1024 and len(asset.coords) > 100 and asset.camera is not None
    assert (tmp_path / "out.png").is_file()


def test_same_seed_same_output(reference, tmp_path, object_image, tiny_model):
    import numpy as np

    from pixal3d.core.asset import VoxelAsset

    assets = []
    for run in range(2):
        out = tmp_path / f"run{run}.glb"
        proc = run_cli("--image", object_image, "--output", out, "--model", tiny_model, *FAST, "--seed", "7",
                       "--save_asset", tmp_path / f"run{run}.npz")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assets.append(VoxelAsset.load(tmp_path / f"run{run}.npz"))
    assert np.array_equal(assets[0].coords, assets[1].coords)
    assert np.array_equal(assets[0].attrs, assets[1].attrs)
    assert (tmp_path / "run0.glb").read_bytes() == (tmp_path / "run1.glb").read_bytes()


def test_multiview_turntable_and_cameras_file(tmp_path, object_image, tiny_model, capsys):
    import json

    from PIL import Image

    from pixal3d.core.camera import front_view_matrix
    from tests.clients import assert_valid_gltf

    side = tmp_path / "side.png"
    Image.open(object_image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(side)
    out = tmp_path / "mv.glb"
    proc = run_cli("--image", object_image, "--image", side, "--azimuths", "0,90", "--elevation", "10", "--fov", "40deg",
                   "--output", out, "--model", tiny_model, *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "views=2" in proc.stderr and "view 0 of 2" in proc.stderr
    assert_valid_gltf(out)
    cams = tmp_path / "transforms.json"
    cams.write_text(json.dumps({"camera_angle_x": 0.7, "frames": [{"transform_matrix": front_view_matrix(2.0).tolist()}]}))
    flat = front_view_matrix(2.0).clone()
    flat[:3, 2] = 0.0  # a rank-2 rotation block: no camera pose
    singular = tmp_path / "singular.json"
    singular.write_text(json.dumps({"camera_angle_x": 0.7, "frames": [{"transform_matrix": front_view_matrix(2.0).tolist()},
                                                                      {"transform_matrix": flat.tolist()}]}))
    small = tmp_path / "small.png"
    Image.open(side).resize((64, 64)).save(small)
    for args, fragment in [
        (["--image", object_image, "--image", side], "2 images need their cameras"),
        (["--image", object_image, "--image", side, "--azimuths", "0"], "--azimuths has 1 values for 2 images"),
        (["--image", object_image, "--image", side, "--cameras", cams], "1 frames for 2 images"),
        (["--image", object_image, "--cameras", cams, "--azimuths", "0"], "either --cameras or --azimuths"),
        (["--image", object_image, "--azimuths", "0,x"], "--azimuths: azimuths must be comma-separated"),
        (["--image", object_image, "--image", side, "--cameras", singular], "frame 1 transform_matrix is not an invertible"),
        (["--image", object_image, "--image", small, "--azimuths", "0,90"], "must all have the same size"),
    ]:
        bad = tmp_path / "bad.glb"
        assert_one_line_error(run_in_process(capsys, *args, "--output", bad, "--model", tiny_model, *FAST), fragment)
        assert not bad.exists()

