"""Per-voxel layers of sparse networks: they map ``feats`` only and keep coordinates (and cache).

Mixed precision (official ``use_fp16`` / ``dtype="bfloat16"``): the official models keep some weights in
float16/bfloat16 and run those layers in that dtype. Here every weight layer computes in the dtype of its
*input* and casts its weights when they differ, so a model decides the activation dtype once
(:func:`compute_dtype`): float16 weights on the CPU run in float32 (CPU float16 GEMMs are slow or missing),
every other case runs in the weight dtype exactly as the official code does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixal3d.models.modules.norm import LayerNorm32
from pixal3d.core.sparse_tensor import SparseTensor


def compute_dtype(weight_dtype: torch.dtype, device: torch.device | str) -> torch.dtype:
    """Activation dtype for layers whose weights are ``weight_dtype`` on ``device``.

    float16 on the CPU → float32; otherwise ``weight_dtype`` (float16 on CUDA/MPS, bfloat16 anywhere).
    """
    if weight_dtype == torch.float16 and torch.device(device).type == "cpu":
        return torch.float32
    return weight_dtype


def cast_param(p: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """``p`` in ``dtype`` (no copy when it already is)."""
    return None if p is None or p.dtype == dtype else p.to(dtype)


class Linear(nn.Linear):
    """``nn.Linear`` on a dense ``[..., in]`` tensor that computes in the input's dtype (weights cast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = cast_param(self.weight, x.dtype)
        b = cast_param(self.bias, x.dtype)
        return F.linear(x, self.weight if w is None else w, self.bias if b is None else b)


class SparseLinear(Linear):
    """Linear map of the features: ``[N, in] → [N, out]``; keys ``weight [out, in]``, ``bias [out]``."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(super().forward(x.feats))


class SparseLayerNorm32(LayerNorm32):
    """:class:`LayerNorm32` over the channels of every voxel (per-voxel, so batch items never mix)."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(super().forward(x.feats))


class SparseSiLU(nn.SiLU):
    """SiLU of the features."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(F.silu(x.feats))


class SparseGELU(nn.GELU):
    """GELU of the features (``approximate`` as in ``nn.GELU``)."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(F.gelu(x.feats, approximate=self.approximate))
