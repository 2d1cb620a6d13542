"""Bench: procedural asset synthesis throughput (``pixal3d data synth``) on this machine's cores.

Each row writes ``COUNT`` fresh assets (seed 0) into a temporary folder with :func:`pixal3d.data.synth.synthesize`
and reports assets per minute (wall clock, including process start-up of the worker pool and the
manifest). Rows: 1 and 2 workers without the contact sheet, and 2 workers with it (the sheet renders
every asset once more at 128²); and ``data build`` of ``BUILD_COUNT`` fresh assets with the default config
(4 views, 256³ voxels, 512² images) on 2 workers. To add a row, write ``bench_xxx() -> dict`` returning
``{"name", "assets", "time_s", "assets_per_min", "note"}`` and append it to :data:`BENCHMARKS`.

Usage: ``python bench/data.py [ROW_NAME ...] [--count N]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from runner import main as run_table

from pixal3d.data.synth import synthesize

COUNT = 48


def _synth_row(name: str, workers: int, sheet: bool, note: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        synthesize(COUNT, Path(tmp), seed=0, workers=workers, sheet=sheet)
        elapsed = time.perf_counter() - start
        sizes = [p.stat().st_size for p in Path(tmp).glob("*.glb")]
    return {"name": name, "assets": COUNT, "time_s": elapsed, "assets_per_min": 60.0 * COUNT / elapsed,
            "note": f"{note}; median GLB {statistics.median(sizes) / 1024:.0f} KiB"}


def bench_synth_1_worker() -> dict:
    return _synth_row("synth, 1 worker", 1, False, "no contact sheet")


def bench_synth_2_workers() -> dict:
    return _synth_row("synth, 2 workers", 2, False, "no contact sheet")


def bench_synth_2_workers_sheet() -> dict:
    return _synth_row("synth, 2 workers + sheet", 2, True, "with contact sheet (128² preview per asset)")


#: assets per ``data build`` row (each asset: 4 views rendered at 512² and voxelised at 256³)
BUILD_COUNT = 6


def bench_build_2_workers() -> dict:
    """``pixal3d data build`` with the defaults (K=4 views, R=256, S=512) on 2 workers, fresh folder."""
    from pixal3d.data.build import BuildConfig, build_dataset

    with tempfile.TemporaryDirectory() as tmp:
        synthesize(BUILD_COUNT, Path(tmp) / "assets", seed=0, workers=2, sheet=False)
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = build_dataset(Path(tmp) / "assets", Path(tmp) / "data", BuildConfig(views=4, resolution=256, image_size=512),
                               workers=2)
        elapsed = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)  # the workers' CPU seconds
        voxels = [v["num_voxels"] for e in json.loads(result.manifest.read_text())["assets"].values() for v in e["views"]]
    return {"name": "data build, 2 workers", "assets": BUILD_COUNT, "time_s": elapsed,
            "assets_per_min": 60.0 * BUILD_COUNT / elapsed,
            "note": f"K=4 views, R=256, S=512; {cpu / BUILD_COUNT:.1f} worker CPU-s per asset; {result.failed} failed; "
                    f"median {statistics.median(voxels):.0f} voxels per view"}


BENCHMARKS: list[Callable[[], dict]] = [bench_synth_1_worker, bench_synth_2_workers, bench_synth_2_workers_sheet,
                                        bench_build_2_workers]


#: the table's value columns (see ``runner.main``)
COLUMNS = (("assets", "assets", "{}"), ("time_s", "time (s)", "{:.1f}"), ("assets_per_min", "assets/min", "{:.0f}"))


def main(argv: list[str] | None = None) -> None:
    """Run the named rows (default all) in this process (they read :data:`COUNT`) and print the table."""
    global COUNT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", help="benchmark function names (default: all)")
    parser.add_argument("--count", type=int, default=COUNT, help=f"assets per row (default {COUNT})")
    args = parser.parse_args(argv)
    COUNT = args.count
    run_table(BENCHMARKS, args.rows, COLUMNS, spawn=False)


if __name__ == "__main__":
    main()
