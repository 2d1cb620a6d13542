from __future__ import annotations

import math

import torch

from pixal3d.models.modules.attention import CrossAttention, SelfAttention, attention, varlen_attention
from pixal3d.core.sparse_tensor import SparseTensor


def _naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Explicit softmax attention on [L, H, D] float64."""
    s = torch.einsum("qhd,khd->hqk", q.double(), k.double()) / math.sqrt(q.shape[-1])
    return torch.einsum("hqk,khd->qhd", s.softmax(-1), v.double())


def test_query_chunking_is_exact():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 300, 3, 16), torch.randn(2, 200, 3, 16), torch.randn(2, 200, 3, 16)
    full = attention(q, k, v)
    # budget for 7 query rows per chunk → 43 chunks
    chunked = attention(q, k, v, score_budget=2 * 3 * 200 * 4 * 7)
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full[1].double(), _naive(q[1], k[1], v[1]), rtol=1e-4, atol=1e-5)


def test_varlen_attention_stays_within_items():
    torch.manual_seed(1)
    layout = [slice(0, 5), slice(5, 5), slice(5, 14)]  # includes an empty item
    q, k, v = torch.randn(14, 2, 8), torch.randn(14, 2, 8), torch.randn(14, 2, 8)
    out = varlen_attention(q, k, v, layout, layout)
    torch.testing.assert_close(out[:5].double(), _naive(q[:5], k[:5], v[:5]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[5:].double(), _naive(q[5:], k[5:], v[5:]), rtol=1e-4, atol=1e-5)
    k2 = k.clone()
    k2[7:] += 5.0
    out2 = varlen_attention(q, k2, v, layout, layout)
    assert torch.equal(out2[:5], out[:5])
    assert not torch.allclose(out2[5:], out[5:])


def test_sparse_self_attention_equals_dense_per_item():
    torch.manual_seed(2)
    attn = SelfAttention(32, 4)
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 2, 1], [1, 3, 3, 3], [1, 0, 1, 2]], dtype=torch.int32)
    feats = torch.randn(5, 32)
    x = SparseTensor(feats, coords)
    rope = torch.stack([torch.cos(torch.rand(5, 4)), torch.sin(torch.rand(5, 4))], -1)
    out = attn(x, rope).feats
    dense0 = attn(feats[None, :3], rope[:3])[0]
    dense1 = attn(feats[None, 3:], rope[3:])[0]
    torch.testing.assert_close(out, torch.cat([dense0, dense1]), rtol=1e-5, atol=1e-6)


def test_sparse_cross_attention_uses_own_context():
    torch.manual_seed(3)
    attn = CrossAttention(16, 8, 2)
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 1, 1], [1, 2, 2, 2]], dtype=torch.int32)
    feats, ctx = torch.randn(3, 16), torch.randn(2, 5, 8)
    out = attn(SparseTensor(feats, coords), ctx).feats
    torch.testing.assert_close(out[:2], attn(feats[None, :2], ctx[:1])[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[2:], attn(feats[None, 2:], ctx[1:])[0], rtol=1e-5, atol=1e-6)
