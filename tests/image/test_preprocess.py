"""preprocess_image: the official fixture (uint8-exact), background modes, evaluation images, bad input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from pixal3d.errors import UserError
from pixal3d.image import load_image, preprocess_image
from pixal3d.image.background import fallback_mask
from tests.helpers import EVALSETS

EVAL_IMAGES = sorted((EVALSETS / "images").glob("*"))


@pytest.fixture(autouse=True)
def _no_local_models(tmp_path, monkeypatch):
    """Tests must not pick up a BiRefNet folder that happens to exist on this machine."""
    monkeypatch.setenv("PIXAL3D_MODELS", str(tmp_path / "no-models"))


def _synthetic(case: dict) -> np.ndarray:
    """The fixture's integer-only RGBA input (formula from its JSON)."""
    H, W = case["H"], case["W"]
    y, x = np.mgrid[0:H, 0:W].astype(np.int64)
    rgb = [(7 * x + 3 * y) % 256, (x * y) % 256, (x ^ y) % 256]
    d = ((x - case["cx"]) ** 2) * case["ry"] ** 2 + ((y - case["cy"]) ** 2) * case["rx"] ** 2
    r2 = (case["rx"] * case["ry"]) ** 2
    alpha = np.where(d <= r2, 255, np.where(d <= 1.04 * r2, 200, np.where(d <= 1.09 * r2, 128, 0)))
    return np.stack([*rgb, alpha], -1).astype(np.uint8)


def test_matches_official_fixture_exactly(reference):
    fx = reference("preprocess_image")
    assert [c["name"] for c in fx.meta["cases"]] == ["small", "large_downscaled", "touching_border"]
    for case in fx.meta["cases"]:
        rgba = _synthetic(case)
        assert hashlib.sha256(rgba.tobytes()).hexdigest() == case["input_sha256"]
        if case["input_stored"]:
            assert np.array_equal(rgba, fx[f"{case['name']}.input_rgba"].numpy())
        out, info = preprocess_image(Image.fromarray(rgba, "RGBA"))
        expected = fx[f"{case['name']}.output_rgb"].numpy()
        assert out.mode == "RGB" and list(out.size) == case["output_size"]
        assert np.array_equal(np.asarray(out), expected), case["name"]
        assert info["background"] == "alpha"
    assert info["crop_box"][0] < 0  # touching_border: the crop leaves the image (transparent padding)


def test_modes_and_no_upscaling():
    rgba = np.zeros((100, 120, 4), np.uint8)
    rgba[20:60, 30:70] = (200, 100, 50, 255)
    out, info = preprocess_image(Image.fromarray(rgba, "RGBA"))
    assert info["working_size"] == (120, 100) and out.size == (42, 42)  # side int(39 * 1.1) = 42, not upscaled
    assert np.asarray(out)[21, 21].tolist() == [200, 100, 50] and np.asarray(out)[0, 0].tolist() == [0, 0, 0]
    # an opaque image goes through background removal (fallback here: no model folder)
    opaque = np.full((60, 80, 3), 240, np.uint8)
    opaque[20:40, 30:50] = (30, 60, 200)
    out, info = preprocess_image(Image.fromarray(opaque))
    assert info["background"] == "fallback"
    # the fallback's feathered edge (outermost object pixels at alpha ≈ 0.69 < 0.8) trims the box to
    # 31..48 → side int(17 * 1.1) = 18; the object colour is kept, the background is gone
    assert out.size == (18, 18) and np.asarray(out)[9, 9].tolist() == [30, 60, 200]
    assert info["bbox"] == (31, 21, 48, 38)
    # an RGBA image that is fully opaque counts as having no alpha
    out2, info2 = preprocess_image(Image.fromarray(opaque).convert("RGBA"))
    assert info2["background"] == "fallback" and np.array_equal(np.asarray(out2), np.asarray(out))
    # forcing the fallback on an image with alpha ignores the alpha
    _, info3 = preprocess_image(Image.fromarray(rgba, "RGBA"), background="fallback")
    assert info3["background"] == "fallback"


def test_bad_inputs_raise_user_error(tmp_path):
    with pytest.raises(UserError, match="transparent"):
        preprocess_image(Image.new("RGBA", (50, 40), (255, 0, 0, 0)))
    with pytest.raises(UserError, match="transparent"):
        preprocess_image(Image.new("RGBA", (50, 40), (255, 0, 0, 150)))  # nothing above 0.8·255
    with pytest.raises(UserError, match="opaque"):
        preprocess_image(Image.new("RGB", (50, 40)), background="alpha")
    with pytest.raises(UserError, match="unknown background"):
        preprocess_image(Image.new("RGB", (50, 40)), background="magic")
    with pytest.raises(UserError, match="not found"):
        preprocess_image(Image.new("RGB", (50, 40), (9, 9, 9)), background="birefnet")
    with pytest.raises(UserError, match="not found"):
        preprocess_image(tmp_path / "nope.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(UserError, match="cannot read"):
        preprocess_image(tmp_path / "bad.jpg")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_every_evaluation_image():
    assert len(EVAL_IMAGES) >= 30
    ious = []
    for path in EVAL_IMAGES:
        image = load_image(path)
        image.thumbnail((384, 384), Image.Resampling.LANCZOS)  # keep the test fast
        out, info = preprocess_image(image)
        assert out.mode == "RGB" and out.width == out.height >= 32, path.name
        assert info["background"] == ("alpha" if image.mode == "RGBA" else "fallback")
        arr = np.asarray(out)
        assert arr[:2, :2].max() == 0 and arr[-2:, -2:].max() == 0, path.name  # corners on black
        if image.mode == "RGBA":
            # as a plain product shot (object on white): the fallback must find the same object
            a = np.asarray(image)[..., 3:].astype(np.float32) / 255
            shot = (np.asarray(image)[..., :3] * a + 255 * (1 - a)).round().astype(np.uint8)
            ious.append(_iou(fallback_mask(shot) > 127, a[..., 0] > 0.5))
            out, info = preprocess_image(Image.fromarray(shot), background="fallback")
        assert info["background"] in ("alpha", "fallback")
        fg = (np.asarray(out).max(-1) > 0).mean()
        assert 0.2 < fg < 0.97, f"{path.name}: foreground fraction {fg:.2f}"
    ious = np.array(ious)
    assert ious.min() > 0.75 and ious.mean() > 0.92, f"fallback IoU mean {ious.mean():.3f} min {ious.min():.3f}"
