"""Conditioning benchmarks: one markdown table row per benchmark function.

Run ``python bench/conditioning.py`` (optionally with row names to run a subset). Each function in
:data:`BENCHMARKS` runs in a fresh process (``multiprocessing`` spawn) so its peak memory is its own:
``peak_mb`` is the growth of the process's maximum resident set (``ru_maxrss``) over the
benchmark, measured after imports. To add a row, write a function ``bench_xxx() -> dict`` returning
``{"name", "time_s", "note"}`` (``peak_mb`` is filled in by the runner) and append it to
:data:`BENCHMARKS`.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _maxrss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# --------------------------------------------------------------------------------------------
# rows
# --------------------------------------------------------------------------------------------
def bench_sparse_backprojection() -> dict:
    """Sparse back-projection of 50k voxels x 2048 channels (G=64 grid, S=1024, 64x64 map)."""
    import torch

    from pixal3d.conditioning import Camera, backproject_sparse

    torch.manual_seed(0)
    G, S, N, C = 64, 1024, 50_000, 2048
    fmap = torch.randn(1, C, 64, 64)
    flat = torch.randperm(G**3)[:N]
    coords = torch.stack([torch.zeros_like(flat), flat // G**2, flat // G % G, flat % G], 1).int()
    cam = Camera.from_fov(0.2)
    base = _maxrss_mb()
    t = _best_of(lambda: backproject_sparse(fmap, cam, coords, G, S))
    return {"name": "sparse back-projection 50k voxels x 2048 ch", "time_s": t, "peak_mb": _maxrss_mb() - base,
            "note": f"G={G}, S={S}, map 64x64, fp32, {torch.get_num_threads()} threads, best of 3"}


BENCHMARKS: list[Callable[[], dict]] = [
    bench_sparse_backprojection,
]


# --------------------------------------------------------------------------------------------
# runner
# --------------------------------------------------------------------------------------------
def _child(fn_name: str, queue) -> None:
    import torch  # noqa: F401  (imports before the baseline)

    fn = {f.__name__: f for f in BENCHMARKS}[fn_name]
    base = _maxrss_mb()
    row = fn()
    row.setdefault("peak_mb", _maxrss_mb() - base)
    queue.put(row)


def run_row(fn: Callable[[], dict]) -> dict:
    """Run one benchmark function in a fresh process and return its row."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn.__name__, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0 or queue.empty():
        return {"name": fn.__name__, "time_s": float("nan"), "peak_mb": float("nan"), "note": f"failed (exit {proc.exitcode})"}
    return queue.get()


def main(argv: list[str] | None = None) -> None:
    """Print a markdown table with one row per benchmark (all, or those named in ``argv``)."""
    names = set(argv if argv is not None else sys.argv[1:])
    print("| benchmark | time (s) | peak memory (MB) | notes |")
    print("|---|---|---|---|")
    for fn in BENCHMARKS:
        if names and fn.__name__ not in names:
            continue
        row = run_row(fn)
        print(f"| {row['name']} | {row['time_s']:.3f} | {row['peak_mb']:.0f} | {row['note']} |", flush=True)


if __name__ == "__main__":
    main()
