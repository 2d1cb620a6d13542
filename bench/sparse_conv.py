"""Benchmark: submanifold 3×3×3 sparse convolution on surface-like voxel sets.

Coordinates are voxelised sphere shells (≈2 voxels thick, like the decoders' surface bands) with about
10k, 100k and 1M active voxels. For each size and channel count it times the neighbour-map build and both
conv strategies (``padded``, ``gather``, ``im2col``), and compares with a dense ``torch.mm`` of the same GEMM shape
measured in the same run.

* nominal FLOPs = ``2·N·27·C_in·C_out`` (what a dense im2col GEMM does; the usual sparse-conv count)
* useful FLOPs  = ``2·pairs·C_in·C_out`` (only the present neighbours)
* ratio = nominal GFLOP/s of the conv ÷ GFLOP/s of ``torch.mm([M, 27·C_in] @ [27·C_in, C_out])``

Usage: ``python bench/sparse_conv.py [--sizes 10000 100000 1000000] [--channels 64 128] [--threads 2]``.
Prints a markdown table. Memory: ~2 GB at 1M voxels with 64 channels.
"""

from __future__ import annotations

import argparse

import torch
from runner import best_of, table_header, table_row

from pixal3d.models.sparse.conv import build_neighbour_map, submanifold_conv3d
from pixal3d.core.sparse_tensor import SparseTensor


def sphere_shell(n_target: int) -> torch.Tensor:
    """``[N, 4]`` int32 coords (batch 0) of a voxelised sphere shell with about ``n_target`` voxels."""
    radius = (n_target / (4 * torch.pi * 1.74)) ** 0.5
    half = int(radius) + 2
    g = torch.arange(-half, half + 1)
    rows = []
    for x in g.tolist():  # slab by slab to keep memory small at 1M voxels
        yy, zz = torch.meshgrid(g, g, indexing="ij")
        d = (x * x + yy.float() ** 2 + zz.float() ** 2).sqrt()
        yz = ((d - radius).abs() < 0.87).nonzero()
        rows.append(torch.cat([torch.full((yz.shape[0], 1), x), yz - half], 1))
    xyz = torch.cat(rows) + half
    return torch.cat([torch.zeros(xyz.shape[0], 1, dtype=torch.long), xyz], 1).int()


def mm_rate(k: int, cout: int, repeats: int) -> float:
    """GFLOP/s of ``torch.mm([M, k] @ [k, cout])`` with M sized to ~64 MB of input."""
    m = max(4096, (1 << 24) // k)
    a, b = torch.randn(m, k), torch.randn(k, cout)
    return 2 * m * k * cout / best_of(lambda: torch.mm(a, b), repeats) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-channels-at-1m", type=int, default=64, help="skip wider convs at ≥1M voxels (time)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32\n")
    print(table_header(["voxels", "C_in→C_out", "fill", "nbr map (s)", "strategy", "conv (s)", "GFLOP/s nominal",
                        "GFLOP/s useful", "mm GFLOP/s", "ratio"], align="rrrrlrrrrr"))
    for size in args.sizes:
        coords = sphere_shell(size)
        n = coords.shape[0]
        repeats = 1 if n > 300_000 else 3
        t_nbr = best_of(lambda: build_neighbour_map(coords), repeats)
        nbr = build_neighbour_map(coords)
        pairs = int((nbr >= 0).sum())
        del nbr
        for c in args.channels:
            if n > 300_000 and c > args.max_channels_at_1m:
                continue
            x = SparseTensor(torch.randn(n, c), coords)
            weight = torch.randn(c, 3, 3, 3, c) / (27 * c) ** 0.5
            bias = torch.randn(c)
            rate = mm_rate(27 * c, c, 3)
            for strategy in ("padded", "gather", "im2col"):
                submanifold_conv3d(x, weight, bias, strategy=strategy)  # builds the cached maps
                t = best_of(lambda: submanifold_conv3d(x, weight, bias, strategy=strategy), repeats)
                nominal = 2 * n * 27 * c * c / t / 1e9
                useful = 2 * pairs * c * c / t / 1e9
                print(table_row([f"{n:,}", f"{c}→{c}", f"{pairs / (27 * n):.2f}", f"{t_nbr:.3f}", strategy, f"{t:.3f}",
                                 f"{nominal:.1f}", f"{useful:.1f}", f"{rate:.1f}", f"{nominal / rate:.2f}"]), flush=True)
            del x


if __name__ == "__main__":
    main()
