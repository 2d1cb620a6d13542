"""VAE encoders: SS encoder (dense), SC-VAE encoders (sparse S2C), composition with the decoders, official configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixal3d.mesh.io import LoadedMesh
from pixal3d.mesh.voxelize import voxelize
from pixal3d.models.registry import build_model
from pixal3d.models.sc_vae import (
    FlexiDualGridVaeDecoder,
    FlexiDualGridVaeEncoder,
    SparseResBlockC2S3d,
    SparseResBlockS2C3d,
    SparseUnetVaeDecoder,
    SparseUnetVaeEncoder,
    subdivision_guides,
)
from pixal3d.models.sparse.spatial import channel_to_spatial, spatial_to_channel
from pixal3d.core.sparse_tensor import SparseTensor
from pixal3d.models.ss_vae import (
    DownsampleBlock3d,
    SparseStructureDecoder,
    SparseStructureEncoder,
    pixel_shuffle_3d,
    pixel_unshuffle_3d,
)

CONVNEXT = "SparseConvNeXtBlock3d"


def _tiny_sparse_args(levels: int = 3, channels=(16, 32, 64), latent: int = 8) -> dict:
    return {"model_channels": list(channels[:levels]), "latent_channels": latent, "num_blocks": [1] * levels,
            "block_type": [CONVNEXT] * levels, "down_block_type": ["SparseResBlockS2C3d"] * (levels - 1),
            "block_args": [{}] * levels}


def _decoder_args(enc: dict) -> dict:
    return {"model_channels": enc["model_channels"][::-1], "latent_channels": enc["latent_channels"],
            "num_blocks": enc["num_blocks"][::-1], "block_type": enc["block_type"],
            "up_block_type": ["SparseResBlockC2S3d"] * (len(enc["num_blocks"]) - 1), "block_args": enc["block_args"]}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ovoxel():
    """A real O-Voxel at resolution 16: an octahedron-ish closed mesh voxelised by the project voxeliser."""
    v = np.array([[0.45, 0, 0], [-0.45, 0, 0], [0, 0.4, 0], [0, -0.4, 0], [0, 0, 0.35], [0, 0, -0.35]], dtype=np.float64)
    f = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    mesh = LoadedMesh(v, f, np.full(len(f), -1), None, None, [])
    asset, _ = voxelize(mesh, 16)
    coords = torch.cat([torch.zeros(len(asset.coords), 1, dtype=torch.int32), torch.from_numpy(asset.coords)], 1)
    return {"coords": coords, "vertices": torch.from_numpy(asset.dual_vertices), "intersected": torch.from_numpy(asset.intersected),
            "attrs": torch.from_numpy(asset.attrs)}


# --------------------------------------------------------------------------------------------------
# dense SS encoder


def test_pixel_unshuffle_inverts_shuffle_and_downsample_is_unshuffle_plus_linear():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 6, 8)
    assert torch.equal(pixel_shuffle_3d(pixel_unshuffle_3d(x)), x)
    y = torch.randn(2, 24, 2, 3, 4)
    assert torch.equal(pixel_unshuffle_3d(pixel_shuffle_3d(y)), y)
    block = DownsampleBlock3d(3, 5)
    linear = F.conv3d(pixel_unshuffle_3d(x), block.conv.weight.reshape(5, 24, 1, 1, 1), block.conv.bias)
    torch.testing.assert_close(block(x), linear, rtol=1e-5, atol=1e-5)


def test_ss_encoder_shapes_posterior_and_roundtrip_with_decoder():
    torch.manual_seed(0)
    enc = SparseStructureEncoder(1, 4, num_res_blocks=1, channels=[4, 8, 8], num_res_blocks_middle=1)
    dec = SparseStructureDecoder(1, 4, num_res_blocks=1, channels=[8, 8, 4], num_res_blocks_middle=1)
    occ = (torch.rand(2, 1, 8, 8, 8) > 0.7).float()
    z, mean, logvar = enc(occ, return_raw=True)
    assert z.shape == mean.shape == logvar.shape == (2, 4, 2, 2, 2) and torch.equal(z, mean)
    g = torch.Generator().manual_seed(1)
    sample = enc(occ, sample_posterior=True, generator=g)
    assert not torch.equal(sample, mean)
    logits = dec(sample)
    assert logits.shape == occ.shape
    loss = F.binary_cross_entropy_with_logits(logits, occ) + 1e-3 * (mean**2 + logvar.exp() - logvar).mean()
    loss.backward()
    assert enc.input_layer.weight.grad.abs().sum() > 0 and dec.input_layer.weight.grad.abs().sum() > 0
    # item independence: encoding one item alone gives the same mean
    torch.testing.assert_close(enc(occ[1:]), mean[1:], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# sparse S2C


def test_s2c_groups_exactly_the_children_of_a_full_c2s():
    torch.manual_seed(0)
    coords = torch.unique(torch.cat([torch.randint(0, 2, (300, 1)), torch.randint(0, 16, (300, 3))], 1), dim=0).int()
    feats = torch.randn(len(coords), 3)
    parents, mask = spatial_to_channel(SparseTensor(feats, coords))
    expected = torch.unique(torch.cat([coords[:, :1], coords[:, 1:] // 2], 1), dim=0)
    assert torch.equal(parents.coords, expected.int())
    # a C2S with all-ones subdivision emits the 8 children of every parent; the S2C children are among them
    full = channel_to_spatial(parents, torch.ones_like(mask))
    assert len(full.coords) == 8 * len(parents.coords)
    keys = lambda c: set(map(tuple, c.tolist()))  # noqa: E731
    assert keys(coords) <= keys(full.coords)
    # and with the S2C mask the C2S gives back exactly the input voxels and features (round trip)
    back = channel_to_spatial(parents, mask)
    order_in, order_back = np.lexsort(coords.T.numpy()[::-1]), np.lexsort(back.coords.T.numpy()[::-1])
    assert torch.equal(back.coords[order_back], coords[order_in])
    assert torch.equal(back.feats[order_back], feats[order_in])
    # the full C2S places children at the feature block of their child index
    present = full.feats.abs().sum(1) > 0
    assert keys(full.coords[present]) == keys(coords)


def test_s2c_block_shapes_identity_at_init_and_channel_grouping(ovoxel):
    torch.manual_seed(0)
    x = SparseTensor(torch.randn(len(ovoxel["coords"]), 8), ovoxel["coords"])
    block = SparseResBlockS2C3d(8, 16)
    y = block(x)
    parents, _ = spatial_to_channel(x)
    assert torch.equal(y.coords, parents.coords) and y.feats.shape == (len(parents.coords), 16)
    # conv2 starts at zero: the output is the skip, 8·8 parent channels averaged in groups of 4
    torch.testing.assert_close(y.feats, parents.feats.reshape(-1, 16, 4).mean(-1))
    with pytest.raises(ValueError):
        SparseResBlockS2C3d(8, 12)


# --------------------------------------------------------------------------------------------------
# SC-VAE encoders with the decoders


def test_shape_encoder_to_decoder_gradients_and_guides(ovoxel):
    torch.manual_seed(0)
    args = _tiny_sparse_args(levels=2, channels=(8, 16))
    enc = FlexiDualGridVaeEncoder(**args)
    dec = FlexiDualGridVaeDecoder(resolution=16, **_decoder_args(args))
    coords = ovoxel["coords"]
    vertices = SparseTensor(ovoxel["vertices"], coords)
    intersected = SparseTensor(ovoxel["intersected"], coords)
    z, mean, logvar = enc(vertices, intersected, sample_posterior=True, return_raw=True,
                          generator=torch.Generator().manual_seed(0))
    latent_coords = torch.unique(torch.cat([coords[:, :1], coords[:, 1:] // 2], 1), dim=0).int()
    assert torch.equal(z.coords, latent_coords) and z.feats.shape == (len(latent_coords), 8)
    assert mean.feats.shape == logvar.feats.shape == z.feats.shape and torch.equal(mean.coords, z.coords)
    # ground-truth subdivisions: following them from the latent reproduces the fine voxels exactly
    guides = subdivision_guides(z.coords, coords, 1)
    assert len(guides) == 1 and guides[0].shape == (len(latent_coords), 8)
    assert guides[0].sum() == len(coords)  # every fine voxel is exactly one child
    block = dec.blocks[0][-1]
    assert isinstance(block, SparseResBlockC2S3d)
    torch.nn.init.constant_(block.to_subdiv.bias, 4.0)  # predict every child: a non-empty output
    raw, subs = dec(z)
    assert raw.feats.shape == (len(latent_coords) * 8, 7)
    # the first up-block sees the latent coordinates, where the ground truth applies directly
    assert torch.equal(subs[0].coords, z.coords)
    loss = raw.feats.square().mean() + F.binary_cross_entropy_with_logits(subs[0].feats, guides[0].float())
    loss = loss + (mean.feats**2 + logvar.feats.exp() - logvar.feats).mean()
    loss.backward()
    for module in (enc.input_layer, enc.blocks[0][1].conv2, enc.blocks[1][0].conv, enc.to_latent, dec.from_latent,
                   dec.output_layer):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0
    # the shape inputs are offsets − 0.5 and flags − 0.5
    plain = SparseUnetVaeEncoder(6, **args)
    plain.load_state_dict(enc.state_dict())
    feats = torch.cat([ovoxel["vertices"] - 0.5, ovoxel["intersected"].float() - 0.5], 1)
    torch.testing.assert_close(plain(SparseTensor(feats, coords)).feats, enc(vertices, intersected).feats)


def test_texture_encoder_to_guided_decoder_reproduces_the_voxels(ovoxel):
    torch.manual_seed(0)
    args = _tiny_sparse_args()
    enc = SparseUnetVaeEncoder(6, **args)
    dec = SparseUnetVaeDecoder(6, pred_subdiv=False, **_decoder_args(args))
    coords = ovoxel["coords"]
    attrs = SparseTensor(ovoxel["attrs"] * 2 - 1, coords)
    z = enc(attrs)
    guides = [g.float() * 2 - 1 for g in subdivision_guides(z.coords, coords, 2)]
    out = dec(z, guide_subs=[SparseTensor(g, c) for g, c in zip(guides, _guide_coords(z.coords, guides))])
    keys = lambda c: sorted(map(tuple, c.tolist()))  # noqa: E731
    assert keys(out.coords) == keys(coords)  # guided decode lands exactly on the encoded voxels
    F.mse_loss(out.feats, _reorder(attrs, out.coords)).backward()
    assert enc.input_layer.weight.grad.abs().sum() > 0 and dec.output_layer.weight.grad.abs().sum() > 0


def _guide_coords(latent_coords: torch.Tensor, guides: list[torch.Tensor]) -> list[torch.Tensor]:
    from pixal3d.models.sparse.spatial import ChannelToSpatial

    out, coords = [], latent_coords
    for g in guides:
        out.append(coords)
        coords = ChannelToSpatial(coords, g > 0).coords
    return out


def _reorder(x: SparseTensor, coords: torch.Tensor) -> torch.Tensor:
    from pixal3d.utils.coords import CoordIndex

    rows = CoordIndex(x.coords).lookup(coords)
    assert (rows >= 0).all()
    return x.feats[rows]


# --------------------------------------------------------------------------------------------------
# official configurations


OFFICIAL = {
    "ss_enc_conv3d_16l8_fp16": ("SparseStructureEncoder", {
        "in_channels": 1, "latent_channels": 8, "num_res_blocks": 2, "num_res_blocks_middle": 2,
        "channels": [32, 128, 512], "use_fp16": True}),
    "shape_enc_next_dc_f16c32_fp16": ("FlexiDualGridVaeEncoder", {
        "model_channels": [64, 128, 256, 512, 1024], "latent_channels": 32, "num_blocks": [0, 4, 8, 16, 4],
        "block_type": [CONVNEXT] * 5, "down_block_type": ["SparseResBlockS2C3d"] * 4,
        "block_args": [{"use_checkpoint": True}] * 2 + [{"use_checkpoint": False}] * 3, "use_fp16": True}),
    "tex_enc_next_dc_f16c32_fp16": ("SparseUnetVaeEncoder", {
        "in_channels": 6, "model_channels": [64, 128, 256, 512, 1024], "latent_channels": 32,
        "num_blocks": [0, 4, 8, 16, 4], "block_type": [CONVNEXT] * 5, "down_block_type": ["SparseResBlockS2C3d"] * 4,
        "block_args": [{"use_checkpoint": True}] * 2 + [{"use_checkpoint": False}] * 3, "use_fp16": True}),
}


@pytest.mark.parametrize("stem", sorted(OFFICIAL))
def test_official_encoder_configs_build_on_meta(stem):
    name, args = OFFICIAL[stem]
    model = build_model(name, args, device="meta")
    params = dict(model.named_parameters())
    assert all(p.is_meta for p in params.values())
    if name == "SparseStructureEncoder":
        assert params["input_layer.weight"].shape == (32, 1, 3, 3, 3)
        assert params["blocks.2.conv.weight"].shape == (128, 32, 2, 2, 2)  # level 0: 2 res blocks, then down
        assert params["out_layer.2.weight"].shape == (16, 512, 3, 3, 3)
        assert params["blocks.0.conv1.weight"].dtype == torch.float16
        return
    assert params["input_layer.weight"].shape == (64, 6)
    assert params["to_latent.weight"].shape == (64, 1024)
    assert params["blocks.0.0.conv1.weight"].shape == (16, 3, 3, 3, 64)  # S2C 64→128: conv to 128/8
    assert params["blocks.0.0.conv2.weight"].shape == (128, 3, 3, 3, 128)
    assert params["blocks.3.16.conv1.weight"].shape == (128, 3, 3, 3, 512)
    assert params["blocks.4.3.mlp.2.weight"].shape == (1024, 4096)
    assert "blocks.4.4.conv1.weight" not in params and params["blocks.1.0.conv.weight"].dtype == torch.float16
    # mirror of the official decoder: the same trunk widths and block counts, reversed
    dec = build_model("FlexiDualGridVaeDecoder", {"resolution": 256, **_decoder_args(args), "use_fp16": True}, device="meta")
    assert model.model_channels == dec.model_channels[::-1] and model.num_blocks == dec.num_blocks[::-1]
