"""Input images: robust loading and the official Pixal3D preprocessing (background removal, crop)."""

from __future__ import annotations

from pixal3d.image.io import MAX_IMAGE_PIXELS, load_image
from pixal3d.image.preprocess import preprocess_image

__all__ = ["load_image", "preprocess_image", "MAX_IMAGE_PIXELS"]
