"""Channel↔spatial resampling: reference fixture and round trips."""

from __future__ import annotations

import torch

from pixal3d.models.sparse.spatial import ChannelToSpatial, channel_to_spatial, spatial_to_channel
from pixal3d.core.sparse_tensor import SparseTensor


def test_c2s_and_s2c_match_reference(reference):
    f = reference("misc_ops")
    parent = SparseTensor(f["c2s.parent_feats"], f["c2s.parent_coords"])
    child = channel_to_spatial(parent, f["c2s.subdivision"])
    assert torch.equal(child.coords, f["c2s.child_coords"])
    assert torch.equal(child.feats, f["c2s.child_feats"])
    back, subdivision = spatial_to_channel(child)
    assert torch.equal(back.coords, f["s2c.out_coords"])
    assert torch.equal(back.feats, f["s2c.out_feats"])
    nonempty = f["c2s.subdivision"].any(1)
    assert torch.equal(subdivision, f["c2s.subdivision"][nonempty])


def test_round_trips():
    gen = torch.Generator().manual_seed(5)
    # parents in lexicographic order, two batch items
    flat = torch.randperm(64, generator=gen)[:20].sort().values
    xyz = torch.stack([flat // 16, (flat // 4) % 4, flat % 4], 1)
    coords = torch.cat([torch.cat([torch.zeros(12, 1), xyz[:12]], 1), torch.cat([torch.ones(8, 1), xyz[12:]], 1)]).int()
    subdivision = torch.rand(20, 8, generator=gen) > 0.5
    subdivision[:, 0] = True
    feats = torch.randn(20, 8 * 3, generator=gen)
    child = channel_to_spatial(SparseTensor(feats, coords), subdivision)
    assert child.coords.shape[0] == int(subdivision.sum())
    back, sub_back = spatial_to_channel(child)
    assert torch.equal(back.coords, coords) and torch.equal(sub_back, subdivision)
    mask = subdivision.repeat_interleave(3, dim=1)
    assert torch.equal(back.feats, torch.where(mask, feats, torch.zeros_like(feats)))
    again = channel_to_spatial(back, sub_back)
    assert torch.equal(again.coords, child.coords) and torch.equal(again.feats, child.feats)


def test_plan_shares_cache_between_outputs():
    coords = torch.tensor([[0, 1, 1, 1]], dtype=torch.int32)
    plan = ChannelToSpatial(coords, torch.tensor([[True, False, False, True, False, False, False, True]]))
    a = plan.apply(torch.arange(16.0)[None])
    b = plan.apply(torch.arange(8.0)[None])
    assert a.cache is b.cache
    assert a.coords.tolist() == [[0, 2, 2, 2], [0, 3, 3, 2], [0, 3, 3, 3]]
    assert a.feats.tolist() == [[0, 1], [6, 7], [14, 15]] and b.feats[:, 0].tolist() == [0, 3, 7]
