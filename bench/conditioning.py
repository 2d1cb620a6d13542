"""Conditioning benchmarks: one markdown table row per benchmark function.

Run ``python bench/conditioning.py`` (optionally with row names to run a subset). Each function in
:data:`BENCHMARKS` runs in a fresh process (``bench/runner.py``) so its peak memory is its own:
``peak_mb`` is the growth of the process's maximum resident set (``ru_maxrss``) over the
benchmark, measured after imports. To add a row, write a function ``bench_xxx() -> dict`` returning
``{"name", "time_s", "note"}`` (``peak_mb`` is filled in by the runner) and append it to
:data:`BENCHMARKS`.
"""

from __future__ import annotations

from typing import Callable

from runner import best_of, main, maxrss_mb


# --------------------------------------------------------------------------------------------
# rows
# --------------------------------------------------------------------------------------------
def bench_sparse_backprojection() -> dict:
    """Sparse back-projection of 50k voxels x 2048 channels (G=64 grid, S=1024, 64x64 map)."""
    import torch

    from pixal3d.conditioning import backproject_sparse
    from pixal3d.core.camera import Camera

    torch.manual_seed(0)
    G, S, N, C = 64, 1024, 50_000, 2048
    fmap = torch.randn(1, C, 64, 64)
    flat = torch.randperm(G**3)[:N]
    coords = torch.stack([torch.zeros_like(flat), flat // G**2, flat // G % G, flat % G], 1).int()
    cam = Camera.front(0.2)
    base = maxrss_mb()
    t = best_of(lambda: backproject_sparse(fmap, cam, coords, G, S))
    return {"name": "sparse back-projection 50k voxels x 2048 ch", "time_s": t, "peak_mb": maxrss_mb() - base,
            "note": f"G={G}, S={S}, map 64x64, fp32, {torch.get_num_threads()} threads, best of 3"}


def _dinov3_row(size: int, dtype_name: str) -> dict:
    """DINOv3 ViT-L/16 (official config, random weights) on one S x S image: tokens + non-affine LN."""
    import torch

    from pixal3d.conditioning.dinov3 import VITL16_CONFIG, DINOv3Encoder

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    encoder = DINOv3Encoder.from_config(VITL16_CONFIG, dtype=dtype)
    image = torch.rand(1, 3, size, size)
    base = maxrss_mb()
    t = best_of(lambda: encoder.encode(image), repeats=1)
    return {"name": f"DINOv3 ViT-L/16 S={size} {dtype_name}", "time_s": t, "peak_mb": maxrss_mb() - base,
            "note": f"{(size // 16) ** 2 + 5} tokens, random weights, {torch.get_num_threads()} threads, 1 run"}


def bench_dinov3_512_fp32() -> dict:
    return _dinov3_row(512, "fp32")


def bench_dinov3_512_bf16() -> dict:
    return _dinov3_row(512, "bf16")


def bench_dinov3_1024_fp32() -> dict:
    return _dinov3_row(1024, "fp32")


def bench_dinov3_1024_bf16() -> dict:
    return _dinov3_row(1024, "bf16")


def _naf_row(size: int, target: int, pixels: int | None) -> dict:
    """NAF (official dims, random weights), 1024-ch LR features: guidance + attention at ``pixels`` outputs (None: full map)."""
    import torch

    from pixal3d.conditioning.naf import NAF

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        naf = NAF().eval()
        image = torch.rand(1, 3, size, size)
        feats = torch.randn(1, 1024, size // 16, size // 16)
        flat = None if pixels is None else torch.randperm(target * target)[:pixels]
    lr = (size // 16, size // 16)

    def run():
        guide = naf.guide(image, target, lr)
        if flat is None:
            rows = torch.arange(target).repeat_interleave(target)
            cols = torch.arange(target).repeat(target)
        else:
            rows, cols = flat // target, flat % target
        return naf.upsample_at(guide, feats, rows, cols)

    base = maxrss_mb()
    t = best_of(run, repeats=1)
    what = "full map" if pixels is None else f"{pixels // 1000}k random output pixels"
    return {"name": f"NAF S={size} -> T={target}, {what}", "time_s": t, "peak_mb": maxrss_mb() - base,
            "note": f"LR {lr[0]}x{lr[1]}x1024, dilation {target * 16 // size}, fp32, "
                    f"{torch.get_num_threads()} threads, 1 run (guidance encoder included)"}


def bench_naf_512_full() -> dict:
    return _naf_row(512, 512, None)


def bench_naf_1024_to_512_full() -> dict:
    return _naf_row(1024, 512, None)


def bench_naf_1024_sparse() -> dict:
    return _naf_row(1024, 1024, 200_000)


BENCHMARKS: list[Callable[[], dict]] = [
    bench_sparse_backprojection,
    bench_dinov3_512_fp32,
    bench_dinov3_512_bf16,
    bench_dinov3_1024_fp32,
    bench_dinov3_1024_bf16,
    bench_naf_512_full,
    bench_naf_1024_to_512_full,
    bench_naf_1024_sparse,
]


if __name__ == "__main__":
    main(BENCHMARKS)
