"""Multi-head attention of the flow transformers, for dense ``[B, L, C]`` tensors and SparseTensors.

Self-attention over sparse tokens is full attention within each batch item (variable length); queries
are processed in chunks so the score matrix never exceeds a memory budget (~50k-token items fit on a
CPU). Cross-attention attends to a dense per-item context ``[B, M, C_ctx]`` (the 5 DINOv3 global tokens).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from pixal3d.models.modules.norm import MultiHeadRMSNorm
from pixal3d.models.modules.rope import RotaryEmbedder3D
from pixal3d.core.sparse_tensor import SparseTensor

#: largest attention-score block (bytes) materialised at once when queries are chunked
SCORE_BUDGET_BYTES = 256 * 2**20


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, score_budget: int = SCORE_BUDGET_BYTES) -> torch.Tensor:
    """Softmax attention, scale ``1/sqrt(D)``: ``q [B, Lq, H, D]``, ``k, v [B, Lk, H, D]`` → ``[B, Lq, H, D]``.

    Uses ``F.scaled_dot_product_attention``; queries are split into chunks whose score block
    ``B·H·chunk·Lk`` (float32) stays under ``score_budget`` bytes. Chunking is exact (each query row's
    softmax spans all keys). On CUDA the fused kernels never materialise the scores, so nothing is chunked.
    """
    b, lq, h, _ = q.shape
    lk = k.shape[1]
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    chunk = lq if q.device.type == "cuda" else max(1, score_budget // max(1, b * h * lk * 4))
    if lq <= chunk:
        out = F.scaled_dot_product_attention(qt, kt, vt)
    else:
        out = torch.cat(
            [F.scaled_dot_product_attention(qt[:, :, i:i + chunk], kt, vt) for i in range(0, lq, chunk)], dim=2
        )
    return out.transpose(1, 2)


def varlen_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_layout: list[slice], kv_layout: list[slice],
    score_budget: int = SCORE_BUDGET_BYTES,
) -> torch.Tensor:
    """Attention of packed rows ``q [Nq, H, D]`` to ``k, v [Nk, H, D]`` within each batch item.

    Item ``b`` attends from rows ``q_layout[b]`` to rows ``kv_layout[b]``; returns ``[Nq, H, D]``.
    """
    if len(q_layout) == 1:
        return attention(q[None], k[None], v[None], score_budget)[0]
    out = q.new_empty(q.shape[:-1] + v.shape[-1:])
    for qs, ks in zip(q_layout, kv_layout):
        if qs.stop > qs.start:
            out[qs] = attention(q[qs][None], k[ks][None], v[ks][None], score_budget)[0]
    return out


def _dense_layout(batch: int, length: int) -> list[slice]:
    return [slice(i * length, (i + 1) * length) for i in range(batch)]


class SelfAttention(nn.Module):
    """Self-attention with fused ``to_qkv``, optional per-head q/k RMS norm and 3-D RoPE; ``to_out``.

    ``forward(x, rope)``: ``x`` dense ``[B, L, C]`` with ``rope`` ``[L, D/2, 2]`` (or ``[B, L, D/2, 2]``),
    or a SparseTensor (feats ``[N, C]``) with ``rope`` ``[N, D/2, 2]``; ``rope=None`` skips the rotation.
    Output has the type and dtype of ``x``.
    """

    def __init__(self, channels: int, num_heads: int, qk_rms_norm: bool = True):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.qk_rms_norm = qk_rms_norm
        self.to_qkv = nn.Linear(channels, channels * 3)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor | SparseTensor, rope: torch.Tensor | None = None) -> torch.Tensor | SparseTensor:
        sparse = isinstance(x, SparseTensor)
        feats = x.feats if sparse else x
        qkv = self.to_qkv(feats).reshape(*feats.shape[:-1], 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(dim=-3)
        if self.qk_rms_norm:
            q, k = self.q_rms_norm(q), self.k_rms_norm(k)
        if rope is not None:
            q, k = RotaryEmbedder3D.rotate(q, rope), RotaryEmbedder3D.rotate(k, rope)
        if sparse:
            h = varlen_attention(q, k, v, x.layout, x.layout)
        else:
            h = attention(q, k, v)
        h = self.to_out(h.reshape(*feats.shape[:-1], -1))
        return x.replace(h) if sparse else h


class CrossAttention(nn.Module):
    """Cross-attention of tokens to a dense per-item context ``[B, M, ctx_channels]``.

    Keys ``to_q``, ``to_kv`` (fused k,v), optional ``q_rms_norm``/``k_rms_norm``, ``to_out``. ``x`` is dense
    ``[B, L, C]`` or a SparseTensor whose batch item ``b`` attends to ``context[b]``.
    """

    def __init__(self, channels: int, ctx_channels: int, num_heads: int, qk_rms_norm: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.qk_rms_norm = qk_rms_norm
        self.to_q = nn.Linear(channels, channels)
        self.to_kv = nn.Linear(ctx_channels, channels * 2)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor | SparseTensor, context: torch.Tensor) -> torch.Tensor | SparseTensor:
        sparse = isinstance(x, SparseTensor)
        feats = x.feats if sparse else x
        q = self.to_q(feats).reshape(*feats.shape[:-1], self.num_heads, self.head_dim)
        kv = self.to_kv(context).reshape(*context.shape[:-1], 2, self.num_heads, self.head_dim)
        k, v = kv.unbind(dim=-3)
        if self.qk_rms_norm:
            q, k = self.q_rms_norm(q), self.k_rms_norm(k)
        if sparse:
            bsz, m = k.shape[:2]
            kv_layout = _dense_layout(bsz, m)
            h = varlen_attention(q, k.reshape(bsz * m, *k.shape[2:]), v.reshape(bsz * m, *v.shape[2:]), x.layout, kv_layout)
        else:
            h = attention(q, k, v)
        h = self.to_out(h.reshape(*feats.shape[:-1], -1))
        return x.replace(h) if sparse else h


class ProjectionCrossAttention(nn.Module):
    """Pixal3D projection attention: ``cross_attn_block(x, global) + proj_linear(proj)``.

    ``context`` = ``{'global': [B, M, ctx_channels], 'proj': P}`` where ``P`` is row-aligned with ``x``:
    dense ``[B, L, proj_in]`` for dense ``x``; a SparseTensor or feats ``[N, proj_in]`` for sparse ``x``.
    """

    def __init__(self, channels: int, ctx_channels: int, num_heads: int, proj_in_channels: int, qk_rms_norm: bool = True):
        super().__init__()
        self.cross_attn_block = CrossAttention(channels, ctx_channels, num_heads, qk_rms_norm)
        self.proj_linear = nn.Linear(proj_in_channels, channels)

    def forward(self, x: torch.Tensor | SparseTensor, context: Mapping[str, torch.Tensor | SparseTensor]) -> torch.Tensor | SparseTensor:
        """``context`` may also carry ``proj_projected``: this block's ``proj_linear(proj)`` computed beforehand
        (:meth:`FlowTransformer.prepare_condition`; the same tensor the line below would compute)."""
        h = self.cross_attn_block(x, context["global"])
        projected = context.get("proj_projected")
        if projected is None:
            proj = context["proj"]
            projected = self.proj_linear(proj.feats if isinstance(proj, SparseTensor) else proj)
        if isinstance(h, SparseTensor):
            return h.replace(h.feats + projected)
        return h + projected
