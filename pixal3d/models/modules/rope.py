"""3-D rotary position embedding of the flow transformers (interleaved complex pairs).

A head of ``head_dim`` channels holds ``head_dim/2`` complex pairs ``(2k, 2k+1)`` = (real, imag).
Each of the 3 axes gets ``freq_dim = head_dim // 2 // 3`` frequencies ``f_j = base / theta^(j/freq_dim)``;
the phase vector of an integer position ``(x, y, z)`` is ``[x·f, y·f, z·f]`` padded with zero phases
to ``head_dim/2``. Phases are kept as real ``[..., head_dim/2, 2]`` = (cos, sin) pairs so the rotation
needs no complex kernels (MPS).
"""

from __future__ import annotations

import torch


class RotaryEmbedder3D:
    """Phase table and rotation for ``head_dim`` channels over 3 integer axes."""

    def __init__(self, head_dim: int, rope_freq: tuple[float, float] = (1.0, 10000.0)):
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
        self.head_dim = head_dim
        self.freq_dim = head_dim // 2 // 3
        self.rope_freq = (float(rope_freq[0]), float(rope_freq[1]))

    def frequencies(self, device: torch.device | str | None = None) -> torch.Tensor:
        """float32 ``[freq_dim]`` angular frequencies ``base / theta^(j/freq_dim)``."""
        j = torch.arange(self.freq_dim, dtype=torch.float32, device=device) / self.freq_dim
        return self.rope_freq[0] / (self.rope_freq[1] ** j)

    def angles(self, positions: torch.Tensor) -> torch.Tensor:
        """Integer (or float) positions ``[..., 3]`` → float32 phase angles ``[..., head_dim/2]`` (zero-padded)."""
        freqs = self.frequencies(positions.device)
        ang = (positions.reshape(-1, 1).float() * freqs).reshape(*positions.shape[:-1], -1)
        pad = self.head_dim // 2 - ang.shape[-1]
        if pad:
            ang = torch.cat([ang, ang.new_zeros(*ang.shape[:-1], pad)], dim=-1)
        return ang

    def phases(self, positions: torch.Tensor) -> torch.Tensor:
        """Positions ``[..., 3]`` → float32 ``[..., head_dim/2, 2]`` (cos, sin) pairs."""
        ang = self.angles(positions)
        return torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1)

    def complex_phases(self, positions: torch.Tensor) -> torch.Tensor:
        """Positions ``[..., 3]`` → complex64 ``[..., head_dim/2]`` unit phasors (the official buffer form)."""
        ang = self.angles(positions)
        return torch.polar(torch.ones_like(ang), ang)

    @staticmethod
    def rotate(x: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
        """Rotate ``x [..., L, heads, head_dim]`` by ``phases [..., L, head_dim/2, 2]`` (broadcast over heads).

        Computed in float32; returns ``x``'s dtype.
        """
        xp = x.float().reshape(*x.shape[:-1], -1, 2)
        re, im = xp[..., 0], xp[..., 1]
        cos, sin = phases[..., 0].unsqueeze(-2), phases[..., 1].unsqueeze(-2)
        out = torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1)
        return out.reshape(x.shape).to(x.dtype)
