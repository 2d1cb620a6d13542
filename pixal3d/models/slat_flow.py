"""Structured-latent flows: sparse-token transformers predicting the SLat velocity.

Official classes ``SLatFlowModel`` and ``ElasticSLatFlowModel`` (the latter adds a training-only
memory controller, so both are the same network here); checkpoints ``slat_flow_img2shape_dit_1_3B_{512,1024}_bf16``
and ``slat_flow_imgshape2tex_dit_1_3B_1024_bf16``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from pixal3d.models.modules.blocks import FlowTransformer
from pixal3d.models.modules.rope import RotaryEmbedder3D
from pixal3d.models.registry import register_model
from pixal3d.core.sparse_tensor import SparseTensor


@register_model("SLatFlowModel")
class SLatFlowModel(FlowTransformer):
    """Velocity of a sparse latent: SparseTensor ``x`` (feats ``[N, C_x]`` float32) → SparseTensor ``[N, out]``.

    * ``concat_cond`` (SparseTensor or feats ``[N, C_c]``, row-aligned): concatenated after the noise,
      ``in_channels = C_x + C_c`` (texture flow: noise 32 ‖ normalised shape latent 32).
    * ``cond`` for ``image_attn_mode='proj'``: ``{'global': [B, M, cond_channels], 'proj': SparseTensor or feats
      [N, proj_in]}`` (row-aligned with ``x``); for ``'cross'``: a tensor ``[B, M, cond_channels]``.
    * ``t`` ``[B]`` is the ×1000 flow time. RoPE positions are the voxel coords ``coords[:, 1:]``.
    * ``resolution`` is stored for checkpoint compatibility; with RoPE it has no effect.
    """

    def __init__(self, resolution: int, in_channels: int, model_channels: int, cond_channels: int, out_channels: int,
                 num_blocks: int, **kwargs):
        super().__init__(in_channels, model_channels, cond_channels, out_channels, num_blocks, **kwargs)
        self.resolution = resolution
        self.rope = RotaryEmbedder3D(self.head_dim, self.rope_freq)

    def rope_phases(self, x: SparseTensor) -> torch.Tensor:
        """float32 (cos, sin) phases ``[N, head_dim/2, 2]`` of ``x``'s voxel coords (cached on the coords)."""
        key = ("rope_phases", self.head_dim, self.rope_freq, str(x.device))
        if key not in x.cache:
            x.cache[key] = self.rope.phases(x.coords[:, 1:].to(x.device))
        return x.cache[key]

    def forward(self, x: SparseTensor, t: torch.Tensor, cond: Mapping | tuple | torch.Tensor,
                concat_cond: SparseTensor | torch.Tensor | None = None) -> SparseTensor:
        feats = x.feats
        if concat_cond is not None:
            extra = concat_cond.feats if isinstance(concat_cond, SparseTensor) else concat_cond
            feats = torch.cat([feats, extra.to(feats.dtype)], dim=-1)
        if feats.shape[-1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels (noise ‖ concat_cond), got {feats.shape[-1]}")
        h = x.replace(self.input_layer(feats.float()))
        h = self.run_trunk(h, t, cond, self.rope_phases(x))
        return h.replace(self.out_layer(h.feats))


@register_model("ElasticSLatFlowModel")
class ElasticSLatFlowModel(SLatFlowModel):
    """The official training variant (elastic gradient checkpointing); identical to :class:`SLatFlowModel` at inference."""
