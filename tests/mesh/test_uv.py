from __future__ import annotations

import numpy as np
import trimesh

from pixal3d.export.bake import rasterize_uv
from pixal3d.mesh.uv import unwrap


def _uv_area(uvs, faces):
    t = uvs[faces].astype(np.float64)
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def test_chunked_unwrap_is_a_valid_atlas():
    mesh = trimesh.creation.torus(0.3, 0.1, major_sections=48, minor_sections=24)  # 2304 faces
    layout = unwrap(mesh.vertices, mesh.faces, texture_size=256, chunk_faces=500)  # several chunks
    assert layout.faces.shape == mesh.faces.shape
    assert layout.uvs.min() >= 0 and layout.uvs.max() <= 1
    # split vertices map back to the input vertices, faces keep their input order
    np.testing.assert_allclose(layout.vertices, mesh.vertices[layout.vmap], atol=1e-6)
    np.testing.assert_allclose(layout.vertices[layout.faces], mesh.vertices[mesh.faces], atol=1e-6)
    area = _uv_area(layout.uvs, layout.faces)
    assert (np.abs(area) > 0).all()
    # charts do not overlap: covered texels ≈ summed triangle area (overlaps would cover less)
    size = 256
    face_id, _ = rasterize_uv(layout.uvs, layout.faces, size)
    covered = (face_id >= 0).sum() / size**2
    assert abs(covered - np.abs(area).sum()) < 0.03
    assert np.abs(area).sum() > 0.3  # the packing uses the texture
