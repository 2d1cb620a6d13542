"""Automatic field-of-view estimation with MoGe-2, when the user has installed it.

MoGe-2 (``moge`` package, installed from its GitHub repository; weights ``model.pt`` of
``Ruicheng/moge-2-vitl`` in the ``moge`` model folder) predicts normalised intrinsics of the
preprocessed crop; the horizontal FOV is ``2·atan(W / (2·fx))`` with ``fx = K[0,0]·W``. Without the
package or the weights :func:`estimate_fov` returns ``None`` and the caller uses a default FOV.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixal3d.paths import component_path


def fov_from_normalized_intrinsics(intrinsics: np.ndarray | torch.Tensor) -> float:
    """Horizontal FOV (radians) from a ``[3, 3]`` intrinsics matrix normalised by the image size."""
    fx = float(intrinsics[0][0])
    if not fx > 0:
        raise ValueError(f"focal length must be positive, got {fx}")
    return 2.0 * math.atan(1.0 / (2.0 * fx))


def moge_available(folder: Path | None = None) -> bool:
    """Whether the ``moge`` package imports and the MoGe-2 weights are present."""
    folder = folder or component_path("moge")
    return importlib.util.find_spec("moge") is not None and (folder / "model.pt").is_file()


def estimate_fov(image: Image.Image, device: torch.device, folder: Path | None = None) -> float | None:
    """Horizontal FOV (radians) of the preprocessed square RGB crop, or ``None`` if MoGe-2 is unavailable."""
    folder = folder or component_path("moge")
    if not moge_available(folder):
        return None
    from moge.model.v2 import MoGeModel  # the user's own install; never downloaded by us

    model = MoGeModel.from_pretrained(str(folder / "model.pt")).to(device).eval()
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).to(device)
    with torch.no_grad():
        intrinsics = model.infer(pixels)["intrinsics"]
    return fov_from_normalized_intrinsics(intrinsics.cpu())
