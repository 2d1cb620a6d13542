from __future__ import annotations

import numpy as np
import pytest
import trimesh

from pixal3d.errors import UserError
from pixal3d.mesh.io import frame_rotation, load_mesh, sample_texture
from tests.helpers import EVALSETS


def test_z_up_mapping_and_normalisation(tmp_path):
    box = trimesh.creation.box((2.0, 4.0, 8.0))  # file: x 2, y 4, z 8 (z up)
    box.apply_translation((10, 0, 0))
    path = tmp_path / "box.ply"
    box.export(path)
    mesh = load_mesh(path, up="+z", fill=0.5)
    extents = mesh.vertices.max(0) - mesh.vertices.min(0)
    assert np.allclose(extents, [0.125, 0.5, 0.25])  # voxel (x, y, z) = file (x, z, −y)
    assert np.allclose(mesh.vertices.max(0) + mesh.vertices.min(0), 0)
    file_pts = np.asarray(box.vertices)
    mapped = file_pts @ mesh.transform[:3, :3].T + mesh.transform[:3, 3]
    assert np.allclose(np.sort(mapped, axis=0), np.sort(mesh.vertices, axis=0))


def test_frame_rotation_is_proper():
    for up in ("+x", "-x", "+y", "-y", "+z", "-z"):
        rot = frame_rotation(up, 30.0)
        assert np.allclose(rot @ rot.T, np.eye(3)) and np.isclose(np.linalg.det(rot), 1)
    assert np.allclose(frame_rotation("+z") @ [0, 0, 1], [0, 1, 0])
    assert np.allclose(frame_rotation("+y", 90) @ [0, 0, 1], [1, 0, 0])


def test_textured_glb_materials():
    mesh = load_mesh(EVALSETS / "meshes" / "khronos_Duck.glb")
    assert mesh.uv is not None and len(mesh.materials) == 1
    assert mesh.materials[0].base_color_texture.shape[2] == 4
    assert mesh.materials[0].metallic_factor == 0.0
    pbr = mesh.pbr_at(np.arange(100), np.full((100, 3), 1 / 3))
    assert pbr.shape == (100, 6) and (pbr >= 0).all() and (pbr <= 1).all()


def test_sample_texture_texel_centres():
    tex = np.arange(8, dtype=np.float32).reshape(2, 4, 1)  # row 0 is the image top
    uv = np.array([[0.125, 0.75], [0.875, 0.25], [0.25, 0.75]])
    assert np.allclose(sample_texture(tex, uv)[:, 0], [0, 7, 0.5])


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_mesh(tmp_path / "missing.obj")
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"not a mesh")
    with pytest.raises(UserError):
        load_mesh(bad)
    empty = tmp_path / "empty.obj"
    empty.write_text("# nothing\n")
    with pytest.raises(UserError):
        load_mesh(empty)
    with pytest.raises(UserError, match="up axis"):
        frame_rotation("up")
