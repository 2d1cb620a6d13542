"""Normalisation layers of the flow transformers, all computed in float32."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm32(nn.LayerNorm):
    """LayerNorm over the last axis evaluated on the float32 input, result cast back to the input dtype (the
    sparse VAEs and the flows keep their affine parameters float32 in every precision mode)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class MultiHeadRMSNorm(nn.Module):
    """Per-head RMS norm of q/k ``[..., heads, head_dim]``: ``normalize(x)·gamma[h]·sqrt(head_dim)``.

    ``gamma`` is float32 ``[heads, head_dim]``; the math is float32 and the result has the input dtype.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.scale = math.sqrt(dim)
        self.gamma = nn.Parameter(torch.ones(heads, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (F.normalize(x.float(), dim=-1) * self.gamma * self.scale).to(x.dtype)
