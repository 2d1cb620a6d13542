"""Photo-like augmentation of conditioning images: what separates a clean render from a photo after matting.

:func:`photo_augment` takes a straight-alpha RGBA render and applies, each with its own probability
(:data:`PHOTO_AUGMENT`):

* **matting edges** — the alpha eroded or dilated by one pixel and feathered (Gaussian σ 0.3–1 px), as a
  background remover leaves it; dilated pixels take the colour the render stored there (black), a dark fringe;
* **colour** — brightness × U(0.75, 1.25), contrast about the object's mean × U(0.8, 1.2), saturation
  × U(0.7, 1.3), white balance per channel × U(0.92, 1.08), gamma U(0.8, 1.25);
* **blur** — Gaussian σ U(0.3, 1.2) px (focus, motion, resampling);
* **sensor noise** — Gaussian σ U(0.005, 0.03);
* **JPEG** — quality U(30, 90) on the colour channels.

The geometry never moves (no crop, shift or flip): the camera of the view stays exact, so the
back-projection targets stay right. Arrays: ``[S,S,4]`` uint8 in and out.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

#: probability of each augmentation
PHOTO_AUGMENT = {"matting": 0.5, "colour": 0.8, "blur": 0.25, "noise": 0.25, "jpeg": 0.3}


def _gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


def photo_augment(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Augment a straight-alpha render ``[S,S,4]`` uint8 with draws from ``rng`` (module docstring) → ``[S,S,4]``
    uint8. The same generator state gives the same image."""
    draw = {name: rng.random() < p for name, p in PHOTO_AUGMENT.items()}
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    alpha = rgba[..., 3].astype(np.float32) / 255.0
    if draw["matting"]:
        kernel = np.ones((3, 3), np.uint8)
        alpha = cv2.erode(alpha, kernel) if rng.random() < 0.5 else cv2.dilate(alpha, kernel)
        alpha = _gaussian(alpha, float(rng.uniform(0.3, 1.0)))
    if draw["colour"]:
        inside = alpha > 0.5
        mean = rgb[inside].mean(0) if inside.any() else rgb.reshape(-1, 3).mean(0)
        rgb = (rgb - mean) * rng.uniform(0.8, 1.2) + mean
        grey = rgb.mean(-1, keepdims=True)
        rgb = grey + (rgb - grey) * rng.uniform(0.7, 1.3)
        rgb = rgb * rng.uniform(0.75, 1.25) * rng.uniform(0.92, 1.08, size=3).astype(np.float32)
        rgb = np.clip(rgb, 0.0, 1.0) ** rng.uniform(0.8, 1.25)
    if draw["blur"]:
        sigma = float(rng.uniform(0.3, 1.2))
        premultiplied = _gaussian(np.ascontiguousarray(rgb * alpha[..., None]), sigma)
        alpha = _gaussian(alpha, sigma)
        rgb = premultiplied / np.maximum(alpha[..., None], 1e-4)
    if draw["noise"]:
        rgb = rgb + rng.normal(0.0, rng.uniform(0.005, 0.03), size=rgb.shape).astype(np.float32)
    out = np.empty_like(rgba)
    out[..., :3] = np.round(np.clip(rgb, 0.0, 1.0) * 255)
    out[..., 3] = np.round(np.clip(alpha, 0.0, 1.0) * 255)
    if draw["jpeg"]:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(out[..., :3])).save(buffer, format="JPEG", quality=int(rng.integers(30, 91)))
        out[..., :3] = np.asarray(Image.open(buffer).convert("RGB"))
    return out
