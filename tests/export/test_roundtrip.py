"""A real textured mesh → voxels → GLB, re-rendered against the source."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from pixal3d.core.camera import Camera
from pixal3d.core.render import glb_camera, load_render_meshes, render, turntable_cameras
from pixal3d.export.glb import ExportOptions, asset_to_glb
from pixal3d.mesh.io import load_mesh
from pixal3d.mesh.voxelize import voxelize
from tests.clients import assert_valid_gltf
from tests.helpers import EVALSETS

SPOT = EVALSETS / "meshes" / "keenan_spot.glb"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-12))


@pytest.mark.skipif(not SPOT.exists(), reason="evalsets not available")
def test_spot_roundtrip(tmp_path):
    mesh = load_mesh(SPOT)
    fov = math.radians(40.0)
    camera = Camera.front(fov, 1.0 / (2.0 * math.tan(fov / 2.0)), 1.0)
    asset, _ = voxelize(mesh, 64, camera=camera)
    out = tmp_path / "spot.glb"
    asset_to_glb(asset, out, ExportOptions(texture_size=512, decimation_target=20_000), progress=False)
    assert_valid_gltf(out)

    source = load_render_meshes(SPOT)
    for m in source:  # the source in the voxel frame, as voxelize saw it
        m.vertices = trimesh.transform_points(m.vertices, mesh.transform)
    exported = load_render_meshes(out)
    # the stored camera reproduces the input framing
    cam = glb_camera(out)
    a, b = render(source, cam, 128, "mask"), render(exported, cam, 128, "mask")
    assert (a & b).sum() / (a | b).sum() >= 0.97
    # texture fidelity from 4 views around +Y (R=256 reaches ≥ 25 dB, see docs/export.md)
    scores = [psnr(render(source, c, 128)[..., :3], render(exported, c, 128)[..., :3])
              for c in turntable_cameras(source, 4)]
    assert min(scores) >= 24.0, scores
