from __future__ import annotations

import torch

from pixal3d.ovoxel.voxel_lookup import nearest, trilinear
from tests.helpers import assert_close


def test_gs_trilinear_and_nearest_match_reference(reference):
    f = reference("misc_ops")
    coords, attrs, query = f["gs.coords"], f["gs.attrs"], f["gs.query"][0]
    assert_close(trilinear(coords, attrs, query, 8), f["gs.trilinear"][0], rtol=1e-5, what="trilinear")
    assert_close(nearest(coords, attrs, query, 8), f["gs.nearest"][0], rtol=1e-5, what="nearest")


def test_trilinear_renormalises_over_existing_voxels():
    coords = torch.tensor([[0, 0, 0], [1, 0, 0]])
    attrs = torch.tensor([[0.0], [1.0]])
    # halfway between the two centres along x, off-centre in y/z: missing voxels do not dilute
    out = trilinear(coords, attrs, torch.tensor([[1.0, 0.7, 0.6]]), 4)
    assert torch.allclose(out, torch.tensor([[0.5]]))
    assert trilinear(coords, attrs, torch.tensor([[3.5, 3.5, 3.5]]), 4).item() == 0.0
    assert nearest(coords, attrs, torch.tensor([[1.9, 0.1, 0.9], [2.1, 0.1, 0.1]]), 4).tolist() == [[1.0], [0.0]]


def test_trilinear_matches_brute_force_on_sparse_grid_and_borders():
    # every corner looked up one by one (dictionary); queries reach half a voxel past the grid on each side
    # (in [-0.5, 0.5) truncation maps both neighbours to voxel 0) and the bounds are not cubic
    gen = torch.Generator().manual_seed(0)
    bounds = (6, 5, 7)
    grid = torch.stack(torch.meshgrid(*[torch.arange(b) for b in bounds], indexing="ij"), -1).reshape(-1, 3)
    coords = grid[torch.rand(len(grid), generator=gen) < 0.4]
    attrs = torch.rand(len(coords), 2, generator=gen)
    query = torch.rand(3000, 3, generator=gen) * torch.tensor([7.0, 6.0, 8.0]) - 0.5
    table = {tuple(c): a for c, a in zip(coords.tolist(), attrs)}
    expected = torch.zeros(len(query), 2)
    for i, q in enumerate(query.tolist()):
        num, den = torch.zeros(2), 0.0
        for corner in [(dx, dy, dz) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5) for dz in (-0.5, 0.5)]:
            idx = tuple(int(q[a] + corner[a]) for a in range(3))
            if idx in table:
                w = 1.0
                for a in range(3):
                    w *= 1 - abs(idx[a] + 0.5 - q[a])
                num, den = num + w * table[idx], den + w
        expected[i] = num / max(den, 1e-12)
    out = trilinear(coords, attrs, query, bounds, chunk=1000)  # several chunks
    assert torch.allclose(out, expected, atol=1e-5)
    assert (expected == 0).all(1).any() and (expected != 0).all(1).any()  # both cases occur
