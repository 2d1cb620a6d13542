"""load_image: modes, EXIF orientation and every bad-input path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import pixal3d.image.io as image_io
from pixal3d.errors import UserError
from pixal3d.image import load_image


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_palette_grey_and_alpha_modes(tmp_path):
    rgb = Image.fromarray(np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3, "RGB")
    p = rgb.quantize(8)
    assert load_image(_save(p, tmp_path / "p.png")).mode == "RGB"
    p.info["transparency"] = 0
    loaded = load_image(_save(p, tmp_path / "pt.png", transparency=0))
    assert loaded.mode == "RGBA" and (np.asarray(loaded)[..., 3] == 0).any()
    grey = Image.fromarray(np.full((5, 7), 77, np.uint8), "L")
    out = load_image(_save(grey, tmp_path / "l.png"))
    assert out.mode == "RGB" and (np.asarray(out) == 77).all()
    la = Image.merge("LA", [grey, Image.fromarray(np.full((5, 7), 9, np.uint8))])
    out = load_image(_save(la, tmp_path / "la.png"))
    assert out.mode == "RGBA" and (np.asarray(out)[..., 3] == 9).all() and (np.asarray(out)[..., 0] == 77).all()
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red
    out = load_image(_save(cmyk, tmp_path / "c.jpg", quality=100))
    assert out.mode == "RGB" and np.abs(np.asarray(out).astype(int) - [255, 0, 0]).max() < 8


def test_16bit_and_float_greyscale(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    img16 = Image.fromarray(values)  # mode I;16
    assert img16.mode.startswith("I;16")
    out = load_image(_save(img16, tmp_path / "g16.png"))
    assert out.mode == "RGB"
    assert np.asarray(out)[0, :, 0].tolist() == [0, 100, 255]
    as_i = Image.fromarray(values.astype(np.int32), "I")
    assert np.asarray(load_image(as_i))[0, :, 1].tolist() == [0, 100, 255]
    as_f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    assert np.asarray(load_image(as_f))[0, :, 2].tolist() == [0, 128, 255]


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :5] = 255  # white on the left
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = load_image(_save(img, tmp_path / "o.jpg", exif=exif, quality=95))
    assert out.size == (10, 20)
    assert np.asarray(out)[:5, :, 0].mean() > 200 and np.asarray(out)[-5:, :, 0].mean() < 50  # left → top


def test_bad_files_raise_user_error(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "junk.png").write_bytes(b"\x00not an image at all" * 10)
    with pytest.raises(UserError, match="cannot read") as info:
        load_image(tmp_path / "junk.png")
    assert "\n" not in str(info.value)  # one line for the CLI
    good = _save(Image.new("RGB", (64, 64), (1, 2, 3)), tmp_path / "good.png")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(UserError, match="cannot read"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(UserError, match="is a folder"):
        load_image(tmp_path)
    monkeypatch.setattr(image_io, "MAX_IMAGE_PIXELS", 64 * 64 - 1)
    with pytest.raises(UserError, match="too large"):
        load_image(good)
    with pytest.raises(UserError, match="too large"):
        load_image(Image.new("RGB", (64, 64)))
