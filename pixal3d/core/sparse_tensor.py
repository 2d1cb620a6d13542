"""The sparse voxel tensor: per-voxel features with integer coordinates.

Coordinates are int32 ``[N, 4]`` = ``(batch, x, y, z)`` in the grid of the current resolution, with
the rows of one batch item contiguous (the official layout). ``x`` points right in the input image,
``y`` up and ``z`` toward the input camera (see ``pixal3d.core.camera``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SparseTensor:
    """Features ``feats [N, C]`` at coordinates ``coords [N, 4]`` int32 (batch, x, y, z).

    ``cache`` holds structures derived from the coordinates alone (neighbour maps, batch layout);
    tensors made with :meth:`replace` share it, so it is built once per coordinate set.
    """

    feats: torch.Tensor
    coords: torch.Tensor
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.coords.ndim != 2 or self.coords.shape[1] != 4:
            raise ValueError(f"coords must be [N, 4], got {tuple(self.coords.shape)}")
        if self.feats.shape[0] != self.coords.shape[0]:
            raise ValueError(f"feats has {self.feats.shape[0]} rows but coords has {self.coords.shape[0]}")
        if self.coords.dtype != torch.int32:
            self.coords = self.coords.int()

    # --- structure -------------------------------------------------------------------------
    @property
    def batch_index(self) -> torch.Tensor:
        """``[N]`` int64 batch item of each row."""
        if "batch_index" not in self.cache:
            self.cache["batch_index"] = self.coords[:, 0].long()
        return self.cache["batch_index"]

    @property
    def batch_size(self) -> int:
        """Number of batch items (``max(batch) + 1``; 0 when empty)."""
        if "batch_size" not in self.cache:
            self.cache["batch_size"] = int(self.coords[:, 0].max()) + 1 if self.coords.shape[0] else 0
        return self.cache["batch_size"]

    @property
    def layout(self) -> list[slice]:
        """Row slice of each batch item (items are contiguous)."""
        if "layout" not in self.cache:
            counts = torch.bincount(self.batch_index, minlength=self.batch_size).tolist()
            starts = [0]
            for c in counts:
                starts.append(starts[-1] + c)
            self.cache["layout"] = [slice(starts[i], starts[i + 1]) for i in range(len(counts))]
        return self.cache["layout"]

    @property
    def spatial_shape(self) -> list[int]:
        """Per-axis ``max(coord) + 1`` of x, y, z (the official hashing bounds; ``[0, 0, 0]`` when empty)."""
        if "spatial_shape" not in self.cache:
            n = self.coords.shape[0]
            self.cache["spatial_shape"] = (self.coords[:, 1:].amax(0) + 1).tolist() if n else [0, 0, 0]
        return self.cache["spatial_shape"]

    # --- convenience -----------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.feats.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.feats.dtype

    @property
    def device(self) -> torch.device:
        return self.feats.device

    def replace(self, feats: torch.Tensor, coords: torch.Tensor | None = None) -> "SparseTensor":
        """A tensor with new features; same coordinates (and shared cache) unless ``coords`` is given."""
        if coords is None:
            return SparseTensor(feats, self.coords, self.cache)
        return SparseTensor(feats, coords)

    def to(self, *args, **kwargs) -> "SparseTensor":
        """Move/cast the features (``dtype`` or device); coordinates follow the device only."""
        feats = self.feats.to(*args, **kwargs)
        if feats.device == self.coords.device:
            return SparseTensor(feats, self.coords, self.cache)
        return SparseTensor(feats, self.coords.to(feats.device))

    def type(self, dtype: torch.dtype) -> "SparseTensor":
        """Features cast to ``dtype`` (coordinates and cache shared)."""
        return self if self.feats.dtype == dtype else self.replace(self.feats.to(dtype))

    def _same_coords(self, other: "SparseTensor") -> None:
        if other.coords is self.coords:
            return
        if other.coords.shape != self.coords.shape or not torch.equal(other.coords, self.coords):
            raise ValueError("element-wise op on sparse tensors with different coordinates")

    def __add__(self, other: "SparseTensor | torch.Tensor | float") -> "SparseTensor":
        """Feature-wise sum with a sparse tensor on the same coordinates, a ``[C]`` tensor or a scalar."""
        if isinstance(other, SparseTensor):
            self._same_coords(other)
            other = other.feats
        return self.replace(self.feats + other)

    __radd__ = __add__

    def std_per_item(self) -> torch.Tensor:
        """Population standard deviation of each item's features over all its rows and channels → ``[B, 1]``.

        Matches the official ``SparseTensor.std(dim=[1], keepdim=True)`` (used by CFG rescale); computed in
        float32 when the features are half precision, returned in the features' dtype.
        """
        feats = self.feats.float() if self.feats.element_size() < 4 else self.feats
        b = self.batch_index
        count = torch.bincount(b, minlength=self.batch_size).to(feats.dtype) * feats.shape[1]
        mean = torch.zeros(self.batch_size, dtype=feats.dtype, device=feats.device).index_add_(0, b, feats.sum(1)) / count
        sq = ((feats - mean[b, None]) ** 2).sum(1)
        var = torch.zeros_like(mean).index_add_(0, b, sq) / count
        return var.sqrt()[:, None].to(self.feats.dtype)

    def per_item(self, dense: torch.Tensor) -> torch.Tensor:
        """Broadcast a per-item tensor ``[B, ...]`` to the rows ``[N, ...]``."""
        return dense[self.batch_index]
