from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from pixal3d.core.camera import Camera, look_at
from pixal3d.core.render import RenderMesh, rasterize, rasterize_fragments, render


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
    cam = Camera(look_at(np.array([0, 0, d]), np.zeros(3)), fov)
    mask = render([mesh], cam, 128, "mask")
    f = 128 / (2 * math.tan(fov / 2))
    half = f * 0.25 / (d - 0.25)  # the front face's half-width in pixels
    assert abs(mask.sum() - (2 * half) ** 2) < 4 * 2 * half
    shaded = render([mesh], cam, 128)
    centre = shaded[64, 64]
    assert centre[0] > 0.9 and centre[1] < 0.05 and centre[3] == 1.0  # red, lit head-on
    assert (shaded[0, 0, :3] == 1.0).all()  # white background


def _quad(z: float, half: float, color, alpha_mode: str = "OPAQUE", **kw) -> RenderMesh:
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], dtype=np.float64)
    return RenderMesh(v, np.array([[0, 1, 2], [0, 2, 3]]), None, None, np.asarray(color, dtype=np.float32), alpha_mode, **kw)


ORTHO = Camera.orthographic(look_at(np.array([0.0, 0.0, 3.0]), np.zeros(3)), 0.5)


def test_rasterize_fragments_keeps_every_overlapping_triangle():
    xy = np.array([[0, 0], [32, 0], [0, 32]], dtype=float)
    pixel, face, bary, z = rasterize_fragments(np.concatenate([xy, xy]), np.array([[0, 1, 2], [3, 4, 5]]), 32, 32,
                                               depth=np.array([1.0] * 3 + [2.0] * 3))
    assert (face == 0).sum() == (face == 1).sum() > 0
    assert np.allclose(z[face == 0], 1.0) and np.allclose(z[face == 1], 2.0)
    np.testing.assert_allclose(bary.sum(1), 1.0)


def test_blend_is_order_independent_and_mask_cuts_holes():
    red, green = _quad(0.0, 0.25, [1, 0, 0, 1]), _quad(0.1, 0.25, [0, 1, 0, 0.5], "BLEND")
    a, b = render([red, green], ORTHO, 32, "albedo"), render([green, red], ORTHO, 32, "albedo")
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a[16, 16], [0.5, 0.5, 0.0, 1.0], atol=1e-6)  # half green over red
    # straight alpha on a transparent background: the blend layer alone keeps its colour and alpha
    np.testing.assert_allclose(render([green], ORTHO, 32, "albedo", background=None)[16, 16], [0, 1, 0, 0.5], atol=1e-6)
    # a MASK layer below its cutoff is a hole: the red quad behind it shows
    hole = _quad(0.1, 0.25, [0, 0, 1, 0.3], "MASK")
    np.testing.assert_allclose(render([red, hole], ORTHO, 32, "albedo")[16, 16], [1, 0, 0, 1], atol=1e-6)
    assert render([hole], ORTHO, 32, "mask").sum() == 0


def test_smooth_normals_metallic_shading_and_supersampling():
    plain = _quad(0.0, 0.25, [0.8, 0.8, 0.8, 1])
    tilted = _quad(0.0, 0.25, [0.8, 0.8, 0.8, 1], normals=np.tile([0.0, -0.6, 0.8], (4, 1)))
    metal = _quad(0.0, 0.25, [0.8, 0.8, 0.8, 1], metallic=1.0, roughness=1.0)
    lit = [render([m], ORTHO, 32)[16, 16, 0] for m in (plain, tilted, metal)]
    assert lit[1] < lit[0] - 0.1  # the vertex normals, not the face normal, are shaded (the key light is above)
    assert lit[2] < lit[0] - 0.2  # a rough metal has no diffuse term
    # 4× supersampling: edge pixels get fractional coverage; the quad spans [9.6, 22.4] px, which holds
    # 52 sub-pixel centres per axis
    half = _quad(0.0, 0.2, [1, 1, 1, 1])
    alpha = render([half], ORTHO, 32, "albedo", supersample=4)[..., 3]
    assert 0.2 < alpha[9, 16] < 0.6 and alpha[16, 16] == 1.0  # the edge y = 9.6 px crosses row 9
    assert alpha.sum() == (52 / 4) ** 2


def test_normal_and_depth_passes_share_one_rasterisation():
    from pixal3d.core.render import render_passes

    d = 3.0
    cam = Camera(look_at(np.array([0.0, 0.0, d]), np.zeros(3)), math.radians(30))
    # a quad at z = 0.1 tilted about x: its geometric normal (0, -sin t, cos t) faces the camera
    t = math.radians(20)
    v = np.array([[-0.2, -0.2, 0.0], [0.2, -0.2, 0.0], [0.2, 0.2, 0.0], [-0.2, 0.2, 0.0]])
    rot = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
    v = v @ rot.T + [0.0, 0.0, 0.1]
    faces = np.array([[0, 2, 1], [0, 3, 2]])  # wound away from the camera: the pass turns it toward the eye
    colors = np.tile([0.2, 0.4, 0.6, 1.0], (4, 1))
    mesh = RenderMesh(v, faces, None, None, np.ones(4, dtype=np.float32), vertex_colors=colors,
                      normals=np.tile([0.0, 0.0, 1.0], (4, 1)))
    out = render_passes([mesh], cam, 64, ("normal", "depth", "mask", "albedo"), background=None)
    assert set(out) == {"normal", "depth", "mask", "albedo"}
    n = out["normal"][32, 32, :3] * 2 - 1
    np.testing.assert_allclose(n, [0.0, -math.sin(t), math.cos(t)], atol=1e-5)  # geometric, not the vertex normals
    assert out["depth"][32, 32] == pytest.approx(d - 0.1, abs=6e-3)  # half a pixel below the axis on the tilt
    assert np.isinf(out["depth"][0, 0]) and not out["mask"][0, 0]
    np.testing.assert_array_equal(out["mask"], np.isfinite(out["depth"]))
    np.testing.assert_allclose(out["albedo"][32, 32, :3], [0.2, 0.4, 0.6], atol=1e-6)  # vertex colours
    assert np.array_equal(render([mesh], cam, 64, "mask"), out["mask"])
