"""NAF feature upsampler (``valeoai/NAF``, ``naf_release.pth``) in pure PyTorch.

NAF upsamples a low-resolution feature map ``F [B, C, h, w]`` (the DINOv3 patch map) to ``T × T``
guided by the image in ``[0, 1]``. Only the guidance image encoder has weights; the upsampling is a
parameter-free 9×9 neighbourhood attention with dilation ``d = T/h``:

* ``q`` = RoPE(encoder(image) pooled to ``T×T``) ``[B, 256, T, T]`` (4 heads × 64),
* ``k`` = q average-pooled to ``(h, w)`` and ``v`` = ``F``, both nearest-upsampled to ``T×T``,
* NATTEN's dilated window (shifted inward at borders), scale ``64^-0.5``.

Because k and v are constant on ``d×d`` blocks and the dilation equals the block size, output pixel
``(r, c)`` attends exactly to the 81 LR cells ``a ∈ [clamp(r//d − 4, 0, h − 9), +8]`` ×
``b ∈ [clamp(c//d − 4, 0, w − 9), +8]``; head ``n`` mixes channels ``n·C/4 … (n+1)·C/4``. This module
evaluates that form directly, and only at the requested output pixels (:meth:`NAF.upsample_at`), so
the sparse conditioning path never materialises a full ``1024² × 1024`` map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixal3d.errors import UserError
from pixal3d.paths import COMPONENTS, component_path

CHECKPOINT_NAME = "naf_release.pth"


class EncBlock(nn.Module):
    """GroupNorm(8) → SiLU → conv → GroupNorm(8) → SiLU → conv (reflect padding, no residual)."""

    def __init__(self, channels: int, kernel_size: int, groups: int = 8):
        super().__init__()
        pad = kernel_size // 2
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad, padding_mode="reflect")
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.silu(self.norm1(x)))
        return self.conv2(F.silu(self.norm2(x)))


class AxialRoPE(nn.Module):
    """Axial rotate-half RoPE on ``[B, heads·D, H, W]`` maps; buffer ``periods [D/4]`` = ``base^(2j/(D/2))``.

    Pixel ``(i, j)`` of an ``H×W`` map has coords ``((i+0.5)/H·2−1, (j+0.5)/W·2−1)``; angles
    ``2π·coord/period`` ordered ``[y(D/4), x(D/4)]`` tiled twice → D; ``x·cos + rotate_half(x)·sin`` per head.
    """

    def __init__(self, dim: int, heads: int, base: float):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        quarter = self.head_dim // 4
        self.register_buffer("periods", base ** (2 * torch.arange(quarter, dtype=torch.float32) / (self.head_dim // 2)))

    def cos_sin(self, rows: torch.Tensor, cols: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin ``[M, D]`` float32 for pixels ``(rows[M], cols[M])`` of an ``height × width`` map."""
        y = 2.0 * ((rows.float() + 0.5) / height) - 1.0
        x = 2.0 * ((cols.float() + 0.5) / width) - 1.0
        coords = torch.stack([y, x], dim=-1).to(self.periods.device)
        angles = (2 * math.pi * coords[:, :, None] / self.periods[None, None, :]).flatten(1, 2).tile(2)
        return torch.cos(angles), torch.sin(angles)

    def apply(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x [..., M, heads·D]`` (channels last) with per-pixel ``cos/sin [M, D]``."""
        shape = x.shape
        x = x.reshape(*shape[:-1], self.heads, self.head_dim)
        x1, x2 = x.chunk(2, dim=-1)
        rotated = torch.cat([-x2, x1], dim=-1)
        return (x * cos[:, None, :] + rotated * sin[:, None, :]).reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RoPE over a whole map ``[B, heads·D, H, W]`` → same shape."""
        b, c, h, w = x.shape
        rows = torch.arange(h).repeat_interleave(w)
        cols = torch.arange(w).repeat(h)
        cos, sin = self.cos_sin(rows, cols, h, w)
        out = self.apply(x.flatten(2).transpose(1, 2), cos.to(x.dtype), sin.to(x.dtype))
        return out.transpose(1, 2).reshape(b, c, h, w)


class NAFImageEncoder(nn.Module):
    """Guidance encoder: ``encoder`` (1×1 convs) ‖ ``sem_encoder`` (3×3 reflect convs) → 256 ch, then RoPE."""

    def __init__(self, dim: int = 256, heads_rope: int = 4, rope_base: float = 100.0, img_layers: int = 2):
        super().__init__()
        half = dim // 2
        self.encoder = nn.Sequential(nn.Conv2d(3, half, 1), *[EncBlock(half, 1) for _ in range(img_layers)])
        self.sem_encoder = nn.Sequential(
            nn.Conv2d(3, half, 3, padding=1, padding_mode="reflect"), *[EncBlock(half, 3) for _ in range(img_layers)]
        )
        self.rope = AxialRoPE(dim, heads_rope, rope_base)

    def encode(self, image_01: torch.Tensor, output_size: int) -> torch.Tensor:
        """``image_01 [B,3,S,S]`` in [0,1] → encoding before RoPE, adaptive-avg-pooled to ``[B, dim, T, T]``.

        Images larger than ``4T`` are first bilinearly resized to ``4T`` (as NAF does).
        """
        if image_01.shape[-1] > 4 * output_size or image_01.shape[-2] > 4 * output_size:
            side = 4 * output_size
            image_01 = F.interpolate(image_01, size=(min(image_01.shape[-2], side), min(image_01.shape[-1], side)),
                                     mode="bilinear", align_corners=False)
        x = torch.cat([self.encoder(image_01), self.sem_encoder(image_01)], dim=1)
        return F.adaptive_avg_pool2d(x, output_size)

    def forward(self, image_01: torch.Tensor, output_size: int) -> torch.Tensor:
        """RoPE'd guidance map ``[B, dim, T, T]`` (NAF's queries)."""
        return self.rope(self.encode(image_01, output_size))


@dataclass
class NAFGuide:
    """Per-image NAF state for one output size: ``encoding [B,dim,T,T]`` (pooled, before RoPE) and
    ``keys [B,dim,h,w]`` (RoPE'd map average-pooled to the LR grid). Reusable for any LR features of size ``h×w``."""

    encoding: torch.Tensor
    keys: torch.Tensor

    @property
    def size(self) -> int:
        return self.encoding.shape[-1]


class NAF(nn.Module):
    """NAF upsampler; parameter names match ``naf_release.pth`` (``image_encoder.*``) exactly."""

    def __init__(self, dim: int = 256, heads_attn: int = 4, heads_rope: int = 4, kernel_size: int = 9,
                 rope_base: float = 100.0, img_layers: int = 2):
        super().__init__()
        self.dim, self.heads, self.kernel_size = dim, heads_attn, kernel_size
        self.scale = (dim // heads_attn) ** -0.5
        self.image_encoder = NAFImageEncoder(dim, heads_rope, rope_base, img_layers)

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> "NAF":
        """Official-architecture NAF with ``state_dict`` loaded strictly; the global RNG is not consumed."""
        with torch.random.fork_rng(devices=[]):
            naf = cls()
        naf.load_state_dict(state_dict, strict=True)
        return naf.eval().requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> "NAF":
        """Load ``naf_release.pth`` (default: ``<models>/naf/naf_release.pth``) with ``torch.load(weights_only=True)``."""
        path = Path(path) if path is not None else component_path("naf") / CHECKPOINT_NAME
        if not path.is_file():
            raise UserError(f"NAF weights {path} are missing: put {CHECKPOINT_NAME} from {COMPONENTS['naf'][2]} there")
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        try:
            return cls.from_state_dict(state)
        except RuntimeError as exc:
            raise UserError(f"{path} is not a NAF checkpoint ({str(exc).splitlines()[0]})") from exc

    # --- guidance ----------------------------------------------------------------------------
    @torch.no_grad()
    def guide(self, image_01: torch.Tensor, output_size: int, lr_size: tuple[int, int],
              encoding: torch.Tensor | None = None) -> NAFGuide:
        """Queries/keys state for upsampling ``lr_size = (h, w)`` features to ``output_size`` (T).

        ``image_01 [B,3,S,S]`` float32 in [0,1]. ``encoding`` (from :meth:`NAFImageEncoder.encode` at
        this T) may be passed to reuse a cached one. Requires ``T % h == T % w == 0`` (dilation = block
        size, always true for the official sizes) and ``h, w ≥ kernel_size``.
        """
        h, w = lr_size
        t = output_size
        if t % h or t % w or t // h != t // w:
            raise ValueError(f"NAF output size {t} must be the same multiple of the LR size {h}×{w}")
        if h < self.kernel_size or w < self.kernel_size:
            raise ValueError(f"NAF needs LR features of at least {self.kernel_size}×{self.kernel_size}, got {h}×{w}")
        if encoding is None:
            encoding = self.image_encoder.encode(image_01.float(), t)
        d = t // h
        b, c = encoding.shape[:2]
        keys = torch.empty(b, c, h, w, dtype=encoding.dtype, device=encoding.device)
        rope = self.image_encoder.rope
        cols = torch.arange(t)
        band = max(1, (1 << 22) // (t * d))  # LR rows per chunk (bounded temporary)
        for a0 in range(0, h, band):
            a1 = min(h, a0 + band)
            rows = torch.arange(a0 * d, a1 * d)
            cos, sin = rope.cos_sin(rows.repeat_interleave(t), cols.repeat(len(rows)), t, t)
            part = encoding[:, :, a0 * d:a1 * d].flatten(2).transpose(1, 2)
            part = rope.apply(part, cos.to(part.dtype), sin.to(part.dtype)).transpose(1, 2)
            keys[:, :, a0:a1] = part.reshape(b, c, a1 - a0, d, w, d).mean(dim=(3, 5))
        return NAFGuide(encoding=encoding, keys=keys)

    # --- attention ---------------------------------------------------------------------------
    @torch.no_grad()
    def upsample_at(self, guide: NAFGuide, features: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    budget_bytes: int = 1 << 28) -> torch.Tensor:
        """NAF output at pixels ``(rows[M], cols[M])`` (int, in the ``T×T`` output) → float32 ``[B, C, M]``.

        ``features [B, C, h, w]`` float32 (C divisible by the number of heads). Pixels are grouped by
        their LR cell (which fixes the 81-cell window), so each window's keys/values are gathered once;
        work is chunked to keep temporaries under about ``budget_bytes``.
        """
        b, c, h, w = features.shape
        t = guide.size
        if guide.keys.shape[-2:] != (h, w):
            raise ValueError(f"guide was prepared for LR size {tuple(guide.keys.shape[-2:])}, features are {h}×{w}")
        d, k, nh = t // h, self.kernel_size, self.heads
        ch, qd = c // nh, self.dim // nh
        device = features.device
        rows, cols = rows.reshape(-1).long().to(device), cols.reshape(-1).long().to(device)
        m = rows.numel()
        out = torch.empty(b, c, m, dtype=torch.float32, device=device)
        if m == 0:
            return out
        if int(rows.min()) < 0 or int(cols.min()) < 0 or int(rows.max()) >= t or int(cols.max()) >= t:
            raise ValueError(f"pixel indices must lie in [0, {t})")

        # group pixels by LR cell; cells sorted by pixel count so chunks pad little
        cell = (rows // d) * w + cols // d
        order = torch.argsort(cell, stable=True)
        uniq, counts = torch.unique_consecutive(cell[order], return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(m, device=device) - torch.repeat_interleave(starts, counts)
        cell_rank = torch.argsort(counts, descending=True, stable=True)
        pos_of_cell = torch.empty_like(cell_rank)
        pos_of_cell[cell_rank] = torch.arange(len(uniq), device=device)
        pixel_pos = torch.repeat_interleave(pos_of_cell, counts)  # rank of each (sorted) pixel's cell

        keys = guide.keys.float().reshape(b, nh, qd, h * w)
        values = features.float().reshape(b, nh, ch, h * w)
        rope = self.image_encoder.rope
        taps = torch.arange(k, device=device)
        sorted_counts = counts[cell_rank]
        per_cell_fixed = k * k * (self.dim + c) * 4 * b
        i0 = 0
        while i0 < len(uniq):
            cnt = int(sorted_counts[i0])
            per_cell = per_cell_fixed + cnt * (self.dim + nh * k * k + c) * 4 * b * 2
            i1 = min(len(uniq), i0 + max(1, budget_bytes // per_cell))
            chunk_cells = uniq[cell_rank[i0:i1]]
            n = i1 - i0
            # 81-cell windows of these cells (inward-shifted at the borders)
            p, q = chunk_cells // w, chunk_cells % w
            a = (p - k // 2).clamp(0, h - k)[:, None] + taps
            bb = (q - k // 2).clamp(0, w - k)[:, None] + taps
            window = (a[:, :, None] * w + bb[:, None, :]).reshape(-1)  # [n*81]
            kw = keys[..., window].reshape(b, nh, qd, n, k * k).permute(0, 3, 1, 4, 2)  # [B,n,nh,81,qd]
            vw = values[..., window].reshape(b, nh, ch, n, k * k).permute(0, 3, 1, 4, 2)  # [B,n,nh,81,ch]
            # queries of the pixels in these cells, padded to the chunk's largest count
            sel = ((pixel_pos >= i0) & (pixel_pos < i1)).nonzero().squeeze(1)
            pix = order[sel]
            r, cc = rows[pix], cols[pix]
            cos, sin = rope.cos_sin(r, cc, t, t)
            qv = guide.encoding[:, :, r, cc].float().transpose(1, 2)  # [B, P, dim]
            qv = rope.apply(qv, cos.to(device), sin.to(device)).reshape(b, -1, nh, qd)
            qpad = torch.zeros(b, n, cnt, nh, qd, dtype=torch.float32, device=device)
            lpos, lslot = pixel_pos[sel] - i0, slot[sel]
            qpad[:, lpos, lslot] = qv
            attn = torch.softmax(qpad.transpose(2, 3) @ kw.transpose(-1, -2) * self.scale, dim=-1)  # [B,n,nh,cnt,81]
            res = attn @ vw  # [B, n, nh, cnt, ch]
            out[:, :, pix] = res[:, lpos, :, lslot].reshape(len(pix), b, c).permute(1, 2, 0)
            i0 = i1
        return out

    @torch.no_grad()
    def forward(self, image_01: torch.Tensor, features: torch.Tensor, output_size: int) -> torch.Tensor:
        """Full map: ``image_01 [B,3,S,S]`` in [0,1], ``features [B,C,h,w]`` → ``[B, C, T, T]`` float32 (computed in chunks)."""
        guide = self.guide(image_01, output_size, tuple(features.shape[-2:]))
        t = output_size
        rows = torch.arange(t, device=features.device).repeat_interleave(t)
        cols = torch.arange(t, device=features.device).repeat(t)
        return self.upsample_at(guide, features, rows, cols).reshape(features.shape[0], features.shape[1], t, t)
