"""SC-VAE decoders: tiny reference run (shape raw output, subdivisions, upsample, guided texture decoder),
output heads, full-size manifests."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from pixal3d.models.sc_vae import FlexiDualGridVaeDecoder, SparseUnetVaeDecoder
from pixal3d.core.sparse_tensor import SparseTensor
from tests.helpers import assert_close


@pytest.fixture(scope="module")
def decoders(reference):
    f = reference("scvae_decoders_tiny")
    shape = FlexiDualGridVaeDecoder(**f.meta["shape_args"]).eval()
    shape.load_state_dict(f.weights("shape_w."), strict=True)
    tex = SparseUnetVaeDecoder(**f.meta["tex_args"]).eval()
    tex.load_state_dict(f.weights("tex_w."), strict=True)
    return f, shape, tex


def test_shape_decoder_matches_reference(decoders):
    f, shape, _ = decoders
    captured = {}
    hooks = [shape.from_latent.register_forward_hook(lambda m, i, o: captured.__setitem__("from_latent", o))]
    for level in range(2):
        hooks.append(shape.blocks[level][-1].register_forward_hook(lambda m, i, o, level=level: captured.__setitem__(level, o[0])))
    shape.set_resolution(32)
    with torch.no_grad():
        raw, subs = shape(SparseTensor(f["shape_latent_feats"], f["latent_coords"]))
    for hook in hooks:
        hook.remove()
    assert shape.resolution == 32
    assert torch.equal(raw.coords, f["shape_out_coords"])
    assert_close(raw.feats, f["shape_raw_feats"], what="raw 7 channels")
    assert_close(captured["from_latent"].feats, f["inter.from_latent"], what="from_latent")
    for level in range(2):
        assert torch.equal(captured[level].coords, f[f"inter.c2s{level}_coords"])
        assert_close(captured[level].feats, f[f"inter.c2s{level}_feats"], what=f"c2s{level}")
        assert torch.equal(subs[level].coords, f[f"sub{level}_coords"])
        assert_close(subs[level].feats, f[f"sub{level}_logits"], what=f"sub{level}")


def test_upsample_coords(decoders):
    f, shape, _ = decoders
    x = SparseTensor(f["shape_latent_feats"], f["latent_coords"])
    assert torch.equal(shape.upsample(x, upsample_times=1), f["upsample1_coords"])
    assert torch.equal(shape.upsample(x, upsample_times=2), f["upsample2_coords"])
    assert torch.equal(shape.upsample(x, upsample_times=0), f["latent_coords"])
    with pytest.raises(ValueError):
        shape.upsample(x, upsample_times=3)


def test_guided_texture_decoder(decoders):
    f, shape, tex = decoders
    with torch.no_grad():
        _, subs = shape(SparseTensor(f["shape_latent_feats"], f["latent_coords"]))
        out = tex(SparseTensor(f["tex_latent_feats"], f["latent_coords"]), guide_subs=subs)
    assert torch.equal(out.coords, f["tex_out_coords"])
    assert_close(out.feats, f["tex_out_feats"], what="tex raw")
    assert_close(out.feats * 0.5 + 0.5, f["tex_out_feats_x0.5+0.5"], what="tex mapped")
    with pytest.raises(ValueError):
        tex(SparseTensor(f["tex_latent_feats"], f["latent_coords"]))


def test_output_heads(decoders):
    f, shape, _ = decoders
    raw = SparseTensor(f["shape_raw_feats"], f["shape_out_coords"])
    offset, intersected, split = shape.heads(raw)
    o = f["shape_raw_feats"]
    assert_close(offset, 2 * torch.sigmoid(o[:, :3]) - 0.5, rtol=1e-6, what="offset")
    assert offset.min() > -0.5 and offset.max() < 1.5
    assert torch.equal(intersected, o[:, 3:6] > 0) and 0 < int(intersected.sum()) < intersected.numel()
    assert_close(split, F.softplus(o[:, 6:7]), rtol=1e-6, what="split weight")


def test_fp16_blocks_on_cpu(decoders):
    f, shape, _ = decoders
    half = FlexiDualGridVaeDecoder(**{**f.meta["shape_args"], "use_fp16": True}).eval()
    half.load_state_dict(shape.state_dict())
    assert half.blocks[0][0].conv.weight.dtype == torch.float16 and half.blocks[0][0].norm.weight.dtype == torch.float32
    with torch.no_grad():
        raw, _ = half(SparseTensor(f["shape_latent_feats"], f["latent_coords"]))
    assert raw.feats.dtype == torch.float32 and torch.equal(raw.coords, f["shape_out_coords"])
    assert_close(raw.feats, f["shape_raw_feats"], rtol=2e-2, what="fp16 weights")


def test_subdivision_bias_shifts_the_decisions_but_not_teacher_forcing(reference):
    """A bias of ±100 keeps all 8 children of every voxel / none beyond the first level's parents; the logits
    returned are the ones decided with (the texture decoder's guides); teacher forcing returns the raw logits."""
    f = reference("scvae_decoders_tiny")
    plain = FlexiDualGridVaeDecoder(**f.meta["shape_args"]).eval()
    plain.load_state_dict(f.weights("shape_w."), strict=True)
    biased = FlexiDualGridVaeDecoder(**f.meta["shape_args"], subdivision_bias=100.0).eval()
    biased.load_state_dict(f.weights("shape_w."), strict=True)
    x = SparseTensor(f["shape_latent_feats"], f["latent_coords"])
    with torch.no_grad():
        _, subs = plain(x)
        _, all_subs = biased(x)
        teacher_raw, teacher_subs = biased(x, teacher_subs=subs)
        plain_raw, _ = plain(x, teacher_subs=subs)
    n = len(f["latent_coords"])
    assert len(all_subs[0].coords) == n and len(all_subs[1].coords) == 8 * n  # every child of every voxel
    assert_close(all_subs[0].feats, subs[0].feats + 100.0, what="biased level-0 logits")
    assert len(biased.upsample(x, upsample_times=2)) == 64 * n
    assert_close(teacher_raw.feats, plain_raw.feats, what="teacher-forced output")
    for got, want in zip(teacher_subs, subs):
        assert_close(got.feats, want.feats, what="teacher-forced logits")
    biased.set_subdivision_bias(-100.0)
    with torch.no_grad():
        raw, none_subs = biased(x)
    assert len(raw.coords) == 0 and len(none_subs[1].coords) == 0
    with pytest.raises(ValueError, match="finite"):
        biased.set_subdivision_bias(float("nan"))


def test_a_subdivision_filter_revises_every_decision_at_its_child_resolution(reference):
    """A filter that keeps only the children in the lower-x half of each level's grid: the decoder calls it once
    per up-block with that block's parents and child resolution, the output keeps no voxel beyond the half, the
    returned logits are the filtered ones, and removing the filter restores the plain decoder."""
    f = reference("scvae_decoders_tiny")
    decoder = FlexiDualGridVaeDecoder(**f.meta["shape_args"], subdivision_bias=100.0).eval()
    decoder.load_state_dict(f.weights("shape_w."), strict=True)
    x = SparseTensor(f["shape_latent_feats"], f["latent_coords"])
    calls = []
    offsets = torch.tensor([[s % 2, (s // 2) % 2, s // 4] for s in range(8)])

    def lower_half(parents: torch.Tensor, logits: torch.Tensor, grid: int) -> torch.Tensor:
        calls.append((len(parents), grid))
        children_x = parents[:, 1:2] * 2 + offsets[:, 0]  # [Np, 8]
        return torch.where(children_x < grid // 2, logits, torch.full_like(logits, -1e4))

    decoder.set_subdivision_filter(lower_half)
    with torch.no_grad():
        raw, subs = decoder(x)
    ups = len(decoder.blocks) - 1
    assert [g for _, g in calls] == [decoder.resolution // 2 ** (ups - 1 - i) for i in range(ups)]
    assert calls[0][0] == len(f["latent_coords"])
    assert len(raw.coords) and (raw.coords[:, 1] < decoder.resolution // 2).all()
    assert (subs[-1].feats[subs[-1].feats > 0] > 0).all() and (subs[0].feats == -1e4).any()
    decoder.set_subdivision_filter(None)
    with torch.no_grad():
        free, _ = decoder(x)
    assert len(free.coords) > len(raw.coords) and (free.coords[:, 1] >= decoder.resolution // 2).any()
