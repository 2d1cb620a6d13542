"""Instance masks of the objects in one picture: a label image, a folder of mask files, or connected components.

Every reader returns ``[(name, mask)]`` with ``mask [H, W]`` bool at the picture's size, objects in a stable
order; :class:`UserError` (one line) for unreadable files, size mismatches or no object at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from pixal3d.errors import UserError
from pixal3d.image.io import load_image

#: components (``--auto``) smaller than this fraction of the picture are dropped
MIN_AREA_FRACTION = 0.002
_MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _check_size(mask: np.ndarray, size: tuple[int, int], what: str) -> None:
    if (mask.shape[1], mask.shape[0]) != tuple(size):
        raise UserError(f"{what} is {mask.shape[1]}x{mask.shape[0]} but the image is {size[0]}x{size[1]}")


def _nonempty(masks: list[tuple[str, np.ndarray]], where: str) -> list[tuple[str, np.ndarray]]:
    masks = [(n, m) for n, m in masks if m.any()]
    if not masks:
        raise UserError(f"no object found in {where}")
    return masks


def masks_from_label_image(path: str | os.PathLike, size: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """Objects of a label image (one integer per object, 0 = background; an RGB label image uses one colour per
    object, black = background), in increasing label order, named ``object_00``, ``object_01``, …"""
    image = load_image(path)
    arr = np.asarray(image)
    if arr.ndim == 3:
        rgb = arr[..., :3].astype(np.int64)
        labels = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        if arr.shape[2] == 4:
            labels = np.where(arr[..., 3] > 127, labels, 0)
    else:
        labels = arr.astype(np.int64)
    _check_size(labels, size, f"label image {path}")
    values = [v for v in np.unique(labels) if v != 0]
    return _nonempty([(f"object_{i:02d}", labels == v) for i, v in enumerate(values)], f"label image {path}")


def masks_from_folder(folder: str | os.PathLike, size: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """One object per image file of ``folder`` (sorted by name, named by the file stem): its alpha when it has
    real transparency, else its luminance, thresholded at half."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"mask folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _MASK_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"no mask images in {folder}")
    masks = []
    for path in files:
        image = load_image(path)
        arr = np.asarray(image)
        if image.mode == "RGBA" and arr[..., 3].min() < 255:
            mask = arr[..., 3] > 127
        else:
            mask = np.asarray(image.convert("L")) > 127
        _check_size(mask, size, f"mask {path.name}")
        masks.append((path.stem, mask))
    return _nonempty(masks, str(folder))


def masks_from_alpha(alpha: np.ndarray, min_area_fraction: float = MIN_AREA_FRACTION) -> list[tuple[str, np.ndarray]]:
    """Connected components (8-connected) of ``alpha [H, W]`` (float in [0, 1] or uint8) above half, larger than
    ``min_area_fraction`` of the picture, ordered left to right by centroid and named ``object_00``, …"""
    alpha = np.asarray(alpha)
    solid = alpha > (127 if alpha.dtype == np.uint8 else 0.5)
    labels, count = ndimage.label(solid, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        raise UserError("no object found: the cut-out is empty")
    areas = ndimage.sum_labels(solid, labels, index=np.arange(1, count + 1))
    keep = [i + 1 for i, a in enumerate(areas) if a >= min_area_fraction * solid.size]
    if not keep:
        raise UserError(f"no object larger than {min_area_fraction:.1%} of the image")
    centres = ndimage.center_of_mass(solid, labels, keep)
    order = sorted(range(len(keep)), key=lambda i: centres[i][1])
    return [(f"object_{j:02d}", labels == keep[i]) for j, i in enumerate(order)]

