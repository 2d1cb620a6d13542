"""Diffusion-time embedding of the flow transformers (official ``TimestepEmbedder``)."""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of ``t`` ``[B]`` (any float dtype, the ×1000 model time) → float32 ``[B, dim]``.

    ``half = dim // 2`` frequencies ``f_i = exp(-ln(max_period)·i/half)``; output ``[cos(t·f), sin(t·f)]``
    (cos first), plus one zero column when ``dim`` is odd.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """``t [B]`` → ``[B, hidden_size]``: 256-dim sinusoid → Linear → SiLU → Linear (keys ``mlp.0``, ``mlp.2``).

    Computed in the dtype of the MLP weights (float32 in every official flow).
    """

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_sinusoid(t, self.frequency_embedding_size)
        weight = self.mlp[0].weight  # a method on a dynamically quantised Linear, which takes float32
        return self.mlp(emb.to(weight.dtype if isinstance(weight, torch.Tensor) else torch.float32))
