"""Official Pixal3D ``preprocess_image`` (spec §9): alpha or background removal, 1.1x square crop on black."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from pixal3d.errors import UserError
from pixal3d.image.background import (
    birefnet_available,
    remove_background_birefnet,
    remove_background_fallback,
)
from pixal3d.image.io import load_image

MAX_SIDE = 1024
CROP_MARGIN = 1.1  # Pixal3D (TRELLIS.2 uses 1.0)
ALPHA_THRESHOLD = 0.8 * 255
BACKGROUNDS = ("auto", "alpha", "birefnet", "fallback")
#: smallest accepted image side, pixels (a smaller picture holds no recognisable object)
MIN_SIDE = 16


def preprocess_image(image: str | os.PathLike | Image.Image, background: str = "auto",
                     device: str = "cpu") -> tuple[Image.Image, dict]:
    """Cut out the object and return ``(PIL RGB square crop composited on black, info)``.

    Steps (official): an RGBA input that is not fully opaque keeps its alpha; otherwise the background
    is removed (``background='auto'``: BiRefNet/RMBG-2.0 from ``models/RMBG-2.0`` when present, else
    the offline fallback; or force ``'birefnet'`` / ``'fallback'``; ``'alpha'`` requires real alpha).
    Before that the image is LANCZOS-downscaled so its longest side is ≤ 1024 (never upscaled). The
    bounding box of ``alpha > 0.8·255`` gives centre and side ``int(max(w, h) · 1.1)``; the crop
    ``centre ± side//2`` (outside the image: transparent black) is composited ``rgb·a`` on black.

    ``info``: ``background`` ('alpha' | 'birefnet' | 'fallback'), ``input_size`` (W, H) after loading,
    ``working_size`` after the downscale, ``bbox`` (x0, y0, x1, y1) of the opaque pixels in working
    coordinates, ``crop_box`` (PIL box), ``output_size`` (side, side).
    """
    if background not in BACKGROUNDS:
        raise UserError(f"unknown background mode {background!r} (use one of {', '.join(BACKGROUNDS)})")
    image = load_image(image)
    input_size = image.size
    if min(image.size) < MIN_SIDE:
        raise UserError(f"the image is only {image.width}x{image.height} pixels; use a picture of the object at "
                        f"least {MIN_SIDE} pixels on each side (512 or more works best)")
    has_alpha = image.mode == "RGBA" and not bool(np.all(np.asarray(image.getchannel("A")) == 255))
    scale = min(1.0, MAX_SIDE / max(image.size))
    if scale < 1:
        image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.LANCZOS)
    if background == "alpha" and not has_alpha:
        raise UserError("background='alpha' needs an image with transparency, but this one is fully opaque")
    if has_alpha and background in ("auto", "alpha"):
        used, cutout = "alpha", image
    elif background == "birefnet" or (background == "auto" and birefnet_available()):
        used, cutout = "birefnet", remove_background_birefnet(image.convert("RGB"), device=device)
    else:
        used, cutout = "fallback", remove_background_fallback(image.convert("RGB"))

    rgba = np.asarray(cutout.convert("RGBA"))
    ys, xs = np.nonzero(rgba[:, :, 3] > ALPHA_THRESHOLD)
    if len(xs) == 0:
        if used == "alpha":
            raise UserError("no object found: the image is (almost) fully transparent (no alpha above 0.8); give an "
                            "RGBA cut-out with the object opaque, or a photo of it on a plain background")
        raise UserError(f"no object found: background removal ({used}) left nothing of this opaque image; give an "
                        "RGBA cut-out of the object, or a photo of it on a plain background")
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    side = int(max(bbox[2] - bbox[0], bbox[3] - bbox[1]) * CROP_MARGIN)
    crop_box = (cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2)
    crop = np.asarray(cutout.convert("RGBA").crop(crop_box)).astype(np.float32) / 255
    rgb = crop[:, :, :3] * crop[:, :, 3:4]
    out = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    info = {"background": used, "input_size": input_size, "working_size": cutout.size, "bbox": bbox,
            "crop_box": crop_box, "output_size": out.size}
    return out, info
