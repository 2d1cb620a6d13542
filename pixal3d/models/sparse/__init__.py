"""Operations on sparse voxel tensors in plain PyTorch (convolution, layers, spatial resampling); the tensor type
itself is :class:`pixal3d.core.sparse_tensor.SparseTensor`."""
