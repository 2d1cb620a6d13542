"""Structured-latent (SC-VAE) decoders: ``SparseUnetVaeDecoder`` and ``FlexiDualGridVaeDecoder``.

Both map a sparse latent (``[N, latent_channels]`` at grid ``res/16``) through ConvNeXt blocks and
channel→spatial up-blocks to per-voxel outputs at grid ``res``. Each up-block doubles the resolution; which
children exist is decided by subdivision logits (``> 0``): predicted by the shape decoder
(``pred_subdiv=True``), or given by the caller (the texture decoder is guided by the shape decoder's
``subs`` so both end on the same voxels, in the same row order).

The mesh extraction of the official ``FlexiDualGridVaeDecoder.forward`` is not part of the model here:
``forward`` returns the raw 7-channel output and :meth:`FlexiDualGridVaeDecoder.heads` turns it into the
dual-grid quantities consumed by ``pixal3d.ovoxel.dual_grid``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from pixal3d.models.registry import register_model
from pixal3d.models.sparse.conv import SparseConv3d
from pixal3d.models.modules.norm import LayerNorm32
from pixal3d.models.sparse.nn import Linear, SparseLinear, compute_dtype
from pixal3d.models.sparse.spatial import ChannelToSpatial, spatial_to_channel
from pixal3d.core.sparse_tensor import SparseTensor
from pixal3d.models.ss_vae import Fp16Trunk, sample_gaussian
from pixal3d.utils.coords import CoordIndex, unique_rows


def _maybe_checkpoint(module: nn.Module, fn, *args):
    """Run ``fn(*args)`` under gradient checkpointing when the module trains with ``use_checkpoint``."""
    if module.use_checkpoint and module.training and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class SparseConvNeXtBlock3d(nn.Module):
    """``x + mlp(norm(conv(x)))``: submanifold conv C→C, LayerNorm (affine, eps 1e-6, float32),
    Linear(C→4C) → SiLU → Linear(4C→C). Features ``[N, C] → [N, C]`` on the same coordinates."""

    def __init__(self, channels: int, mlp_ratio: float = 4.0, use_checkpoint: bool = False):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        hidden = int(channels * mlp_ratio)
        self.norm = LayerNorm32(channels, eps=1e-6)
        self.conv = SparseConv3d(channels, channels, 3)
        self.mlp = nn.Sequential(Linear(channels, hidden), nn.SiLU(), Linear(hidden, channels))

    def _forward(self, x: SparseTensor) -> SparseTensor:
        h = self.conv(x).feats
        return x.replace(x.feats + self.mlp(self.norm(h)))

    def forward(self, x: SparseTensor) -> SparseTensor:
        return _maybe_checkpoint(self, self._forward, x)


class SparseResBlockC2S3d(nn.Module):
    """Residual channel→spatial up-block ``C → C'`` (resolution ×2).

    ``forward(x [Np, C], subdiv=None)``: the subdivision logits ``[Np, 8]`` come from ``to_subdiv(x)`` when
    ``pred_subdiv`` else from ``subdiv`` (a sparse tensor on ``x``'s coordinates). Returns the children
    ``[Nc, C']`` (and the predicted logits when ``pred_subdiv``). A block that predicts may still be given
    ``subdiv`` (teacher forcing in training): the children then follow ``subdiv`` and the returned logits
    are the predicted ones. A block that decides itself adds ``subdiv_bias`` (0 in the official decoders) to its
    logits before the ``> 0`` test, then applies ``subdiv_filter`` (when set: ``(parent coords [Np, 4] int32,
    logits [Np, 8]) → logits [Np, 8]``, e.g. the silhouette constraint), and returns the logits it decided with.
    """

    def __init__(self, channels: int, out_channels: int | None = None, use_checkpoint: bool = False, pred_subdiv: bool = True):
        super().__init__()
        out_channels = out_channels or channels
        if channels % 8 or out_channels % (channels // 8):
            raise ValueError(f"C2S block needs channels divisible by 8 and out_channels by channels/8, got {channels}→{out_channels}")
        self.channels, self.out_channels = channels, out_channels
        self.use_checkpoint, self.pred_subdiv = use_checkpoint, pred_subdiv
        self.subdiv_bias = 0.0
        self.subdiv_filter: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        self.norm1 = LayerNorm32(channels, eps=1e-6)
        self.norm2 = LayerNorm32(out_channels, elementwise_affine=False, eps=1e-6)
        self.conv1 = SparseConv3d(channels, out_channels * 8, 3)
        self.conv2 = SparseConv3d(out_channels, out_channels, 3)
        if pred_subdiv:
            self.to_subdiv = SparseLinear(channels, 8)

    def _forward(self, x: SparseTensor, subdiv: SparseTensor | None):
        predicted = self.to_subdiv(x) if self.pred_subdiv else None
        if subdiv is None:
            if predicted is None:
                raise ValueError("a decoder with pred_subdiv=False needs guide subdivisions")
            if self.subdiv_bias:
                predicted = predicted.replace(predicted.feats + self.subdiv_bias)
            if self.subdiv_filter is not None:
                predicted = predicted.replace(self.subdiv_filter(predicted.coords, predicted.feats))
            subdiv = predicted
        elif subdiv.feats.shape != (x.feats.shape[0], 8):
            raise ValueError(f"guide subdivision {tuple(subdiv.feats.shape)} does not fit {x.feats.shape[0]} parent voxels")
        h = self.conv1(x.replace(F.silu(self.norm1(x.feats))))
        plan = ChannelToSpatial(x.coords, subdiv.feats > 0)
        h = plan.apply(h.feats)
        skip = plan.apply(x.feats).feats.repeat_interleave(self.out_channels // (self.channels // 8), dim=1)
        h = self.conv2(h.replace(F.silu(self.norm2(h.feats))))
        h = h.replace(h.feats + skip)
        return (h, predicted) if self.pred_subdiv else h

    def forward(self, x: SparseTensor, subdiv: SparseTensor | None = None):
        return _maybe_checkpoint(self, self._forward, x, subdiv)


_BLOCKS = {"SparseConvNeXtBlock3d": SparseConvNeXtBlock3d}
_UP_BLOCKS = {"SparseResBlockC2S3d": SparseResBlockC2S3d}


def _block_class(table: dict, name: str) -> type[nn.Module]:
    if name not in table:
        raise ValueError(f"block type {name!r} is not implemented (known: {', '.join(table)})")
    return table[name]


def _unet_levels(model_channels: list[int], num_blocks: list[int], block_type: list[str], block_args: list[dict[str, Any]],
                 transition_type: list[str], transitions: dict, **transition_kwargs) -> nn.ModuleList:
    """One ``nn.ModuleList`` per level ``i``: ``num_blocks[i]`` blocks of ``block_type[i]`` at ``model_channels[i]``,
    then (except the last level) a ``transition_type[i]`` block (looked up in ``transitions``) to
    ``model_channels[i + 1]``, built with ``transition_kwargs`` and ``block_args[i]``."""
    levels = nn.ModuleList()
    for i, n in enumerate(num_blocks):
        level = nn.ModuleList(_block_class(_BLOCKS, block_type[i])(model_channels[i], **block_args[i]) for _ in range(n))
        if i < len(num_blocks) - 1:
            transition = _block_class(transitions, transition_type[i])
            level.append(transition(model_channels[i], model_channels[i + 1], **transition_kwargs, **block_args[i]))
        levels.append(level)
    return levels


class _SparseFp16Trunk(Fp16Trunk):
    """:class:`Fp16Trunk` over the conv/linear layers inside ``blocks``."""

    _trunk_weight_types = (SparseConv3d, nn.Linear)


@register_model("SparseUnetVaeDecoder")
class SparseUnetVaeDecoder(_SparseFp16Trunk, nn.Module):
    """Sparse U-Net VAE decoder (official args). Level ``i`` has ``num_blocks[i]`` blocks of ``block_type[i]``
    at ``model_channels[i]`` followed (except the last level) by an ``up_block_type[i]`` block to level i+1.

    ``forward(x [N, latent_channels] at grid r) → [M, out_channels]`` at grid ``r·2^(levels-1)``, float32
    (the input's dtype). With ``use_fp16`` the conv/linear weights inside ``blocks`` are float16 (the released
    layout) and run in float16 on CUDA/MPS, in float32 on the CPU (:func:`compute_dtype`).
    """

    def __init__(
        self,
        out_channels: int,
        model_channels: list[int],
        latent_channels: int,
        num_blocks: list[int],
        block_type: list[str],
        up_block_type: list[str],
        block_args: list[dict[str, Any]],
        use_fp16: bool = False,
        pred_subdiv: bool = True,
    ):
        super().__init__()
        self.out_channels, self.model_channels = out_channels, list(model_channels)
        self.num_blocks, self.pred_subdiv = list(num_blocks), pred_subdiv
        self.output_layer = SparseLinear(model_channels[-1], out_channels)
        self.from_latent = SparseLinear(latent_channels, model_channels[0])
        self.blocks = _unet_levels(model_channels, num_blocks, block_type, block_args, up_block_type, _UP_BLOCKS,
                                   pred_subdiv=pred_subdiv)
        self._init_fp16(use_fp16)

    def _levels(self, x: SparseTensor, guide_subs: list[SparseTensor] | None, stop_level: int | None = None):
        """Run ``from_latent`` and the levels; returns (h, subs). Stops before level ``stop_level``.

        ``guide_subs`` steer the up-blocks (with ``pred_subdiv`` too: teacher forcing, ``subs`` stay predicted)."""
        h = self.from_latent(x)
        h = h.type(compute_dtype(self.dtype, x.device))
        subs: list[SparseTensor] = []
        for i, level in enumerate(self.blocks):
            if i == stop_level:
                break
            for j, block in enumerate(level):
                if i < len(self.blocks) - 1 and j == len(level) - 1:
                    if self.pred_subdiv:
                        h, sub = block(h, guide_subs[i] if guide_subs is not None else None)
                        subs.append(sub)
                    else:
                        h = block(h, guide_subs[i])
                else:
                    h = block(h)
        return h, subs

    def forward(self, x: SparseTensor, guide_subs: list[SparseTensor] | None = None, return_subs: bool = False):
        """Decode ``x``. ``guide_subs`` (only when ``pred_subdiv=False``): one logit tensor ``[N_i, 8]`` per
        up-block, on the coordinates reaching it. Returns the output sparse tensor, plus the list of
        predicted subdivision logits when ``return_subs`` (only when ``pred_subdiv=True``)."""
        if self.pred_subdiv and guide_subs is not None:
            raise ValueError("guide_subs needs a decoder built with pred_subdiv=False")
        if not self.pred_subdiv and (guide_subs is None or len(guide_subs) != len(self.blocks) - 1):
            raise ValueError(f"a decoder with pred_subdiv=False needs {len(self.blocks) - 1} guide_subs")
        if return_subs and not self.pred_subdiv:
            raise ValueError("return_subs needs a decoder built with pred_subdiv=True")
        h, subs = self._levels(x, guide_subs)
        h = h.type(x.dtype)
        h = self.output_layer(h.replace(F.layer_norm(h.feats, h.feats.shape[-1:])))
        return (h, subs) if return_subs else h

    @torch.no_grad()
    def upsample(self, x: SparseTensor, upsample_times: int) -> torch.Tensor:
        """Coordinates ``[M, 4]`` int32 reached after ``upsample_times`` up-blocks (grid ×2^upsample_times),
        in the decoder's row order; only the predicted subdivisions matter (features are discarded)."""
        if not self.pred_subdiv:
            raise ValueError("upsample needs a decoder that predicts its subdivisions")
        if not 0 <= upsample_times < len(self.blocks):
            raise ValueError(f"upsample_times must be in [0, {len(self.blocks) - 1}], got {upsample_times}")
        h, _ = self._levels(x, None, stop_level=upsample_times)
        return h.coords


@register_model("FlexiDualGridVaeDecoder")
class FlexiDualGridVaeDecoder(SparseUnetVaeDecoder):
    """Shape decoder: a :class:`SparseUnetVaeDecoder` with 7 outputs that predicts its subdivisions.

    ``forward(x) → (raw [M, 7] at grid `resolution`, subs)``; ``subs`` = the subdivision logits of each
    up-block (``[N_i, 8]`` at the parent resolution), to guide the texture decoder. Channels of ``raw``:
    0:3 dual-vertex offset logits, 3:6 edge-intersection logits (x, y, z), 6 split-weight logit.

    ``subdivision_bias`` (this project's models; 0, the official behaviour, by default) is added to every
    subdivision logit the decoder decides with, outside teacher forcing: a positive bias keeps children the
    classifier is unsure of. A small model's decoder misses children on generated latents, which leaves holes;
    ``pixal3d train-default --steps calibrate`` chooses the bias on held-out assets and writes it here.
    """

    def __init__(
        self,
        resolution: int,
        model_channels: list[int],
        latent_channels: int,
        num_blocks: list[int],
        block_type: list[str],
        up_block_type: list[str],
        block_args: list[dict[str, Any]],
        voxel_margin: float = 0.5,
        use_fp16: bool = False,
        subdivision_bias: float = 0.0,
    ):
        super().__init__(7, model_channels, latent_channels, num_blocks, block_type, up_block_type, block_args, use_fp16)
        self.resolution = resolution
        self.voxel_margin = voxel_margin
        self.set_subdivision_bias(subdivision_bias)

    def set_subdivision_bias(self, bias: float) -> None:
        """Set the bias added to the subdivision logits the decoder decides with (class docstring)."""
        bias = float(bias)
        if not math.isfinite(bias):
            raise ValueError(f"subdivision_bias must be a finite number, got {bias}")
        self.subdivision_bias = bias
        for module in self.modules():
            if isinstance(module, SparseResBlockC2S3d):
                module.subdiv_bias = bias

    def set_resolution(self, resolution: int) -> None:
        """Set the output grid resolution used by the mesh extraction (1024…1536 in the pipeline)."""
        self.resolution = resolution

    def set_subdivision_filter(self, fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None) -> None:
        """Let ``fn(parent coords [Np, 4] int32, logits [Np, 8], child grid resolution) → logits [Np, 8]`` revise
        every subdivision this decoder decides (after the bias; children ``s = sx + 2·sy + 4·sz`` at ``2·parent + s``),
        or remove it (``None``). The child resolutions follow from :attr:`resolution` at this call: set it first."""
        ups = [level[-1] for level in self.blocks[:-1]]
        for i, block in enumerate(ups):
            child = self.resolution // 2 ** (len(ups) - 1 - i)
            block.subdiv_filter = None if fn is None else (lambda c, l, r=child: fn(c, l, r))

    def forward(self, x: SparseTensor, teacher_subs: list[SparseTensor] | None = None,  # type: ignore[override]
                ) -> tuple[SparseTensor, list[SparseTensor]]:
        """Decode ``x``. ``teacher_subs`` (training): one logit tensor ``[N_i, 8]`` per up-block, on the
        coordinates reaching it, used instead of the predictions to subdivide (teacher forcing); the
        returned ``subs`` are always the predicted logits, on the same coordinates."""
        if teacher_subs is None:
            return super().forward(x, return_subs=True)
        if len(teacher_subs) != len(self.blocks) - 1:
            raise ValueError(f"teacher_subs needs {len(self.blocks) - 1} subdivision tensors, got {len(teacher_subs)}")
        h, subs = self._levels(x, teacher_subs)
        h = h.type(x.dtype)
        return self.output_layer(h.replace(F.layer_norm(h.feats, h.feats.shape[-1:]))), subs

    def heads(self, raw: SparseTensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eval-mode output heads of the raw 7 channels ``[M, 7]``:

        * dual-vertex offset ``[M, 3]`` in voxel units: ``(1 + 2·margin)·sigmoid(o[:, 0:3]) − margin``,
        * intersected ``[M, 3]`` bool: ``o[:, 3:6] > 0`` (edge crossings along x, y, z),
        * split weight ``[M, 1]``: ``softplus(o[:, 6:7])``.
        """
        o = raw.feats.float()
        m = self.voxel_margin
        return (1 + 2 * m) * torch.sigmoid(o[:, 0:3]) - m, o[:, 3:6] > 0, F.softplus(o[:, 6:7])


# --------------------------------------------------------------------------------------------------
# encoders (training only): O-Voxel features at grid `res` → Gaussian latent at grid res/16


class SparseResBlockS2C3d(nn.Module):
    """Residual spatial→channel down-block ``C → C'`` (resolution ÷2), the mirror of :class:`SparseResBlockC2S3d`.

    1. ``h = conv1(SiLU(norm1(x)))`` — norm1 LayerNorm(C, affine, eps 1e-6); conv1 submanifold 3×3×3 ``C → C'/8``
       at the child resolution.
    2. Spatial→channel (:func:`pixal3d.models.sparse.spatial.spatial_to_channel`) on both ``h`` and ``x``: parent ``coords // 2`` (lexicographic order), the parent's
       channels = its 8 children's channels in child order ``s = sx + 2·sy + 4·sz`` (zeros for absent children):
       ``h`` gives ``C'`` channels, ``x`` gives ``8·C``.
    3. ``h = conv2(SiLU(norm2(h)))`` — norm2 LayerNorm(C') without affine; conv2 submanifold ``C' → C'``
       (zero at initialisation, so a fresh block passes the skip through).
    4. skip = the ``8·C`` parent channels averaged in consecutive groups of ``8·C/C'``; output ``h + skip``.

    Keys: ``norm1.{weight,bias}``, ``conv1.{weight [C'/8,3,3,3,C], bias}``, ``conv2.{weight [C',3,3,3,C'], bias}``.
    """

    def __init__(self, channels: int, out_channels: int | None = None, use_checkpoint: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        if out_channels % 8 or (8 * channels) % out_channels:
            raise ValueError(f"S2C block needs out_channels divisible by 8 and dividing 8·channels, got {channels}→{out_channels}")
        self.channels, self.out_channels, self.use_checkpoint = channels, out_channels, use_checkpoint
        self.norm1 = LayerNorm32(channels, eps=1e-6)
        self.norm2 = LayerNorm32(out_channels, elementwise_affine=False, eps=1e-6)
        self.conv1 = SparseConv3d(channels, out_channels // 8, 3)
        self.conv2 = SparseConv3d(out_channels, out_channels, 3)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def _forward(self, x: SparseTensor) -> SparseTensor:
        h = self.conv1(x.replace(F.silu(self.norm1(x.feats))))
        c_h, c_x = h.feats.shape[1], x.feats.shape[1]
        # one spatial→channel pass over [h | x] so both share the parent coordinates (and their cache)
        parents, _ = spatial_to_channel(x.replace(torch.cat([h.feats, x.feats.to(h.feats.dtype)], 1)))
        stacked = parents.feats.reshape(-1, 8, c_h + c_x)
        n = stacked.shape[0]
        hp = parents.replace(stacked[:, :, :c_h].reshape(n, 8 * c_h))
        skip = stacked[:, :, c_h:].reshape(n, self.out_channels, 8 * c_x // self.out_channels).mean(-1)
        h = self.conv2(hp.replace(F.silu(self.norm2(hp.feats))))
        return h.replace(h.feats + skip)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return _maybe_checkpoint(self, self._forward, x)


_DOWN_BLOCKS = {"SparseResBlockS2C3d": SparseResBlockS2C3d}


@register_model("SparseUnetVaeEncoder")
class SparseUnetVaeEncoder(_SparseFp16Trunk, nn.Module):
    """Sparse U-Net VAE encoder (official args; texture encoder ``tex_enc_next_dc_f16c32_fp16``).

    ``input_layer`` SparseLinear(in→model_channels[0]) → level ``i``: ``num_blocks[i]`` blocks of ``block_type[i]``
    at ``model_channels[i]``, then (except the last level) a ``down_block_type[i]`` block to ``model_channels[i+1]``
    at half the resolution → LayerNorm (no affine, eps 1e-5, float32) → ``to_latent`` SparseLinear(→2·latent).
    Input features ``[N, in_channels]`` at grid ``r`` → latent ``[M, latent_channels]`` at grid ``r / 2^(levels-1)``
    on the coordinates ``unique(coords // 2^(levels-1))`` (lexicographic). With ``use_fp16`` the weights inside
    ``blocks`` are float16 and run in float16 on CUDA/MPS, float32 on the CPU (:func:`compute_dtype`).
    Fresh weights: Xavier-uniform linear layers with zero bias, zero second conv in the down-blocks.
    """

    def __init__(
        self,
        in_channels: int,
        model_channels: list[int],
        latent_channels: int,
        num_blocks: list[int],
        block_type: list[str],
        down_block_type: list[str],
        block_args: list[dict[str, Any]],
        use_fp16: bool = False,
    ):
        super().__init__()
        levels = len(num_blocks)
        if not (len(model_channels) == len(block_type) == len(block_args) == levels and len(down_block_type) == levels - 1):
            raise ValueError("model_channels, num_blocks, block_type and block_args need one entry per level, "
                             "down_block_type one fewer")
        self.in_channels, self.model_channels = in_channels, list(model_channels)
        self.latent_channels, self.num_blocks = latent_channels, list(num_blocks)
        self.input_layer = SparseLinear(in_channels, model_channels[0])
        self.to_latent = SparseLinear(model_channels[-1], 2 * latent_channels)
        self.blocks = _unet_levels(model_channels, num_blocks, block_type, block_args, down_block_type, _DOWN_BLOCKS)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self._init_fp16(use_fp16)

    def forward(self, x: SparseTensor, sample_posterior: bool = False, return_raw: bool = False,
                generator: torch.Generator | None = None):
        """Encode ``x`` (features ``[N, in_channels]``, coords ``(b, x, y, z)`` at grid ``r``).

        Returns the latent SparseTensor ``z`` (the mean, or a reparameterised posterior sample when
        ``sample_posterior``); with ``return_raw`` ``(z, mean, logvar)``, all on the latent coordinates, in
        ``x``'s dtype.
        """
        h = self.input_layer(x)
        h = h.type(compute_dtype(self.dtype, x.device))
        for level in self.blocks:
            for block in level:
                h = block(h)
        h = h.type(x.dtype)
        h = self.to_latent(h.replace(F.layer_norm(h.feats.float(), h.feats.shape[-1:]).to(x.dtype)))
        mean, logvar = h.feats.chunk(2, dim=1)
        z = h.replace(sample_gaussian(mean, logvar, generator) if sample_posterior else mean)
        return (z, h.replace(mean), h.replace(logvar)) if return_raw else z


@register_model("FlexiDualGridVaeEncoder")
class FlexiDualGridVaeEncoder(SparseUnetVaeEncoder):
    """Shape encoder (``shape_enc_next_dc_f16c32_fp16``): a :class:`SparseUnetVaeEncoder` with 6 inputs per voxel,
    ``[dual-vertex offset − 0.5 (3), intersected − 0.5 (3)]`` (offsets in voxel units, nominally [0, 1]; the split
    weight is not encoded). ``forward(vertices, intersected)`` takes two SparseTensors on the same coordinates:
    ``[N, 3]`` float offsets and ``[N, 3]`` bool/float edge flags (x, y, z)."""

    def __init__(
        self,
        model_channels: list[int],
        latent_channels: int,
        num_blocks: list[int],
        block_type: list[str],
        down_block_type: list[str],
        block_args: list[dict[str, Any]],
        use_fp16: bool = False,
    ):
        super().__init__(6, model_channels, latent_channels, num_blocks, block_type, down_block_type, block_args, use_fp16)

    def forward(self, vertices: SparseTensor, intersected: SparseTensor, sample_posterior: bool = False,  # type: ignore[override]
                return_raw: bool = False, generator: torch.Generator | None = None):
        vertices._same_coords(intersected)
        feats = torch.cat([vertices.feats - 0.5, intersected.feats.to(vertices.feats.dtype) - 0.5], dim=1)
        return super().forward(vertices.replace(feats), sample_posterior, return_raw, generator)


def subdivision_guides(latent_coords: torch.Tensor, fine_coords: torch.Tensor, num_up: int) -> list[torch.Tensor]:
    """Ground-truth subdivision masks that make the decoders' up-blocks reproduce ``fine_coords``.

    Args:
        latent_coords: ``[N0, 4]`` int (b, x, y, z) at grid ``r``, in the decoder's input row order (e.g. the
            encoder's latent coordinates).
        fine_coords: ``[M, 4]`` int target voxels at grid ``r · 2^num_up`` (e.g. the O-Voxel coords).
        num_up: number of C2S up-blocks.

    Returns:
        ``num_up`` bool masks, mask ``i`` ``[N_i, 8]`` on the coordinates reaching up-block ``i`` in the decoder's
        row order (child ``s`` of a parent present iff some fine voxel lies inside it). As logits
        (``mask.float() * 2 - 1``) they are the ``guide_subs`` of :class:`SparseUnetVaeDecoder`; as
        targets they supervise :class:`FlexiDualGridVaeDecoder`'s ``subs``.
    """
    coords = latent_coords.int()
    fine = fine_coords.long()
    masks = []
    offsets = torch.tensor([[s % 2, (s // 2) % 2, s // 4] for s in range(8)], dtype=torch.long, device=coords.device)
    for i in range(num_up):
        target = fine.clone()
        target[:, 1:] //= 2 ** (num_up - 1 - i)
        target = unique_rows(target)
        index = CoordIndex(target)
        children = coords.long()[:, None, :].repeat(1, 8, 1)
        children[:, :, 1:] = children[:, :, 1:] * 2 + offsets
        mask = index.lookup(children) >= 0
        masks.append(mask)
        coords = ChannelToSpatial(coords, mask).coords
    return masks
