"""Sparse-structure VAE (official ``sparse_structure_vae``): the dense 3-D CNN decoder of the 16³ latent.

``SparseStructureDecoder`` maps the SS latent ``[B, 8, 16, 16, 16]`` to occupancy logits ``[B, 1, 64, 64, 64]``;
the occupied voxels are ``logits > 0``. Grid axes (dims 2, 3, 4) are x, y, z.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixal3d.models.registry import register_model
from pixal3d.models.modules.norm import LayerNorm32
from pixal3d.models.sparse.nn import compute_dtype


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that computes in its input's dtype (weights cast when they differ)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight if self.weight.dtype == x.dtype else self.weight.to(x.dtype)
        b = self.bias if self.bias is None or self.bias.dtype == x.dtype else self.bias.to(x.dtype)
        return self._conv_forward(x, w, b)


class ChannelLayerNorm32(LayerNorm32):
    """LayerNorm over the channel axis of ``[B, C, *spatial]`` at every voxel, in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


def pixel_shuffle_3d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """3-D pixel shuffle ``[B, C·f³, H, W, D] → [B, C, f·H, f·W, f·D]``.

    Output voxel ``(f·h + a, f·w + b, f·d + c)``, channel ``k`` takes input channel ``k·f³ + a·f² + b·f + c``
    at ``(h, w, d)`` (``a`` along the first spatial axis).
    """
    b, c, h, w, d = x.shape
    k = c // factor**3
    x = x.reshape(b, k, factor, factor, factor, h, w, d).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, k, h * factor, w * factor, d * factor)


class ResBlock3d(nn.Module):
    """``x + conv2(SiLU(norm2(conv1(SiLU(norm1(x))))))``; channel LayerNorms (affine, eps 1e-5), 3³ convs."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = ChannelLayerNorm32(channels)
        self.norm2 = ChannelLayerNorm32(channels)
        self.conv1 = Conv3d(channels, channels, 3, padding=1)
        self.conv2 = Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + x


class UpsampleBlock3d(nn.Module):
    """Conv3d ``C → 8·C'`` (3³) then :func:`pixel_shuffle_3d` ×2: ``[B, C, R³] → [B, C', (2R)³]``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv3d(in_channels, out_channels * 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle_3d(self.conv(x), 2)


class Fp16Trunk:
    """Mixin for the VAEs (dense and sparse): with ``use_fp16`` the weight layers of the trunk are float16
    (the released layout); input/output layers and norm affines stay float32. The trunk is every module of
    type ``_trunk_weight_types`` inside the submodules named in ``_trunk_modules``. It runs in float16 on
    CUDA/MPS and in float32 on the CPU (see :func:`compute_dtype`)."""

    _trunk_modules: tuple[str, ...] = ("blocks",)
    _trunk_weight_types: tuple[type, ...] = ()
    use_fp16: bool = False

    def _init_fp16(self, use_fp16: bool) -> None:
        self.use_fp16 = False
        if use_fp16:
            self.convert_to_fp16()

    @property
    def dtype(self) -> torch.dtype:
        """Weight dtype of the trunk."""
        return torch.float16 if self.use_fp16 else torch.float32

    def _trunk_weight_layers(self) -> list[nn.Module]:
        return [m for name in self._trunk_modules for m in getattr(self, name).modules()
                if isinstance(m, self._trunk_weight_types)]

    def convert_to_fp16(self) -> None:
        """Trunk weights to float16 (norm affines stay float32), as the released checkpoints."""
        self.use_fp16 = True
        for m in self._trunk_weight_layers():
            m.to(torch.float16)

    def convert_to_fp32(self) -> None:
        """Trunk weights to float32 (avoids per-call casts when running on the CPU)."""
        self.use_fp16 = False
        for m in self._trunk_weight_layers():
            m.to(torch.float32)


def _res_levels(channels: list[int], num_res_blocks: int, transition: type[nn.Module]) -> nn.ModuleList:
    """Flat block list: per width ``channels[i]``, ``num_res_blocks`` :class:`ResBlock3d`, then (except after the
    last width) ``transition(channels[i], channels[i + 1])``."""
    blocks = nn.ModuleList()
    for i, ch in enumerate(channels):
        blocks.extend(ResBlock3d(ch) for _ in range(num_res_blocks))
        if i < len(channels) - 1:
            blocks.append(transition(ch, channels[i + 1]))
    return blocks


def _check_norm_type(norm_type: str) -> None:
    if norm_type != "layer":
        raise ValueError(f"norm_type {norm_type!r} is not supported (the released models use 'layer')")


@register_model("SparseStructureDecoder")
class SparseStructureDecoder(Fp16Trunk, nn.Module):
    """Sparse-structure decoder (official args; ``norm_type`` must be ``"layer"``, the released setting).

    ``forward(z [B, latent_channels, R, R, R]) → [B, out_channels, R·2^(len(channels)-1), …]`` in ``z``'s dtype.
    With ``use_fp16`` the convolutions inside ``middle_block``/``blocks`` hold float16 weights (the released
    layout); they run in float16 on CUDA/MPS and in float32 on the CPU (see :func:`compute_dtype`).
    """

    _trunk_modules = ("middle_block", "blocks")
    _trunk_weight_types = (Conv3d,)

    def __init__(
        self,
        out_channels: int,
        latent_channels: int,
        num_res_blocks: int,
        channels: list[int],
        num_res_blocks_middle: int = 2,
        norm_type: str = "layer",
        use_fp16: bool = False,
    ):
        super().__init__()
        _check_norm_type(norm_type)
        self.out_channels, self.latent_channels, self.channels = out_channels, latent_channels, list(channels)
        self.input_layer = Conv3d(latent_channels, channels[0], 3, padding=1)
        self.middle_block = nn.Sequential(*[ResBlock3d(channels[0]) for _ in range(num_res_blocks_middle)])
        self.blocks = _res_levels(channels, num_res_blocks, UpsampleBlock3d)
        self.out_layer = nn.Sequential(
            ChannelLayerNorm32(channels[-1]), nn.SiLU(), Conv3d(channels[-1], out_channels, 3, padding=1)
        )
        self._init_fp16(use_fp16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input_layer(x)
        h = h.to(compute_dtype(self.dtype, x.device))
        h = self.middle_block(h)
        for block in self.blocks:
            h = block(h)
        return self.out_layer(h.to(x.dtype))


# --------------------------------------------------------------------------------------------------
# encoder (training only)


def pixel_unshuffle_3d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Inverse of :func:`pixel_shuffle_3d`: ``[B, C, f·H, f·W, f·D] → [B, C·f³, H, W, D]``.

    Input voxel ``(f·h + a, f·w + b, f·d + c)``, channel ``k`` goes to channel ``k·f³ + a·f² + b·f + c`` at
    ``(h, w, d)``.
    """
    b, c, H, W, D = x.shape
    if H % factor or W % factor or D % factor:
        raise ValueError(f"spatial size {(H, W, D)} is not divisible by {factor}")
    x = x.reshape(b, c, H // factor, factor, W // factor, factor, D // factor, factor).permute(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(b, c * factor**3, H // factor, W // factor, D // factor)


class DownsampleBlock3d(nn.Module):
    """``[B, C, 2R…] → [B, C', R…]``: Conv3d with kernel 2 and stride 2 (official key ``conv.weight
    [C', C, 2, 2, 2]``). This is exactly :func:`pixel_unshuffle_3d` (the inverse of the decoder's pixel
    shuffle) followed by a per-voxel linear map with weight ``conv.weight.reshape(C', 8·C)``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv3d(in_channels, out_channels, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def sample_gaussian(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``mean + exp(logvar / 2) · ε`` with ``ε ~ N(0, I)`` drawn on ``mean``'s device (reparameterised)."""
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * eps


@register_model("SparseStructureEncoder")
class SparseStructureEncoder(Fp16Trunk, nn.Module):
    """Sparse-structure encoder (official ``ss_enc_conv3d_16l8_fp16`` layout), mirroring :class:`SparseStructureDecoder`.

    ``input_layer`` Conv3d(in→channels[0]) → per level ``num_res_blocks`` ResBlock3d then (except the last) a
    :class:`DownsampleBlock3d` to the next width → ``middle_block`` (``num_res_blocks_middle`` ResBlock3d at
    ``channels[-1]``) → ``out_layer`` channel-LayerNorm, SiLU, Conv3d(channels[-1]→2·latent_channels).
    Occupancy ``[B, 1, 64, 64, 64]`` with ``channels [32, 128, 512]`` → Gaussian latent ``[B, 8, 16, 16, 16]``.
    Fresh weights: the second conv of every residual block is zero (each block starts as the identity).
    """

    _trunk_modules = ("blocks", "middle_block")
    _trunk_weight_types = (Conv3d,)

    def __init__(
        self,
        in_channels: int,
        latent_channels: int,
        num_res_blocks: int,
        channels: list[int],
        num_res_blocks_middle: int = 2,
        norm_type: str = "layer",
        use_fp16: bool = False,
    ):
        super().__init__()
        _check_norm_type(norm_type)
        self.in_channels, self.latent_channels, self.channels = in_channels, latent_channels, list(channels)
        self.input_layer = Conv3d(in_channels, channels[0], 3, padding=1)
        self.blocks = _res_levels(channels, num_res_blocks, DownsampleBlock3d)
        self.middle_block = nn.Sequential(*[ResBlock3d(channels[-1]) for _ in range(num_res_blocks_middle)])
        self.out_layer = nn.Sequential(
            ChannelLayerNorm32(channels[-1]), nn.SiLU(), Conv3d(channels[-1], 2 * latent_channels, 3, padding=1)
        )
        for m in self.modules():
            if isinstance(m, ResBlock3d):
                nn.init.zeros_(m.conv2.weight)
                nn.init.zeros_(m.conv2.bias)
        self._init_fp16(use_fp16)

    def forward(self, x: torch.Tensor, sample_posterior: bool = False, return_raw: bool = False,
                generator: torch.Generator | None = None):
        """Encode occupancy ``x [B, in_channels, R, R, R]`` (float, 1 = occupied) to the latent
        ``z [B, latent_channels, R/2^(L-1), …]``: the mean, or a posterior sample when ``sample_posterior``.
        With ``return_raw`` returns ``(z, mean, logvar)``. Output dtype = ``x``'s dtype."""
        h = self.input_layer(x)
        h = h.to(compute_dtype(self.dtype, x.device))
        for block in self.blocks:
            h = block(h)
        h = self.middle_block(h)
        h = self.out_layer(h.to(x.dtype))
        mean, logvar = h.chunk(2, dim=1)
        z = sample_gaussian(mean, logvar, generator) if sample_posterior else mean
        return (z, mean, logvar) if return_raw else z
