"""Training conditions: several views of an item are the mean of their single-view conditions, as generation
averages them (dense, sparse and cross-attention), and CFG dropout zeroes a whole item."""

from __future__ import annotations

import pytest
import torch

from pixal3d.conditioning.backprojection import backproject_dense
from pixal3d.conditioning.encoders import SmallConvEncoder
from pixal3d.core.camera import Camera, look_at
from pixal3d.training.conditioning import TrainingConditioner, drop_projection

G, S = 6, 32


def _setup(mode: str, cell_samples: int = 0):
    torch.manual_seed(0)
    encoder = SmallConvEncoder(8, num_global_tokens=2, patch_size=4).eval()
    cond = TrainingConditioner(encoder, S, G, mode=mode, cell_samples=cell_samples)
    images = torch.rand(2, 3, S, S)
    cameras = [Camera.front(0.5), Camera.front(0.7)]
    extra_images = torch.rand(3, 3, S, S)
    extra_cameras = [Camera(look_at(eye, up=(0, 0, 1)), 0.6) for eye in ((2.0, -1.0, 0.5), (-1.5, -1.5, 1.0),
                                                                           (0.5, 2.5, 0.2))]
    extra = (extra_images, extra_cameras, torch.tensor([0, 0, 1]))
    views = {0: [(images[0], cameras[0]), (extra_images[0], extra_cameras[0]), (extra_images[1], extra_cameras[1])],
             1: [(images[1], cameras[1]), (extra_images[2], extra_cameras[2])]}
    return cond, images, cameras, extra, views


@pytest.mark.parametrize("cell_samples", [0, 2])
@torch.no_grad()
def test_dense_and_cross_conditions_average_the_views(cell_samples):
    cond, images, cameras, extra, views = _setup("proj", cell_samples)
    out = cond(images, cameras, extra=extra)
    patch = cond.encode(images)[1]
    assert torch.equal(cond(images, cameras)["proj"], backproject_dense(patch, cameras, G, S, cell_samples=cell_samples))
    for b, vs in views.items():
        single = [cond(im[None], [cam]) for im, cam in vs]
        for key in ("global", "proj"):
            expected = torch.stack([s[key][0] for s in single]).mean(0)
            assert torch.allclose(out[key][b], expected, atol=1e-6), (b, key)
    dropped = cond(images, cameras, keep=torch.tensor([1.0, 0.0]), extra=extra)
    assert torch.equal(dropped["proj"][1], torch.zeros_like(dropped["proj"][1]))
    assert torch.allclose(dropped["proj"][0], out["proj"][0])
    cross, images, cameras, extra, views = _setup("cross")
    tokens = cross(images, cameras, extra=extra)
    for b, vs in views.items():
        expected = torch.stack([cross(im[None], [cam])[0] for im, cam in vs]).mean(0)
        assert torch.allclose(tokens[b], expected, atol=1e-6)


@pytest.mark.parametrize("cell_samples", [0, 2])
@torch.no_grad()
def test_sparse_conditions_average_the_views_row_by_row(cell_samples):
    cond, images, cameras, extra, views = _setup("proj", cell_samples)
    gen = torch.Generator().manual_seed(1)
    xyz = [torch.randint(0, G, (n, 3), generator=gen) for n in (7, 5)]
    coords = torch.cat([torch.cat([torch.full((len(c), 1), b), c], 1) for b, c in enumerate(xyz)]).int()
    out = cond(images, cameras, coords, extra=extra)
    assert torch.equal(out["proj"].coords, coords)
    rows = 0
    for b, vs in views.items():
        own = torch.cat([torch.zeros(len(xyz[b]), 1, dtype=torch.int32), xyz[b].int()], 1)
        expected = torch.stack([cond(im[None], [cam], own)["proj"].feats for im, cam in vs]).mean(0)
        assert torch.allclose(out["proj"].feats[rows:rows + len(own)], expected, atol=1e-6), b
        rows += len(own)
    # no extra views: the single-view path, bit for bit
    assert torch.equal(cond(images, cameras, coords, extra=(extra[0][:0], [], extra[2][:0]))["proj"].feats,
                       cond(images, cameras, coords)["proj"].feats)


@torch.no_grad()
def test_drop_projection_zeroes_the_dropped_items_features_only():
    cond, images, cameras, extra, views = _setup("proj")
    dense = cond(images, cameras)
    dropped = drop_projection(dense["proj"], torch.tensor([1.0, 0.0]))
    assert torch.equal(dropped[0], dense["proj"][0]) and not dropped[1].any()
    coords = torch.tensor([[0, 1, 2, 3], [1, 0, 0, 0], [0, 5, 5, 5], [1, 2, 3, 4]], dtype=torch.int32)
    sparse = cond(images, cameras, coords)
    kept = drop_projection(sparse["proj"], torch.tensor([0.0, 1.0]))
    assert torch.equal(kept.coords, coords)
    assert not kept.feats[[0, 2]].any() and torch.equal(kept.feats[[1, 3]], sparse["proj"].feats[[1, 3]])
    assert sparse["proj"].feats[[0, 2]].abs().sum() > 0  # the test drops something real
