"""Image conditioning: cameras, pixel back-projection and (elsewhere in this package) DINOv3/NAF features.

Frames are documented in :mod:`pixal3d.conditioning.camera`; back-projection in
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
from pixal3d.conditioning.camera import (
    DEFAULT_DISTANCE,
    DEFAULT_FOV_X,
    Camera,
    PinholeCamera,
    canonicalize_views,
    distance_from_fov,
    focal_pixels,
    front_view_matrix,
    voxel_to_world_matrix,
)

__all__ = [
    "Camera", "PinholeCamera", "DEFAULT_FOV_X", "DEFAULT_DISTANCE", "distance_from_fov", "focal_pixels",
    "front_view_matrix", "voxel_to_world_matrix", "canonicalize_views", "grid_points", "voxel_world_points",
    "project_points", "normalize_pixels", "sampling_grid", "backproject_dense", "backproject_sparse",
    "bilinear_taps", "backproject_dense_multiview", "backproject_sparse_multiview",
]
