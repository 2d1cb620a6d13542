"""SparseTensor additions: per-item std, element-wise add, spatial shape, dtype cast."""

from __future__ import annotations

import pytest
import torch

from pixal3d.core.sparse_tensor import SparseTensor
from tests.helpers import assert_close


def test_std_per_item_matches_reference(reference):
    f = reference("misc_ops")
    x = SparseTensor(f["sparse_std.feats"], f["sparse_std.coords"])
    assert_close(x.std_per_item(), f["sparse_std.out"], rtol=1e-5, what="sparse std")


def test_add_type_and_spatial_shape():
    coords = torch.tensor([[0, 1, 2, 3], [1, 4, 0, 0]], dtype=torch.int32)
    x = SparseTensor(torch.ones(2, 2), coords)
    y = x + x.replace(torch.full((2, 2), 2.0))
    assert y.feats.tolist() == [[3, 3], [3, 3]] and y.cache is x.cache
    assert (1.0 + x).feats.sum().item() == 8.0
    assert x.spatial_shape == [5, 3, 4]
    assert x.type(torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError):
        x + SparseTensor(torch.ones(2, 2), coords.flip(0))
