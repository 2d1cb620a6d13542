"""Submanifold sparse convolution: reference fixture, dense-conv equivalence, neighbour map, dtypes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pixal3d.models.sparse.conv import KERNEL_OFFSETS, SparseConv3d, build_neighbour_map, neighbour_map, submanifold_conv3d
from pixal3d.core.sparse_tensor import SparseTensor
from tests.helpers import assert_close

STRATEGIES = ["padded", "gather", "im2col"]


def random_sparse(gen: torch.Generator, grid: int, counts: list[int], channels: int) -> SparseTensor:
    """Random distinct voxels per batch item (contiguous items, lexicographic order)."""
    rows = []
    for b, n in enumerate(counts):
        flat = torch.randperm(grid**3, generator=gen)[:n].sort().values
        xyz = torch.stack([flat // grid**2, (flat // grid) % grid, flat % grid], 1)
        rows.append(torch.cat([torch.full((n, 1), b), xyz], 1))
    coords = torch.cat(rows).int()
    return SparseTensor(torch.randn(coords.shape[0], channels, generator=gen), coords)


def dense_reference(x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor, grid: int) -> torch.Tensor:
    """Scatter to a dense grid, run ``conv3d`` with the permuted weight, read back the active sites."""
    c = x.coords.long()
    dense = torch.zeros(int(c[:, 0].max()) + 1, x.feats.shape[1], grid, grid, grid, dtype=torch.float64)
    dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = x.feats.double()
    out = F.conv3d(dense, weight.double().permute(0, 4, 1, 2, 3), bias.double(), padding=1)
    return out[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_matches_reference_fixture(reference, strategy):
    f = reference("misc_ops")
    x = SparseTensor(f["subm.feats"], f["subm.coords"])
    out = submanifold_conv3d(x, f["subm.weight"], f["subm.bias"], strategy=strategy)
    assert_close(out.feats, f["subm.out"], rtol=1e-5, what=f"subm conv ({strategy})")
    assert out.coords is x.coords


@pytest.mark.parametrize("strategy", STRATEGIES + [None])
def test_equals_dense_conv3d_at_active_sites(strategy):
    gen = torch.Generator().manual_seed(7)
    grid = 7
    # dense enough that most offsets occur, and two batch items whose voxels overlap in xyz
    x = random_sparse(gen, grid, [150, 90], 5)
    weight = torch.randn(6, 3, 3, 3, 5, generator=gen)
    bias = torch.randn(6, generator=gen)
    out = submanifold_conv3d(x, weight, bias, strategy=strategy)
    assert_close(out.feats, dense_reference(x, weight, bias, grid), rtol=1e-5, what=f"vs dense ({strategy})")


def test_kernel_index_order_is_x_major():
    """A weight that is non-zero only at index (a,b,c) reads the neighbour at (a-1, b-1, c-1)."""
    coords = torch.tensor([[0, 2, 2, 2], [0, 3, 2, 1]], dtype=torch.int32)  # offset (+1, 0, -1) from row 0
    x = SparseTensor(torch.tensor([[1.0], [10.0]]), coords)
    weight = torch.zeros(1, 3, 3, 3, 1)
    weight[0, 2, 1, 0, 0] = 1.0  # dx=+1, dy=0, dz=-1
    out = submanifold_conv3d(x, weight)
    assert out.feats[:, 0].tolist() == [10.0, 0.0]
    assert KERNEL_OFFSETS[(2 * 3 + 1) * 3 + 0].tolist() == [1, 0, -1]


def test_neighbour_map_is_cached_and_symmetric():
    gen = torch.Generator().manual_seed(3)
    x = random_sparse(gen, 6, [80, 40], 2)
    nbr = neighbour_map(x)
    assert neighbour_map(x.replace(x.feats * 2)) is nbr  # shared through replace()
    assert nbr[:, 13].tolist() == list(range(x.coords.shape[0]))
    for k in range(27):
        rows = (nbr[:, k] >= 0).nonzero().squeeze(1)
        q = nbr[rows, k]
        assert torch.equal(nbr[q, 26 - k], rows)
        expected = x.coords[rows].long()
        expected[:, 1:] += KERNEL_OFFSETS[k]
        assert torch.equal(x.coords[q].long(), expected)
    # brute-force count of neighbour pairs
    c = x.coords.long()
    diff = (c[:, None, 1:] - c[None, :, 1:]).abs().amax(-1)
    same = c[:, None, 0] == c[None, :, 0]
    assert int((nbr >= 0).sum()) == int(((diff <= 1) & same).sum())


def test_empty_and_isolated():
    assert build_neighbour_map(torch.zeros(0, 4, dtype=torch.int32)).shape == (0, 27)
    x = SparseTensor(torch.ones(2, 3), torch.tensor([[0, 0, 0, 0], [0, 5, 5, 5]], dtype=torch.int32))
    conv = SparseConv3d(3, 4)
    expected = x.feats @ conv.weight[:, 1, 1, 1, :].t() + conv.bias
    assert_close(conv(x).feats, expected, rtol=1e-6, what="isolated voxels")


def test_module_layout_and_dtypes():
    conv = SparseConv3d(4, 5)
    assert conv.weight.shape == (5, 3, 3, 3, 4) and conv.bias.shape == (5,)
    gen = torch.Generator().manual_seed(1)
    x = random_sparse(gen, 6, [60], 4)
    ref = conv(x).feats
    # float16 weights (the released layout) with float32 activations: computed in float32
    conv_half = SparseConv3d(4, 5).to(torch.float16)
    conv_half.load_state_dict(conv.state_dict())
    out = conv_half(x).feats
    assert out.dtype == torch.float32
    assert_close(out, ref, rtol=2e-3, what="fp16 weights")
    # bfloat16 activations compute in bfloat16
    for strategy in STRATEGIES:
        out_bf16 = submanifold_conv3d(x.type(torch.bfloat16), conv.weight, conv.bias, strategy=strategy).feats
        assert out_bf16.dtype == torch.bfloat16
        assert_close(out_bf16, ref, rtol=2e-2, what=f"bf16 ({strategy})")
    with pytest.raises(ValueError):
        submanifold_conv3d(x, torch.zeros(5, 3, 3, 3, 3))


def test_gradients_agree_between_strategies():
    gen = torch.Generator().manual_seed(9)
    x = random_sparse(gen, 5, [50, 30], 3)
    weight = torch.randn(4, 3, 3, 3, 3, generator=gen)
    grads = []
    for strategy in STRATEGIES:
        feats = x.feats.clone().requires_grad_(True)
        w = weight.clone().requires_grad_(True)
        out = submanifold_conv3d(x.replace(feats), w, strategy=strategy)
        (out.feats**2).sum().backward()
        grads.append((feats.grad, w.grad))
    assert_close(grads[0][0], grads[1][0], rtol=1e-5, what="d feats")
    assert_close(grads[0][1], grads[1][1], rtol=1e-5, what="d weight")
