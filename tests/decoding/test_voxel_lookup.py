from __future__ import annotations

import torch

from pixal3d.decoding.voxel_lookup import nearest, trilinear
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
