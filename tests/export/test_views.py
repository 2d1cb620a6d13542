"""The alignment view and the turntable GIF (pixal3d.export.views)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixal3d.export.glb import patch_glb_camera
from pixal3d.export.views import blend, photo_rgb, render_through_camera, turntable_gif

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FOV = 0.8575560450553894  # examples/README.md: example.png's camera


@pytest.fixture(scope="module")
def example_glb(tmp_path_factory):
    """Asset 109 of seed 0 (the source of examples/example.png) with that picture's camera node."""
    from pixal3d.data.synth import generate, glb_bytes

    d = 1.0 / (2.0 * math.tan(FOV / 2.0))
    data = patch_glb_camera(glb_bytes(generate(0, 109)[1]),
                            {"type": "perspective", "perspective": {"yfov": FOV, "aspectRatio": 1.0, "znear": 0.01}},
                            {"name": "input_view", "translation": [0.0, 0.0, d]})
    path = tmp_path_factory.mktemp("views") / "snowman.glb"
    path.write_bytes(data)
    return path


def test_render_through_the_camera_lines_up_with_the_picture(example_glb):
    alpha = np.asarray(Image.open(EXAMPLES / "example.png"))[..., 3] > 127
    overlay = render_through_camera(example_glb, 512, 512)
    drawn = overlay[..., 3] > 0.5
    assert (drawn & alpha).sum() / (drawn | alpha).sum() > 0.97  # the silhouettes coincide


def test_a_wide_picture_is_the_centre_of_the_square_view(example_glb):
    square = render_through_camera(example_glb, 512, 512)
    wide = render_through_camera(example_glb, 512, 256, fov_x=FOV)  # same horizontal FOV: the middle rows
    assert wide.shape == (256, 512, 4)
    assert np.abs(wide[..., 3] - square[128:384, :, 3]).mean() < 0.01


def test_blend_and_photo():
    photo = photo_rgb(Image.new("RGBA", (4, 4), (255, 0, 0, 0)))  # transparent → the grey backdrop
    assert np.allclose(photo, 0.5)
    overlay = np.zeros((4, 4, 4), np.float32)
    overlay[:2, :, :] = (0.0, 1.0, 0.0, 1.0)
    assert np.allclose(blend(photo, overlay, 0.0), photo)
    full = blend(photo, overlay, 1.0)
    assert np.allclose(full[:2], (0, 1, 0)) and np.allclose(full[2:], 0.5)  # uncovered pixels stay the photo


def test_turntable_gif(example_glb, tmp_path):
    path = turntable_gif(example_glb, tmp_path / "t.gif", frames=6, size=64)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 6 and gif.size == (64, 64) and gif.info.get("loop") == 0
        first = np.asarray(gif.convert("RGB"))
        gif.seek(3)
        assert np.abs(np.asarray(gif.convert("RGB")).astype(int) - first).max() > 0  # it turns
