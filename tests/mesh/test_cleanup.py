from __future__ import annotations

import numpy as np
import trimesh

from pixal3d.mesh.cleanup import (boundary_loops, clean_mesh, fill_holes, orient_outward, remove_degenerate_faces,
                                  remove_duplicate_faces, remove_small_components)


def _sphere(radius=0.3, centre=(0, 0, 0)):
    s = trimesh.creation.icosphere(3, radius=radius)
    return np.asarray(s.vertices) + centre, np.asarray(s.faces)


def test_fill_holes_closes_small_and_keeps_big():
    v, f = _sphere()
    small = f[1:]  # one triangle removed: perimeter ≈ 3 × 0.04 · 0.3
    v_big, f_big = _sphere(radius=0.3)
    big = f_big[np.abs(v_big[f_big].mean(1)[:, 2]) < 0.25]  # both caps removed: two big loops
    perim = np.linalg.norm(np.diff(v[f[0]][[0, 1, 2, 0]], axis=0), axis=1).sum()
    v2, f2 = fill_holes(v, small, max_perimeter=perim * 1.01)
    assert len(v2) == len(v) + 1 and trimesh.Trimesh(v2, f2, process=False).is_watertight
    assert len(fill_holes(v, small, max_perimeter=perim * 0.99)[1]) == len(small)
    assert len(boundary_loops(big, len(v_big))) == 2
    v3, f3 = fill_holes(v_big, big, max_perimeter=0.03)
    assert len(f3) == len(big)


def test_orient_outward_per_component():
    va, fa = _sphere(0.2, (-0.25, 0, 0))
    vb, fb = _sphere(0.1, (0.25, 0, 0))
    v = np.concatenate([va, vb])
    f = np.concatenate([fa, fb + len(va)])
    rng = np.random.default_rng(0)
    scrambled = f.copy()
    flip = rng.random(len(f)) < 0.5
    scrambled[flip] = scrambled[flip][:, [0, 2, 1]]
    fixed = orient_outward(v, scrambled)
    for part in (slice(0, len(fa)), slice(len(fa), None)):
        mesh = trimesh.Trimesh(v, fixed[part], process=False)
        assert mesh.is_winding_consistent and mesh.volume > 0
    assert np.array_equal(np.sort(fixed, 1), np.sort(f, 1))


def test_degenerate_duplicate_and_small_components():
    v, f = _sphere()
    v = np.concatenate([v, [[0.4, 0.4, 0.4], [0.4001, 0.4, 0.4], [0.4, 0.4001, 0.4]]])
    extra = np.array([[0, 0, 1], [f[0][2], f[0][1], f[0][0]], [len(v) - 3, len(v) - 2, len(v) - 1]])
    faces = np.concatenate([f, extra])
    assert len(remove_degenerate_faces(v, faces)) == len(faces) - 1
    assert len(remove_duplicate_faces(faces)) == len(faces) - 1
    assert len(remove_small_components(v, faces, min_area=1e-6)) == len(faces) - 1
    v2, f2 = clean_mesh(v, faces)
    mesh = trimesh.Trimesh(v2, f2, process=False)
    assert len(f2) == len(f) and mesh.is_watertight and mesh.volume > 0
