"""Submanifold 3×3×3 sparse convolution in plain PyTorch (the FlexGEMM ``sparse_submanifold_conv3d`` op).

For every active voxel ``p`` (same coordinates in and out)::

    out[p] = bias + Σ_{dx,dy,dz ∈ {-1,0,1}} W[:, dx+1, dy+1, dz+1, :] · in[p + (dx, dy, dz)]

summing only over active neighbours of the same batch item (cross-correlation, no flip). Weights use the
official layout ``[C_out, 3, 3, 3, C_in]`` with dim 1 ↔ x (coords column 1), dim 2 ↔ y, dim 3 ↔ z, so the
kernel index of an offset is ``k = ((dx+1)·3 + (dy+1))·3 + (dz+1)``; the equivalent dense ``conv3d`` weight
is ``weight.permute(0, 4, 1, 2, 3)``.

The neighbour map ``[N, 27]`` (row of the neighbour at each offset, ``-1`` if absent) is built once per
coordinate set with sorted int64 keys (:class:`~pixal3d.utils.coords.CoordIndex`) and stored in
``SparseTensor.cache``, which every tensor made by ``replace`` shares.

Compute strategy (picked per call from the voxel count and neighbour density, see ``bench/sparse_conv.py``):

* ``"padded"``: per offset, gather the neighbour row of *every* voxel from the features padded with one zero
  row (absent neighbours point at it) and ``addmm_`` into the output. No scatter, and the gathers read
  memory in increasing order (coordinates are sorted, so each column of the map is monotone), but it
  multiplies zeros for absent neighbours (the full ``2·N·27·C_in·C_out`` FLOPs, like an im2col GEMM).
* ``"gather"``: per offset, gather the rows that have that neighbour, multiply by the ``[C_in, C_out]`` slice
  and accumulate into the output rows — only the work of present neighbours, at the cost of 26 scatters.
* ``"im2col"``: in chunks of rows, gather all 27 neighbour rows of each voxel (absent → the zero row) into a
  ``[rows, 27·C_in]`` block and do ONE GEMM with the ``[27·C_in, C_out]`` weight. Full nominal FLOPs like
  ``padded``, but each chunk's block and output stay in cache and the GEMM has a large inner dimension, so
  it wins on big voxel sets (≥ ~50k), where the per-offset passes are memory-bound.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pixal3d.models.sparse.nn import cast_param
from pixal3d.core.sparse_tensor import SparseTensor
from pixal3d.utils.coords import CoordIndex

#: kernel offsets ``[27, 3]`` (dx, dy, dz) in kernel-index order ((dx+1)·3 + (dy+1))·3 + (dz+1)
KERNEL_OFFSETS = torch.tensor([[dx, dy, dz] for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)])
_CENTRE = 13
#: "gather" is used when fewer than this fraction of the 27 neighbour slots is filled, else "padded"
#: (measured on 2-core CPUs: at fill 0.61, gather is 1.6–1.9× faster than padded for 64–128 channels)
_GATHER_BELOW_FILL = 0.8
#: from this many voxels on, "im2col" is used (the per-offset passes become memory-bound: on 2 cores im2col is
#: ~2× faster at 100k and 1M voxels, gather ~1.4× faster at 10k; see bench/sparse_conv.py)
_IM2COL_FROM_VOXELS = 50_000
#: rows per im2col chunk: the [rows, 27·C_in] block stays at a few MB
_IM2COL_BLOCK_ELEMENTS = 1 << 21


def build_neighbour_map(coords: torch.Tensor) -> torch.Tensor:
    """Neighbour table of a coordinate set.

    Args:
        coords: ``[N, 4]`` integer (batch, x, y, z), rows distinct, non-negative.

    Returns:
        ``[N, 27]`` int64: row index of the voxel at ``coords[p] + KERNEL_OFFSETS[k]`` in the same batch
        item, ``-1`` where absent. Column 13 is the row itself.
    """
    n = coords.shape[0]
    device = coords.device
    nbr = torch.full((n, 27), -1, dtype=torch.long, device=device)
    if n == 0:
        return nbr
    shifted = coords.long().clone()
    shifted[:, 1:] += 1  # pad by one voxel on each side so that no offset wraps into another row/item
    bounds = shifted.amax(0) + 1
    bounds[1:] += 1
    index = CoordIndex(shifted, bounds)
    keys, order = index.sorted_keys, index.order
    nbr[:, _CENTRE] = torch.arange(n, device=device)
    strides = index.strides[1:]
    # Offset k and 26 - k are mirror images: if q is p's neighbour at k, p is q's neighbour at 26 - k.
    # Query keys[i] + delta: the queries are sorted too, which keeps the binary searches cache-friendly.
    for k in range(_CENTRE):
        delta = int((KERNEL_OFFSETS[k].to(device) * strides).sum())
        query = keys + delta
        pos = torch.searchsorted(keys, query).clamp_(max=n - 1)
        hit = (keys[pos] == query).nonzero().squeeze(1)
        p, q = order[hit], order[pos[hit]]
        nbr[p, k] = q
        nbr[q, 26 - k] = p
    return nbr


def neighbour_map(x: SparseTensor) -> torch.Tensor:
    """The cached ``[N, 27]`` neighbour table of ``x`` (see :func:`build_neighbour_map`)."""
    if "subm3_nbr" not in x.cache:
        x.cache["subm3_nbr"] = build_neighbour_map(x.coords)
    return x.cache["subm3_nbr"]


def _neighbour_pairs(x: SparseTensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per offset ``k``: (output rows that have a neighbour at k, that neighbour's row), cached."""
    if "subm3_pairs" not in x.cache:
        nbr = neighbour_map(x)
        pairs = []
        for k in range(27):
            rows = (nbr[:, k] >= 0).nonzero().squeeze(1)
            pairs.append((rows, nbr[rows, k]))
        x.cache["subm3_pairs"] = pairs
    return x.cache["subm3_pairs"]


def _neighbour_fill(x: SparseTensor) -> float:
    """Fraction of the ``27·N`` neighbour slots that are filled (cached)."""
    if "subm3_fill" not in x.cache:
        n = x.coords.shape[0]
        x.cache["subm3_fill"] = float((neighbour_map(x) >= 0).sum()) / max(27 * n, 1)
    return x.cache["subm3_fill"]


def _conv_padded(x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if "subm3_nbr_padded_t" not in x.cache:
        nbr = neighbour_map(x)
        x.cache["subm3_nbr_padded_t"] = torch.where(nbr >= 0, nbr, torch.full_like(nbr, nbr.shape[0])).t().contiguous()
    idx = x.cache["subm3_nbr_padded_t"]  # [27, N], each row increasing over the present neighbours
    feats = x.feats
    cout, cin = weight.shape[0], weight.shape[-1]
    padded = torch.cat([feats, feats.new_zeros(1, cin)])
    wk = weight.reshape(cout, 27, cin).permute(1, 2, 0)  # [27, Cin, Cout]
    half = feats.element_size() < 4  # half-precision products are accumulated in float32
    out = feats @ wk[_CENTRE]
    if half:
        out = out.float()
    if bias is not None:
        out = out + bias
    for k in range(27):
        if k == _CENTRE:
            continue
        cols = padded.index_select(0, idx[k])
        if half:
            out += (cols @ wk[k]).float()
        else:
            out.addmm_(cols, wk[k])
    return out.to(feats.dtype)


def _im2col_blocks(feats: torch.Tensor, idx: torch.Tensor):
    """``(start, block)`` chunks of the im2col matrix ``[rows, 27·C]`` of ``feats [N, C]`` (absent → zero row)."""
    n, c = feats.shape
    padded = torch.cat([feats, feats.new_zeros(1, c)])
    rows = max(1, _IM2COL_BLOCK_ELEMENTS // (27 * c))
    for start in range(0, n, rows):
        yield start, padded.index_select(0, idx[start:start + rows].reshape(-1)).reshape(-1, 27 * c)


def _im2col_matmul(feats: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``im2col(feats) @ w (+ bias)`` chunk by chunk: ``feats [N, C]``, ``idx [N, 27]``, ``w [27·C, C_out]``."""
    chunks = [torch.addmm(bias, block, w) if bias is not None else block @ w for _, block in _im2col_blocks(feats, idx)]
    return torch.cat(chunks) if chunks else feats.new_zeros(0, w.shape[1])


class _Im2colConv(torch.autograd.Function):
    """The im2col convolution with a gather-only backward.

    Forward ``out = im2col(x) @ W`` (``W [27·C_in, C_out]``, row ``k·C_in + c``). Because the neighbour map is
    symmetric (``q`` is ``p``'s neighbour at ``k`` iff ``p`` is ``q``'s at ``26 − k``), the input gradient is the
    same kind of convolution of the output gradient with the kernel mirrored and transposed,
    ``grad_x = im2col(g) @ W'`` with ``W'[j·C_out + o, c] = W[(26 − j)·C_in + c, o]`` — gathers only, where
    autograd's own backward of the gathers would scatter-add ``27·N`` rows. ``grad_W = Σ_chunks im2col(x)ᵀ g``.
    """

    @staticmethod
    def forward(ctx, feats, w, bias, idx):
        ctx.save_for_backward(feats, w, idx)
        ctx.has_bias = bias is not None
        return _im2col_matmul(feats, idx, w, bias)

    @staticmethod
    def backward(ctx, grad):
        feats, w, idx = ctx.saved_tensors
        grad = grad.contiguous()
        cin, cout = feats.shape[1], w.shape[1]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            mirrored = w.reshape(27, cin, cout).flip(0).permute(0, 2, 1).reshape(27 * cout, cin)
            grad_x = _im2col_matmul(grad, idx, mirrored.contiguous(), None)
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros_like(w)
            rows = max(1, _IM2COL_BLOCK_ELEMENTS // (27 * cin))
            for start, block in _im2col_blocks(feats, idx):
                grad_w.addmm_(block.t(), grad[start:start + rows])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b, None


def _conv_im2col(x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if "subm3_nbr_padded" not in x.cache:
        nbr = neighbour_map(x)
        x.cache["subm3_nbr_padded"] = torch.where(nbr >= 0, nbr, torch.full_like(nbr, nbr.shape[0])).contiguous()
    idx = x.cache["subm3_nbr_padded"]  # [N, 27], absent neighbours → the zero row N
    feats = x.feats
    cin, cout = feats.shape[1], weight.shape[0]
    w = weight.reshape(cout, 27 * cin).t()  # row k·C_in + c ↔ kernel index k, input channel c
    needs_grad = torch.is_grad_enabled() and (feats.requires_grad or weight.requires_grad
                                              or (bias is not None and bias.requires_grad))
    if needs_grad:
        return _Im2colConv.apply(feats, w, bias, idx)
    return _im2col_matmul(feats, idx, w, bias)


def _conv_gather(x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    pairs = _neighbour_pairs(x)
    feats = x.feats
    cout, cin = weight.shape[0], weight.shape[-1]
    wk = weight.reshape(cout, 27, cin).permute(1, 2, 0)  # [27, Cin, Cout]
    # half-precision products are accumulated in float32 (one rounding at the end, like a GEMM)
    acc_dtype = torch.float32 if feats.element_size() < 4 else feats.dtype
    out = feats @ wk[_CENTRE]
    out = out.to(acc_dtype)
    if bias is not None:
        out += bias
    for k in range(27):
        if k == _CENTRE:
            continue
        rows, src = pairs[k]
        if rows.numel():
            # rows are unique per offset; index_put_ with accumulate is ~2× faster than index_add_ on CPU
            out.index_put_((rows,), (feats.index_select(0, src) @ wk[k]).to(acc_dtype), accumulate=True)
    return out.to(feats.dtype)


def submanifold_conv3d(
    x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None = None, strategy: str | None = None
) -> SparseTensor:
    """Submanifold 3×3×3 convolution of ``x`` (see module docstring).

    Args:
        x: features ``[N, C_in]`` (any float dtype; the computation runs in it).
        weight: ``[C_out, 3, 3, 3, C_in]`` (cast to the features' dtype when it differs).
        bias: ``[C_out]`` or None.
        strategy: ``"padded"``, ``"gather"``, ``"im2col"`` or None (choose from the voxel count and the
            neighbour density).

    Returns:
        A sparse tensor on the same coordinates (shared cache) with ``[N, C_out]`` features.
    """
    if weight.ndim != 5 or tuple(weight.shape[1:4]) != (3, 3, 3) or weight.shape[4] != x.feats.shape[1]:
        raise ValueError(f"weight {tuple(weight.shape)} does not fit [C_out, 3, 3, 3, {x.feats.shape[1]}]")
    dtype = x.feats.dtype
    weight = weight if weight.dtype == dtype else weight.to(dtype)
    bias = cast_param(bias, dtype) if bias is not None and bias.dtype != dtype else bias
    if strategy is None:
        if x.coords.shape[0] >= _IM2COL_FROM_VOXELS:
            strategy = "im2col"
        else:
            strategy = "gather" if _neighbour_fill(x) < _GATHER_BELOW_FILL else "padded"
    if strategy == "padded":
        feats = _conv_padded(x, weight, bias)
    elif strategy == "gather":
        feats = _conv_gather(x, weight, bias)
    elif strategy == "im2col":
        feats = _conv_im2col(x, weight, bias)
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    return x.replace(feats)


class SparseConv3d(nn.Module):
    """Submanifold sparse convolution layer (official ``SparseConv3d(in, out, 3)``, FlexGEMM layout).

    Parameters: ``weight [out_channels, 3, 3, 3, in_channels]``, ``bias [out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True):
        super().__init__()
        if kernel_size != 3:
            raise ValueError("only 3×3×3 submanifold convolutions are implemented (the only ones used)")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, 3, 3, 3, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform ±1/sqrt(fan_in) init (fan_in = 27·in), like ``nn.Conv3d``'s bias bound."""
        if self.weight.device.type == "meta":
            return
        bound = 1.0 / math.sqrt(27 * self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return submanifold_conv3d(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size=3, bias={self.bias is not None}"
