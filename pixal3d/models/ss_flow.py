"""Sparse-structure flow: a dense 16³-token transformer predicting the SS-latent velocity.

Official class ``SparseStructureFlowModel`` (checkpoint ``ss_flow_img_dit_1_3B_64_bf16``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from pixal3d.models.modules.blocks import FlowTransformer
from pixal3d.models.modules.rope import RotaryEmbedder3D
from pixal3d.models.registry import register_model


def grid_positions(resolution: int, device: torch.device | str | None = None) -> torch.Tensor:
    """int64 ``[R³, 3]`` grid indices ``(i, j, k)`` in C order (token ``n = i·R² + j·R + k``)."""
    axis = torch.arange(resolution, device=device)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


@register_model("SparseStructureFlowModel")
class SparseStructureFlowModel(FlowTransformer):
    """Velocity of the dense sparse-structure latent: ``x [B, in, R, R, R]`` → ``[B, out, R, R, R]`` float32.

    Tokens are the ``R³`` grid cells in C order; RoPE positions are their ``(i, j, k)`` indices. The
    checkpoint key ``rope_phases`` (complex64 ``[R³, head_dim/2]``) is a persistent buffer for state-dict
    parity; whatever a checkpoint stores there is ignored and the phases are recomputed on load.

    ``cond`` for ``image_attn_mode='proj'``: ``{'global': [B, M, cond_channels], 'proj': [B, R³, proj_in]}``
    (or the tuple ``(global, proj)``); for ``'cross'``: a tensor ``[B, M, cond_channels]``.
    ``t`` ``[B]`` is the ×1000 flow time.
    """

    def __init__(self, resolution: int, in_channels: int, model_channels: int, cond_channels: int, out_channels: int,
                 num_blocks: int, **kwargs):
        super().__init__(in_channels, model_channels, cond_channels, out_channels, num_blocks, **kwargs)
        self.resolution = resolution
        self.rope = RotaryEmbedder3D(self.head_dim, self.rope_freq)
        self.register_buffer("rope_phases", self._compute_phases(self.input_layer.weight.device))

    def _compute_phases(self, device: torch.device | str) -> torch.Tensor:
        return self.rope.complex_phases(grid_positions(self.resolution, device))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # ``rope_phases`` is derived data: accept a checkpoint with or without it and never copy it.
        state_dict.pop(prefix + "rope_phases", None)
        self._non_persistent_buffers_set.add("rope_phases")
        try:
            super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                          error_msgs)
        finally:
            self._non_persistent_buffers_set.discard("rope_phases")
        if self.rope_phases.is_meta:
            device = self.input_layer.weight.device
            self.rope_phases = self._compute_phases("cpu" if device.type == "meta" else device)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Mapping | tuple | torch.Tensor) -> torch.Tensor:
        r = self.resolution
        if tuple(x.shape[1:]) != (self.in_channels, r, r, r):
            raise ValueError(f"expected x [B, {self.in_channels}, {r}, {r}, {r}], got {tuple(x.shape)}")
        h = x.reshape(x.shape[0], self.in_channels, -1).transpose(1, 2)
        h = self.input_layer(h.float())
        rope = torch.view_as_real(self.rope_phases)
        h = self.run_trunk(h, t, cond, rope)
        h = self.out_layer(h)
        return h.transpose(1, 2).reshape(x.shape[0], self.out_channels, r, r, r)
