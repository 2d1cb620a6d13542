"""Spatial↔channel resampling of sparse tensors (official ``SparseChannel2Spatial`` / ``SparseSpatial2Channel``).

Child order inside a parent is ``s = sx + 2·sy + 4·sz`` (``sx = x mod 2``, …); the parent's features are the
8 children's features concatenated in that order (``[8·C]``, block ``s`` = child ``s``).
"""

from __future__ import annotations

import torch

from pixal3d.core.sparse_tensor import SparseTensor
from pixal3d.utils.coords import unique_rows

_CHILD_OFFSETS = torch.tensor([[s % 2, (s // 2) % 2, s // 4] for s in range(8)], dtype=torch.int32)


class ChannelToSpatial:
    """Channel→spatial plan for one parent coordinate set and one subdivision mask.

    Args:
        coords: parent coordinates ``[Np, 4]`` int32 (batch, x, y, z).
        subdivision: ``[Np, 8]`` bool, child ``s`` of parent ``p`` exists iff ``subdivision[p, s]``.

    For each parent in row order it emits the children with set bits in ascending ``s``: coordinates
    ``(b, 2x + s%2, 2y + (s//2)%2, 2z + s//4)``; parents without children vanish. :meth:`apply` maps any
    parent features ``[Np, 8·C]`` to child features ``[Nc, C]``; every tensor it makes shares one cache, so
    a block that resamples two tensors builds the children's neighbour map once.
    """

    def __init__(self, coords: torch.Tensor, subdivision: torch.Tensor):
        if subdivision.shape != (coords.shape[0], 8) or subdivision.dtype != torch.bool:
            raise ValueError(f"subdivision must be bool [{coords.shape[0]}, 8], got {subdivision.dtype} {tuple(subdivision.shape)}")
        parent, child = subdivision.nonzero(as_tuple=True)  # row-major: parents in order, s ascending
        offsets = _CHILD_OFFSETS.to(coords.device)[child]
        new = coords[parent].clone()
        new[:, 1:] = new[:, 1:] * 2 + offsets
        self.coords = new
        self.source = parent * 8 + child  # row of the child in parent feats viewed as [Np*8, C]
        self.cache: dict = {}

    def apply(self, feats: torch.Tensor) -> SparseTensor:
        """Parent features ``[Np, 8·C]`` → child sparse tensor with ``[Nc, C]`` features."""
        if feats.shape[1] % 8:
            raise ValueError(f"channel→spatial needs a multiple of 8 channels, got {feats.shape[1]}")
        child_feats = feats.reshape(feats.shape[0] * 8, feats.shape[1] // 8).index_select(0, self.source)
        return SparseTensor(child_feats, self.coords, self.cache)


def channel_to_spatial(x: SparseTensor, subdivision: torch.Tensor) -> SparseTensor:
    """Upsample ×2 by moving channel blocks to child voxels (see :class:`ChannelToSpatial`).

    ``x``: parent features ``[Np, 8·C]``; ``subdivision``: ``[Np, 8]`` bool. Returns ``[Nc, C]`` children.
    """
    return ChannelToSpatial(x.coords, subdivision).apply(x.feats)


def spatial_to_channel(x: SparseTensor) -> tuple[SparseTensor, torch.Tensor]:
    """Downsample ×2 by stacking the 8 children of each parent voxel into its channels.

    Args:
        x: child features ``[Nc, C]`` at coords ``(b, x, y, z)``.

    Returns:
        ``(parents, subdivision)``: parents at ``(b, x//2, y//2, z//2)`` in lexicographic (b, x, y, z) order
        with features ``[Np, 8·C]`` (block ``s`` = child ``s``, zeros where the child is absent), and the
        ``[Np, 8]`` bool mask of present children (so :func:`channel_to_spatial` inverts it).
    """
    coords = x.coords.long()
    parent = coords.clone()
    parent[:, 1:] //= 2
    sub = coords[:, 1:] % 2
    s = sub[:, 0] + 2 * sub[:, 1] + 4 * sub[:, 2]
    parents, inverse = unique_rows(parent, return_inverse=True)
    c = x.feats.shape[1]
    feats = x.feats.new_zeros(parents.shape[0] * 8, c)
    feats[inverse * 8 + s] = x.feats
    subdivision = torch.zeros(parents.shape[0], 8, dtype=torch.bool, device=x.device)
    subdivision[inverse, s] = True
    return SparseTensor(feats.reshape(parents.shape[0], 8 * c), parents.int()), subdivision
