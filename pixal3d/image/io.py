"""Image loading: one PIL image in RGB or RGBA from any common file, or a clear one-line error."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pixal3d.errors import UserError, log

#: Largest accepted image (pixels), Pillow's own decompression-bomb threshold (~178 megapixels).
MAX_IMAGE_PIXELS = 178_956_970

_HIGH_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


def _to_8bit(image: Image.Image) -> Image.Image:
    """Greyscale 16-bit / 32-bit int / float → 8-bit RGB. Integer modes are read as 16-bit full range
    (``/257``); float images as ``[0, 1]`` when their maximum is ≤ 1, else as 16-bit."""
    arr = np.asarray(image).astype(np.float64)
    if image.mode == "F" and np.nanmax(arr, initial=0.0) <= 1.0:
        arr = arr * 255.0
    else:
        arr = arr / 257.0
    grey = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def normalize_mode(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to ``RGBA`` (when it carries transparency) or ``RGB``."""
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image
    if mode in _HIGH_BIT_MODES:
        return _to_8bit(image)
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("LA", "PA", "La", "RGBa"):
        return image.convert("RGBA")
    if mode in ("L", "1") and "transparency" in image.info:
        return image.convert("RGBA")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, ...


def _check_size(image: Image.Image, source: str) -> None:
    w, h = image.size
    if w < 1 or h < 1:
        raise UserError(f"image {source} has no pixels ({w}x{h})")
    if w * h > MAX_IMAGE_PIXELS:
        raise UserError(f"image {source} is too large: {w}x{h} = {w * h} pixels (limit {MAX_IMAGE_PIXELS}, a "
                        f"decompression-bomb guard); scale it down first, 1024 pixels a side is plenty")


def load_image(source: str | os.PathLike | Image.Image) -> Image.Image:
    """Load an image as PIL ``RGB`` or ``RGBA`` (uint8), upright.

    EXIF orientation is applied; palette, greyscale, 16-bit (``I;16``/``I``), float, CMYK and
    grey+alpha images are converted (transparency kept as RGBA). Missing, empty, unreadable or
    oversized (> :data:`MAX_IMAGE_PIXELS`, a decompression-bomb guard) files raise :class:`UserError`.
    """
    if isinstance(source, Image.Image):
        _check_size(source, "(in memory)")
        return normalize_mode(ImageOps.exif_transpose(source))
    path = Path(source)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not an image file; give one image (PNG, JPEG or WebP)")
    if not path.is_file():
        raise UserError(f"image file not found: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"image file is empty: {path} (0 bytes); copy or export it again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_size(image, str(path))  # header only: nothing decoded yet
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    log.warning(f"{path.name} is animated ({frames} frames); using the first frame")
                image.seek(0)
                image.load()
                image = ImageOps.exif_transpose(image)
                return normalize_mode(image).copy()
    except UserError:
        raise
    except Image.DecompressionBombError as exc:
        raise UserError(f"image {path} is too large: {str(exc).split(',')[0]} (a decompression-bomb guard); "
                        f"scale it down first, 1024 pixels a side is plenty") from exc
    except UnidentifiedImageError as exc:
        raise UserError(f"cannot read image {path}: not a raster image format Pillow can decode "
                        f"(use PNG, JPEG or WebP; vector files such as SVG or PDF must be rendered first)") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read image {path}: {reason} (the file is damaged or incomplete; "
                        f"export or download it again)") from exc
