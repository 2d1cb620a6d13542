"""Sparse per-voxel attribute lookup (FlexGEMM ``grid_sample_3d``, torch path; §7.4 step 4).

Queries are in voxel units: voxel ``m`` spans ``[c_m, c_m + 1)`` and has its centre at ``c_m + 0.5``
(for the unit cube, ``q = (p − aabb_min) · R``). Neighbour indices are formed like the reference, by
truncating toward zero (``int()``), so a coordinate in ``(−1, 0)`` maps to voxel 0; indices outside
``[0, R)`` count as missing.
"""

from __future__ import annotations

import torch

from pixal3d.utils.coords import CoordIndex

_CORNERS = torch.tensor([[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])


def _index(coords: torch.Tensor, resolution: int | tuple[int, int, int]) -> CoordIndex:
    bounds = [resolution] * 3 if isinstance(resolution, int) else list(resolution)
    return CoordIndex(coords.long(), bounds=bounds)


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
    corners = _CORNERS.to(flat.device)
    for start in range(0, flat.shape[0], chunk):
        q = flat[start:start + chunk]
        neigh = (q[:, None, :] + corners[None]).int()  # trunc toward zero, as the reference  [M,8,3]
        rows = index.lookup(neigh)
        weight = torch.prod(1 - torch.abs(neigh.float() + 0.5 - q[:, None, :]), dim=-1)
        weight = torch.where(rows >= 0, weight, torch.zeros_like(weight))
        vals = attrs[rows.clamp_min(0)] * weight[..., None].to(attrs.dtype)
        out[start:start + chunk] = vals.sum(1) / weight.sum(1, keepdim=True).clamp_min(1e-12).to(attrs.dtype)
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
