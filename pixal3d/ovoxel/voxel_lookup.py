"""Sparse per-voxel attribute lookup (FlexGEMM ``grid_sample_3d``, torch path): the texel
lookup of the texture bake.

Queries are in voxel units: voxel ``m`` spans ``[c_m, c_m + 1)`` and has its centre at ``c_m + 0.5``
(for the unit cube, ``q = (p − aabb_min) · R``). Neighbour indices are formed like the reference, by
truncating toward zero (``int()``), so a coordinate in ``(−1, 0)`` maps to voxel 0; indices outside
``[0, R)`` count as missing.
"""

from __future__ import annotations

import torch

from pixal3d.utils.coords import CoordIndex



def _index(coords: torch.Tensor, resolution: int | tuple[int, int, int]) -> CoordIndex:
    bounds = [resolution] * 3 if isinstance(resolution, int) else list(resolution)
    return CoordIndex(coords.long(), bounds=bounds)


def _corner_rows(index: CoordIndex, lo: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Rows ``[U,8]`` (−1 where missing) of the corners ``lo + {0, step}`` per axis (``lo [U,3]``, ``step`` 0/1),
    ordered x-major, then y, then z."""
    axis = torch.stack([lo, lo + step], dim=1)  # [U,2,3]
    axis_key = torch.where((axis >= 0) & (axis < index.bounds), axis * index.strides, -(1 << 60))
    keys = (axis_key[:, :, None, None, 0] + axis_key[:, None, :, None, 1] + axis_key[:, None, None, :, 2]).reshape(-1, 8)
    pos = torch.searchsorted(index.sorted_keys, keys).clamp_(max=index.num_rows - 1)
    return torch.where(index.sorted_keys[pos] == keys, index.order[pos], -1)


def trilinear(coords: torch.Tensor, attrs: torch.Tensor, query: torch.Tensor,
              resolution: int | tuple[int, int, int], chunk: int = 1 << 20) -> torch.Tensor:
    """Trilinear interpolation over the existing voxels with renormalised weights.

    Args:
        coords: ``[N,3]`` integer voxel indices; attrs: ``[N,C]`` float values.
        query: ``[..., 3]`` float points in voxel units.
        resolution: grid size ``R`` (or per-axis sizes); neighbours outside ``[0, R)`` are missing.

    Returns ``[..., C]`` (attrs' dtype): ``Σ w_k a_k / max(Σ w_k, 1e-12)`` over the 8 voxels whose
    centres surround the query, ``w_k = Π(1 − |q − (x_k + 0.5)|)``; 0 where none exists.
    """
    index = _index(coords, resolution)
    flat = query.reshape(-1, 3).float()
    out = torch.empty((flat.shape[0], attrs.shape[1]), dtype=attrs.dtype, device=attrs.device)
    if index.num_rows == 0:
        return out.zero_().reshape(*query.shape[:-1], attrs.shape[1])
    bounds = index.bounds.to(flat.device)
    span = 2 * (bounds + 2)  # per-axis range of a cell code (below)
    cell_strides = torch.stack([span[1] * span[2], span[2], torch.ones_like(span[2])])
    for start in range(0, flat.shape[0], chunk):
        q = flat[start:start + chunk]
        # per axis, the lower and upper neighbour, truncated toward zero as the reference  [M,3]
        lo, hi = torch.trunc(q - 0.5), torch.trunc(q + 0.5)
        axis_w = 1 - torch.abs(torch.stack([lo, hi], dim=1) + 0.5 - q[:, None, :])  # [M,2,3]
        # neighbouring texels share their 8 voxels: look each distinct cell up once. A cell's code per
        # axis is (lo+1)·2 + (hi−lo) after clamping both to [−1, R] (missing stays missing; hi−lo ∈ {0,1})
        lo = torch.minimum(lo.long().clamp_(min=-1), bounds)
        hi = torch.minimum(hi.long().clamp_(min=-1), bounds)
        cells, inverse = torch.unique(((lo + 1) * 2 + hi - lo).mul_(cell_strides).sum(1), return_inverse=True)
        code = cells[:, None] // cell_strides % span  # [U,3]
        rows = _corner_rows(index, code // 2 - 1, code % 2)[inverse]  # [M,8]
        weight = (axis_w[:, :, None, None, 0] * axis_w[:, None, :, None, 1] * axis_w[:, None, None, :, 2]).reshape(-1, 8)
        weight = torch.where(rows >= 0, weight, torch.zeros((), dtype=weight.dtype)).to(attrs.dtype)
        # Σ_k w_k·a_k as one [M,8,C] product summed over the corners (the reference's rounding order)
        values = attrs.index_select(0, rows.clamp_(min=0).reshape(-1)).reshape(-1, 8, attrs.shape[1])
        acc = values.mul_(weight[..., None]).sum(1)
        out[start:start + chunk] = acc.div_(weight.sum(1, keepdim=True).clamp_min(1e-12))
    return out.reshape(*query.shape[:-1], attrs.shape[1])


def nearest(coords: torch.Tensor, attrs: torch.Tensor, query: torch.Tensor,
            resolution: int | tuple[int, int, int]) -> torch.Tensor:
    """Value of the voxel containing each query (index ``int(q)``), 0 where that voxel is missing.

    Shapes as :func:`trilinear`: ``query [..., 3]`` voxel units → ``[..., C]``.
    """
    index = _index(coords, resolution)
    rows = index.lookup(query.reshape(-1, 3).int())
    vals = attrs[rows.clamp_min(0)] * (rows >= 0)[:, None].to(attrs.dtype)
    return vals.reshape(*query.shape[:-1], attrs.shape[1])
