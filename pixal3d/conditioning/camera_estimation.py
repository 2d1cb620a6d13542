"""The picture's camera (field of view) and depth estimated with MoGe-2, when the user has installed it.

MoGe-2 (``moge`` package, installed from its GitHub repository; weights ``model.pt`` of
``Ruicheng/moge-2-vitl`` in the ``moge`` model folder) predicts, for an RGB picture, normalised intrinsics
(``K`` divided by the image size), a metric depth map (camera z, OpenCV: z forward) and a validity mask. The
horizontal FOV is ``2·atan(W / (2·fx))`` with ``fx = K[0,0]·W``. Without the package or the weights the
estimators return ``None`` and the caller falls back (the default FOV; the scene's ground-plane rule).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
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


def _moge_infer(image: Image.Image, device: torch.device | None, folder: Path | None) -> dict | None:
    """MoGe-2's raw output for ``image`` (RGB, any size), or ``None`` without the package or the weights."""
    folder = folder or component_path("moge")
    if not moge_available(folder):
        return None
    from moge.model.v2 import MoGeModel  # the user's own install; never downloaded by us

    model = MoGeModel.from_pretrained(str(folder / "model.pt")).to(device).eval()
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).to(device)
    with torch.no_grad():
        return model.infer(pixels)


def estimate_fov(image: Image.Image, device: torch.device | None, folder: Path | None = None) -> float | None:
    """Horizontal FOV (radians) of the preprocessed square RGB crop, or ``None`` if MoGe-2 is unavailable."""
    output = _moge_infer(image, device, folder)
    return None if output is None else fov_from_normalized_intrinsics(output["intrinsics"].cpu())


@dataclass
class DepthEstimate:
    """A picture's estimated geometry: ``depth [H, W]`` float32 camera z (metres for MoGe-2; NaN where the
    estimate is invalid) and the horizontal ``fov_x`` (radians) it was estimated with."""

    depth: np.ndarray
    fov_x: float


def estimate_depth(image: Image.Image, device: torch.device | None = None,
                   folder: Path | None = None) -> DepthEstimate | None:
    """MoGe-2's depth map and FOV of ``image`` (the whole picture, not a crop), or ``None`` if it is unavailable."""
    output = _moge_infer(image, device, folder)
    if output is None:
        return None
    depth = output["depth"].float().cpu().numpy()
    if output.get("mask") is not None:
        depth = np.where(output["mask"].cpu().numpy().astype(bool), depth, np.nan)
    return DepthEstimate(depth.astype(np.float32), fov_from_normalized_intrinsics(output["intrinsics"].cpu()))
