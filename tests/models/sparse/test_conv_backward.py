"""The im2col convolution's gather-only backward equals autograd through the gather strategy."""

import torch

from pixal3d.models.sparse.conv import submanifold_conv3d
from pixal3d.core.sparse_tensor import SparseTensor


def test_im2col_backward_matches_autograd_of_gather():
    g = torch.Generator().manual_seed(0)
    xyz = torch.unique(torch.randint(0, 12, (900, 3), generator=g), dim=0)
    coords = torch.cat([torch.randint(0, 2, (len(xyz), 1), generator=g), xyz], 1).int()
    coords = torch.unique(coords, dim=0)
    x = torch.randn(len(coords), 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(7, 3, 3, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, generator=g, requires_grad=True)
    up = torch.randn(len(coords), 7, dtype=torch.float64, generator=g)
    results = []
    for strategy in ("gather", "im2col"):
        y = submanifold_conv3d(SparseTensor(x, coords), w, b, strategy=strategy).feats
        results.append((y, *torch.autograd.grad(y, (x, w, b), up)))
    for ref, got in zip(*results):
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-11)
    assert torch.autograd.gradcheck(
        lambda a, ww: submanifold_conv3d(SparseTensor(a, coords[:40]), ww, None, strategy="im2col").feats,
        (x[:40].detach().requires_grad_(), w.detach().requires_grad_()))
