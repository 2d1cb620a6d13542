"""Synthetic decoded assets for the export tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from pixal3d.core.asset import VoxelAsset
from pixal3d.core.camera import Camera

FOV = math.radians(40.0)
DISTANCE = 1.0 / (2.0 * math.tan(FOV / 2.0))


def sphere_asset(alpha: str = "opaque", resolution: int = 32) -> VoxelAsset:
    """A stored sphere mesh (radius 0.3, shifted to +x so orientation is visible) in voxels carrying
    a colour ramp; alpha ``opaque`` (1), ``binary`` (0 for y < 0, else 1) or ``soft`` (0.5)."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    vertices = sphere.vertices + [0.1, 0.0, 0.0]
    grid = np.stack(np.meshgrid(*[np.arange(resolution)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = (grid + 0.5) / resolution - 0.5
    near = np.abs(np.linalg.norm(centres - [0.1, 0, 0], axis=1) - 0.3) < 2.0 / resolution
    coords, centres = grid[near], centres[near]
    attrs = np.zeros((len(coords), 6), dtype=np.float32)
    attrs[:, 0:3] = np.clip(centres + 0.5, 0, 1)
    attrs[:, 3], attrs[:, 4] = 0.2, 0.7
    attrs[:, 5] = {"opaque": 1.0, "soft": 0.5}.get(alpha, 0.0)
    if alpha == "binary":
        attrs[:, 5] = (centres[:, 1] >= 0).astype(np.float32)
    return VoxelAsset(resolution=resolution, coords=coords.astype(np.int32), attrs=attrs,
                      mesh_vertices=vertices.astype(np.float32), mesh_faces=sphere.faces.astype(np.int32),
                      camera=Camera.front(FOV, DISTANCE, 1.0))


@pytest.fixture
def make_asset():
    return sphere_asset
