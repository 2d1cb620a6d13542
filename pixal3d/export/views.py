"""Pictures of a result for people: the alignment view (the output seen through the input camera, laid over the
input photo) and a turntable animation (GIF, Pillow's encoder). Both use the CPU renderer
(:mod:`pixal3d.core.render`) and read only the written GLB, so they show what a user downloads.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from PIL import Image

from pixal3d.core.render import glb_camera, load_render_meshes, render, turntable_cameras
from pixal3d.utils.files import atomic_output

#: backdrop of photos with transparency in the alignment view (mid grey) and of the turntable frames
BACKDROP = (0.5, 0.5, 0.5)
TURNTABLE_BACKGROUND = (0.86, 0.86, 0.88)


def render_through_camera(glb: str | Path, width: int, height: int, fov_x: float | None = None,
                          max_side: int = 768, meshes=None) -> np.ndarray:
    """The GLB rendered through its camera node into a ``width × height`` picture → RGBA float ``[H, W, 4]``
    (straight alpha = coverage).

    The GLB's camera is square; ``fov_x`` is the picture's horizontal FOV when it is not the camera's own (a
    multi-view first view that is not square: the square render then spans ``max(W, H)`` with the FOV scaled to
    it, and the picture is its centre). Rendered at most ``max_side`` pixels a side, then resized.
    """
    camera = glb_camera(glb)
    side = max(width, height)
    fov_side = camera.fov_y if fov_x is None else 2.0 * math.atan(math.tan(fov_x / 2.0) * side / width)
    size = min(side, max_side)
    rgba = render(meshes if meshes is not None else load_render_meshes(glb),
                  dataclasses.replace(camera, fov_x=fov_side, fov_y=fov_side), size, background=None)
    image = Image.fromarray(np.round(np.clip(rgba, 0, 1) * 255).astype(np.uint8), "RGBA")
    if size != side:
        image = image.resize((side, side), Image.Resampling.LANCZOS)
    left, top = (side - width) // 2, (side - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.float32) / 255.0


def photo_rgb(picture: Image.Image) -> np.ndarray:
    """A picture as RGB float ``[H, W, 3]``, transparency composited over :data:`BACKDROP`."""
    rgba = np.asarray(picture.convert("RGBA"), dtype=np.float32) / 255.0
    return rgba[..., :3] * rgba[..., 3:] + np.asarray(BACKDROP, dtype=np.float32) * (1.0 - rgba[..., 3:])


def blend(photo: np.ndarray, overlay: np.ndarray, opacity: float) -> np.ndarray:
    """``overlay`` (RGBA, straight alpha) over ``photo`` (RGB) at ``opacity`` ∈ [0, 1] → RGB float."""
    a = np.clip(float(opacity), 0.0, 1.0) * overlay[..., 3:]
    return photo * (1.0 - a) + overlay[..., :3] * a


def save_rgb(image: np.ndarray, path: str | Path) -> Path:
    """Write float RGB(A) in [0, 1] as an 8-bit PNG, atomically."""
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    with atomic_output(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
    return Path(path)


def turntable_gif(glb: str | Path, path: str | Path, frames: int = 24, size: int = 256, seconds: float = 3.0,
                  meshes=None) -> Path:
    """A looping GIF of ``frames`` views around +Y (:func:`~pixal3d.core.render.turntable_cameras`: the first
    from the input side, 20° above), ``size²`` pixels, one turn in ``seconds``; written atomically."""
    meshes = meshes if meshes is not None else load_render_meshes(glb)
    pictures = []
    for camera in turntable_cameras(meshes, frames):
        rgba = render(meshes, camera, size, background=TURNTABLE_BACKGROUND)
        pictures.append(Image.fromarray(np.round(np.clip(rgba[..., :3], 0, 1) * 255).astype(np.uint8), "RGB"))
    palette = [p.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) for p in pictures]
    with atomic_output(path) as tmp:
        palette[0].save(tmp, format="GIF", save_all=True, append_images=palette[1:], loop=0,
                        duration=max(20, int(round(1000 * seconds / frames))), disposal=1, optimize=False)
    return Path(path)
