from __future__ import annotations

import numpy as np
import trimesh

from pixal3d.mesh.remesh import SurfaceDistance, closest_point_on_triangles, remesh_narrow_band


def test_surface_distance_is_exact():
    s = trimesh.creation.icosphere(2, radius=0.3)
    pts = np.random.default_rng(0).uniform(-0.5, 0.5, (500, 3))
    d, cp, face = SurfaceDistance(s.vertices, s.faces, spacing=0.02).query(pts)
    tri = np.asarray(s.vertices)[s.faces]
    P = np.repeat(pts, len(tri), 0)
    T = np.tile(tri, (len(pts), 1, 1))
    brute = np.linalg.norm(P - closest_point_on_triangles(P, T[:, 0], T[:, 1], T[:, 2]), axis=1).reshape(len(pts), -1)
    assert np.allclose(d, brute.min(1), atol=1e-12)
    assert np.allclose(np.linalg.norm(pts - cp, axis=1), d)
    assert np.allclose(brute[np.arange(len(pts)), face], d)


def test_remesh_gives_closed_offset_shells():
    s = trimesh.creation.torus(0.25, 0.1)
    R = 32
    v, f = remesh_narrow_band(np.asarray(s.vertices), np.asarray(s.faces), R)
    mesh = trimesh.Trimesh(v, f)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert len(mesh.split(only_watertight=False)) == 2  # outer and inner offset shells
    eps = (R + 3) / R / R
    d = SurfaceDistance(s.vertices, s.faces, spacing=0.005).query(v)[0]
    assert np.abs(d - eps).max() < 0.2 * eps
    assert mesh.volume > 0
