"""Image conditioning: pixel back-projection and (elsewhere in this package) DINOv3/NAF features.

The camera model and frames are :mod:`pixal3d.core.camera`; back-projection is
:mod:`pixal3d.conditioning.backprojection`.
"""

from __future__ import annotations

from pixal3d.conditioning.backprojection import (
    backproject_dense,
    backproject_dense_multiview,
    backproject_sparse,
    backproject_sparse_multiview,
    bilinear_taps,
    grid_points,
    normalize_pixels,
    project_points,
    sampling_grid,
    voxel_world_points,
)

__all__ = [
    "grid_points", "voxel_world_points",
    "project_points", "normalize_pixels", "sampling_grid", "backproject_dense", "backproject_sparse",
    "bilinear_taps", "backproject_dense_multiview", "backproject_sparse_multiview",
]
