"""Sparse voxel tensors and the operations on them, in plain PyTorch."""

from pixal3d.models.sparse.tensor import SparseTensor

__all__ = ["SparseTensor"]
