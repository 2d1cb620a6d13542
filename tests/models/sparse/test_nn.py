"""Per-voxel layers: dtype policy, float32 LayerNorm, sparse wrappers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pixal3d.models.sparse.nn import LayerNorm32, SparseLayerNorm32, SparseLinear, SparseSiLU, compute_dtype
from pixal3d.core.sparse_tensor import SparseTensor


def test_compute_dtype_policy():
    assert compute_dtype(torch.float16, "cpu") == torch.float32
    assert compute_dtype(torch.float16, "meta") == torch.float16
    assert compute_dtype(torch.bfloat16, "cpu") == torch.bfloat16
    assert compute_dtype(torch.float32, "cpu") == torch.float32


def test_layers_follow_input_dtype():
    gen = torch.Generator().manual_seed(0)
    x = SparseTensor(torch.randn(5, 8, generator=gen) * 3 + 1, torch.arange(20).reshape(5, 4).int())
    lin = SparseLinear(8, 3)
    ref = x.feats @ lin.weight.t() + lin.bias
    lin.half()
    out = lin(x)
    assert out.dtype == torch.float32 and out.cache is x.cache
    assert (out.feats - ref).abs().max() < 1e-2
    norm = SparseLayerNorm32(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2, 8))
    out16 = norm(x.type(torch.float16))
    assert out16.dtype == torch.float16
    expected = F.layer_norm(x.feats, (8,), norm.weight, norm.bias, 1e-6)
    assert (out16.feats.float() - expected).abs().max() < 1e-2
    plain = LayerNorm32(8, elementwise_affine=False)
    assert plain(x.feats).mean(-1).abs().max() < 1e-6
    assert torch.equal(SparseSiLU()(x).feats, F.silu(x.feats))
