from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from scipy.spatial import cKDTree

from pixal3d.mesh.cleanup import orient_outward
from pixal3d.mesh.io import load_mesh, normalize, LoadedMesh
from pixal3d.mesh.voxelize import edge_crossings, mesh_to_dual_grid, occupancy, voxelize
from pixal3d.ovoxel.dual_grid import flexible_dual_grid_to_mesh
from tests.helpers import EVALSETS

R = 64


def _procedural(name: str) -> LoadedMesh:
    mesh = {"sphere": lambda: trimesh.creation.icosphere(4, radius=0.4),
            "torus": lambda: trimesh.creation.torus(0.3, 0.1),
            "box": lambda: trimesh.creation.box((0.8, 0.53, 0.31))}[name]()
    return normalize(LoadedMesh(np.asarray(mesh.vertices, float), np.asarray(mesh.faces), np.full(len(mesh.faces), -1),
                                None, None, []), fill=0.9)


def _round_trip(mesh: LoadedMesh) -> tuple[float, float, trimesh.Trimesh]:
    asset, _ = voxelize(mesh, R)
    v, f = flexible_dual_grid_to_mesh(*(torch.from_numpy(x) for x in (asset.coords, asset.dual_vertices,
                                      asset.intersected, asset.split_weight)), R)
    rec = trimesh.Trimesh(v.numpy(), orient_outward(v.numpy(), f.numpy()), process=False)
    orig = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    ps, pf = trimesh.sample.sample_surface(orig, 40000, seed=0)
    pr, rf = trimesh.sample.sample_surface(rec, 40000, seed=1)
    d_or, i_or = cKDTree(pr).query(ps)
    d_ro, _ = cKDTree(ps).query(pr)
    chamfer = (d_or.mean() + d_ro.mean()) / 2
    # normal consistency (unsigned: the input's own winding may be arbitrary)
    normal_consistency = np.abs((orig.face_normals[pf] * rec.face_normals[rf[i_or]]).sum(1)).mean()
    return chamfer, normal_consistency, rec


@pytest.mark.parametrize("name", ["sphere", "torus", "box"])
def test_round_trip_procedural(name):
    chamfer, nc, rec = _round_trip(_procedural(name))
    print(f"{name}: chamfer {chamfer * R:.3f} voxels, normal consistency {nc:.3f}")
    assert chamfer <= 1.0 / R
    assert nc > 0.95
    assert rec.is_watertight and rec.volume > 0


@pytest.mark.parametrize("name", ["stanford_bunny.obj", "oded_penguin.obj", "keenan_spot.glb", "khronos_Duck.glb"])
def test_round_trip_evalset(name):
    chamfer, nc, _ = _round_trip(load_mesh(EVALSETS / "meshes" / name))
    print(f"{name}: chamfer {chamfer * R:.3f} voxels, normal consistency {nc:.3f}")
    assert chamfer <= 1.0 / R
    assert nc > 0.85


def test_crossing_owner_and_quads_cover_every_crossing():
    mesh = _procedural("sphere")
    cr = edge_crossings(mesh.vertices, mesh.faces, 16)
    grid = mesh_to_dual_grid(mesh.vertices, mesh.faces, 16, crossings=cr)
    owner = grid.coords[grid.crossing_voxels[:, 0]]
    for a in range(3):
        sel = cr.axis == a
        b, c = (a + 1) % 3, (a + 2) % 3
        assert np.array_equal(owner[sel, a], np.floor(cr.point[sel, a]))
        assert np.array_equal(owner[sel, b], cr.line[sel, 0] - 1) and np.array_equal(owner[sel, c], cr.line[sel, 1] - 1)
    assert grid.intersected.sum() <= len(cr.axis)
    hits = np.bincount(grid.crossing_voxels[:, 0] * 3 + cr.axis, minlength=3 * len(grid.coords)).reshape(-1, 3)
    assert np.array_equal(grid.intersected, hits % 2 == 1)
    assert (grid.dual_vertices >= 0).all() and (grid.dual_vertices <= 1).all()


def test_occupancy_is_max_pool():
    coords = np.array([[0, 0, 0], [3, 3, 3], [4, 0, 7]])
    assert occupancy(coords, 8, 2).tolist() == [[0, 0, 0], [1, 0, 1]]
    asset, _ = voxelize(_procedural("sphere"), 64)
    dense = np.zeros((64,) * 3, bool)
    dense[tuple(asset.coords.T)] = True
    pooled = dense.reshape(32, 2, 32, 2, 32, 2).any((1, 3, 5))
    assert np.array_equal(np.argwhere(pooled), asset.occupancy[32])


def test_pbr_from_checker_texture(tmp_path):
    colours = np.array([[[255, 0, 0, 255], [0, 255, 0, 255]], [[0, 0, 255, 255], [255, 255, 255, 128]]], np.uint8)
    image = Image.fromarray(np.kron(colours, np.ones((8, 8, 1), np.uint8)))
    mr = Image.fromarray(np.full((4, 4, 3), (0, 64, 192), np.uint8))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image, metallicRoughnessTexture=mr,
                                                   metallicFactor=1.0, roughnessFactor=0.5)
    verts = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], float)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    plane = trimesh.Trimesh(verts, [[0, 1, 2], [0, 2, 3]], visual=trimesh.visual.TextureVisuals(uv=uv, material=material),
                            process=False)
    path = tmp_path / "checker.glb"
    plane.export(path)
    asset, _ = voxelize(load_mesh(path, fill=0.9), 32)
    centre = (asset.coords + 0.5) / 32 - 0.5
    inner = (np.abs(centre[:, :2]) > 0.05).all(1) & (np.abs(centre[:, :2]) < 0.4).all(1)
    # image top-left (red) ↔ u≈0, v≈1 ↔ x<0, y>0
    expected = {(False, True): (1, 0, 0, 1), (True, True): (0, 1, 0, 1), (False, False): (0, 0, 1, 1),
                (True, False): (1, 1, 1, 128 / 255)}
    for (right, up), rgba in expected.items():
        sel = inner & ((centre[:, 0] > 0) == right) & ((centre[:, 1] > 0) == up)
        assert sel.sum() > 10
        assert np.allclose(asset.attrs[sel][:, [0, 1, 2, 5]], rgba, atol=1e-3)
    assert np.allclose(asset.attrs[:, 3], 192 / 255, atol=1e-3)  # metallic = B
    assert np.allclose(asset.attrs[:, 4], 0.5 * 64 / 255, atol=1e-3)  # roughness = factor × G
