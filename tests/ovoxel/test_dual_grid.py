from __future__ import annotations

import torch

from pixal3d.ovoxel.dual_grid import dual_grid_quads, flexible_dual_grid_to_mesh


def test_fdg_to_mesh_sphere_exact(reference):
    f = reference("fdg_to_mesh_sphere")
    args = (f["coords"], f["dual_vertices"], f["intersected"])
    vertices, faces = flexible_dual_grid_to_mesh(*args, f["split_weight"], 16)
    assert torch.equal(vertices, f["vertices"])
    assert torch.equal(faces.int(), f["faces_splitweight"])
    vertices, faces = flexible_dual_grid_to_mesh(*args, None, 16)
    assert torch.equal(faces.int(), f["faces_minangle"])


def test_quads_need_all_four_voxels():
    coords = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    flags = torch.zeros(4, 3, dtype=torch.bool)
    flags[0, 2] = True  # z edge of voxel 0: voxels (0,0,0),(0,1,0),(1,1,0),(1,0,0)
    assert dual_grid_quads(coords, flags).tolist() == [[0, 3, 2, 1]]
    flags[0] = torch.tensor([True, True, False])  # x and y edges miss voxels
    assert dual_grid_quads(coords, flags).shape == (0, 4)


def test_split_weight_picks_diagonal():
    coords = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    flags = torch.zeros(4, 3, dtype=torch.bool)
    flags[0, 2] = True
    dual = torch.full((4, 3), 0.5)
    # quad (q0..q3) = rows (0, 3, 2, 1): w0·w2 > w3·w1 → diagonal 0–2
    _, faces = flexible_dual_grid_to_mesh(coords, dual, flags, torch.tensor([2.0, 1, 2, 1]), 4)
    assert faces.tolist() == [[0, 3, 2], [0, 2, 1]]
    _, faces = flexible_dual_grid_to_mesh(coords, dual, flags, torch.tensor([1.0, 2, 1, 2]), 4)
    assert faces.tolist() == [[0, 3, 1], [1, 3, 2]]
