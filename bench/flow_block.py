"""Benchmark: one official-size flow transformer block (Pixal3D proj mode) forward on the CPU.

Width 1536, 12 heads (head_dim 128), FFN 8192, 4096 tokens, proj_in 2048, 5 global tokens, RoPE over a
16³ grid. For float32 and bfloat16 (the official dtype split: block Linears in the dtype, norms/gammas/
modulation float32), on dense tokens and on a SparseTensor with the same 4096 voxels. Reports time,
achieved GFLOP/s (matmul + attention FLOPs) and the ratio to a plain ``torch.mm`` of the same FLOPs in
the same dtype, measured in the same run. Prints a markdown table.

    python bench/flow_block.py [--reps 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from runner import table_header, table_row

from pixal3d.models.modules.blocks import ModulatedTransformerCrossBlock
from pixal3d.models.modules.rope import RotaryEmbedder3D
from pixal3d.core.sparse_tensor import SparseTensor
from pixal3d.models.ss_flow import grid_positions

C, HEADS, MLP_RATIO, TOKENS, PROJ_IN, CTX, N_GLOBAL, GRID = 1536, 12, 5.3334, 4096, 2048, 1024, 5, 16


def block_flops(tokens: int = TOKENS) -> float:
    """Multiply-add FLOPs (×2) of the block's matmuls and attention products."""
    hidden = int(C * MLP_RATIO)
    linear = tokens * (C * 3 * C + C * C + C * C + C * C + PROJ_IN * C + 2 * C * hidden) + N_GLOBAL * CTX * 2 * C
    attn = 2 * tokens * tokens * C + 2 * tokens * N_GLOBAL * C
    return 2.0 * (linear + attn)


def timed(fn, reps: int) -> float:
    """Median wall time of ``reps`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def mm_rate(dtype: torch.dtype, flops: float, reps: int) -> float:
    """GFLOP/s of plain ``torch.mm`` [4096,1536]@[1536,8192] repeated to ``flops`` in total."""
    a, b = torch.randn(TOKENS, C).to(dtype), torch.randn(C, 8192).to(dtype)
    one = 2.0 * TOKENS * C * 8192
    count = max(1, round(flops / one))

    def run():
        for _ in range(count):
            torch.mm(a, b)

    return count * one / timed(run, reps) / 1e9


def build_block(tokens: int = TOKENS, seed: int = 0):
    """The official-size block (float32, random weights of std 0.02) and its dense inputs over the first ``tokens``
    cells of the 16³ grid: ``(block, rope, coords, x, mod, glob, proj)``; ``bench/quantize.py`` reuses it."""
    torch.manual_seed(seed)
    block = ModulatedTransformerCrossBlock(C, CTX, HEADS, MLP_RATIO, share_mod=True, qk_rms_norm=True,
                                           qk_rms_norm_cross=True, image_attn_mode="proj", proj_in_channels=PROJ_IN).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.02)
    pos = grid_positions(GRID)[:tokens]
    rope = RotaryEmbedder3D(C // HEADS).phases(pos)
    coords = torch.cat([torch.zeros(tokens, 1, dtype=torch.int64), pos], dim=1).int()
    x = torch.randn(1, tokens, C)
    mod = torch.randn(1, 6 * C) * 0.1
    glob, proj = torch.randn(1, N_GLOBAL, CTX), torch.randn(1, tokens, PROJ_IN)
    return block, rope, coords, x, mod, glob, proj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    block, rope, coords, x, mod, glob, proj = build_block()
    flops = block_flops()

    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for module in block.modules():
            if isinstance(module, torch.nn.Linear):
                module.to(dtype)
        ctx = {"global": glob.to(dtype), "proj": proj.to(dtype)}
        sp_ctx = {"global": glob.to(dtype), "proj": SparseTensor(proj[0].to(dtype), coords)}
        xd, md = x.to(dtype), mod.to(dtype)
        xs = SparseTensor(xd[0], coords)
        rate = mm_rate(dtype, flops, args.reps)
        for layout, fn in (
            ("dense", lambda: block(xd, md, ctx, rope)),
            ("sparse", lambda: block(xs, md, sp_ctx, rope)),
        ):
            with torch.inference_mode():
                seconds = timed(fn, args.reps)
            achieved = flops / seconds / 1e9
            rows.append((str(dtype).removeprefix("torch."), layout, seconds, achieved, rate, achieved / rate))

    print(f"one flow block, {TOKENS} tokens, width {C}, {HEADS} heads, FFN {int(C * MLP_RATIO)}, proj_in {PROJ_IN}; "
          f"{flops / 1e9:.1f} GFLOP per forward; {torch.get_num_threads()} threads; median of {args.reps}\n")
    print(table_header(["dtype", "tokens", "forward (s)", "GFLOP/s", "torch.mm GFLOP/s", "ratio"]))
    for dt, layout, seconds, achieved, rate, ratio in rows:
        print(table_row([dt, layout, f"{seconds:.2f}", f"{achieved:.1f}", f"{rate:.1f}", f"{ratio:.2f}"]))


if __name__ == "__main__":
    main()
