from __future__ import annotations

import numpy as np
import pytest
import trimesh

from pixal3d.mesh.simplify import simplify_mesh


def test_simplify_meets_budget_and_keeps_shape():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.4)  # 5120 faces
    v, f = simplify_mesh(sphere.vertices, sphere.faces, 1000)
    assert v.dtype == np.float32 and f.dtype == np.int32
    assert 900 <= len(f) <= 1000
    radius = np.linalg.norm(v, axis=1)
    assert np.abs(radius - 0.4).max() < 0.01
    assert np.unique(f).size == len(v)  # no unused vertices


def test_within_budget_only_cleans():
    box = trimesh.creation.box()
    faces = np.concatenate([box.faces, [[0, 0, 1]]])  # one degenerate face
    v, f = simplify_mesh(box.vertices, faces, 1000)
    assert len(f) == 12 and len(v) == 8


def test_bad_budget():
    with pytest.raises(ValueError):
        simplify_mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]), 2)
