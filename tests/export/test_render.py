from __future__ import annotations

import math

import numpy as np
import trimesh

from pixal3d.export.render import RenderMesh, ViewCamera, look_at, rasterize, render


def test_rasterize_covers_triangle_area_and_interpolates():
    xy = np.array([[2.0, 2.0], [60.0, 2.0], [2.0, 40.0]])
    face_id, bary = rasterize(xy, np.array([[0, 1, 2]]), 64, 64)
    assert abs((face_id == 0).sum() - 0.5 * 58 * 38) < 58 + 38  # area up to the boundary texels
    # barycentrics reproduce the pixel centre
    r, c = np.nonzero(face_id == 0)
    pos = bary[r, c] @ xy
    np.testing.assert_allclose(pos, np.stack([c + 0.5, r + 0.5], 1), atol=1e-4)


def test_zbuffer_keeps_nearest():
    xy = np.array([[0, 0], [32, 0], [0, 32], [0, 0], [32, 0], [0, 32]], dtype=float)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    for near, far in ((0, 1), (1, 0)):
        depth = np.array([1.0] * 3 + [2.0] * 3) if near == 0 else np.array([2.0] * 3 + [1.0] * 3)
        face_id, _ = rasterize(xy, faces, 32, 32, depth=depth)
        assert set(np.unique(face_id[face_id >= 0])) == {near}


def test_render_cube_silhouette_matches_projection():
    box = trimesh.creation.box(extents=(0.5, 0.5, 0.5))
    mesh = RenderMesh(box.vertices, box.faces, None, None, np.array([1, 0, 0, 1], dtype=np.float32))
    d, fov = 2.0, math.radians(40)
    cam = ViewCamera(look_at(np.array([0, 0, d]), np.zeros(3)), fov)
    mask = render([mesh], cam, 128, "mask")
    f = 128 / (2 * math.tan(fov / 2))
    half = f * 0.25 / (d - 0.25)  # the front face's half-width in pixels
    assert abs(mask.sum() - (2 * half) ** 2) < 4 * 2 * half
    shaded = render([mesh], cam, 128)
    centre = shaded[64, 64]
    assert centre[0] > 0.9 and centre[1] < 0.05 and centre[3] == 1.0  # red, lit head-on
    assert (shaded[0, 0, :3] == 1.0).all()  # white background
