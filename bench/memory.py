"""Benchmark: peak resident memory per stage of the official 512 and 1024 cascades in low-memory mode, on the CPU.

Rows (each in a fresh process, see ``bench/runner.py``): ``bench_official_512`` (structure + shape 512) and
``bench_official_1024`` (+ shape 1024, texture 1024, decoders at 1024). The networks are the official full-size
ones with random weights in the official layout (``bench/pipeline.py``'s writer, run in a separate process so the
measured process never holds the writer's tensors; the several GB of weights go to a temporary folder that is
removed afterwards), loaded through the pipeline with ``low_vram=True`` (one network resident at a time,
memory-mapped). Each flow runs ONE guided Euler step (time is not the point here). Token sets are realistic, not
the random decoders' output: the Stanford bunny voxelised at 32³ for the 512 stage and at 64³ for the 1024 stages.

Peak RSS per stage is the largest resident set (``/proc/self/statm``, sampled every 20 ms by a thread) while
the stage ran, including what earlier stages left resident (the image encoders, the stage's inputs). Each stage
also prints a line to stderr as it ends, so a run cut short still leaves its measured part.

    python bench/memory.py [bench_official_512] [bench_official_1024]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from pipeline import (DINOV3_VITL16, MANIFESTS, OFFICIAL_1024, OFFICIAL_STAGES, bunny_coords, structure_step,
                      write_official_folder)
from runner import main

COLUMNS = (("time_s", "time (s)", "{:.0f}"), ("peak_gb", "peak RSS (GB)", "{:.2f}"))


class RssMonitor:
    """Largest resident set of this process per named stage (a sampling thread, every ``interval`` s)."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.page = interval, os.sysconf("SC_PAGE_SIZE")
        self.current, self.peaks, self.times = None, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss_gb(self) -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page / 1e9

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def _sample(self) -> None:
        if self.current is not None:
            self.peaks[self.current] = max(self.peaks.get(self.current, 0.0), self.rss_gb())

    @contextmanager
    def stage(self, name: str):
        self.current = name
        self._sample()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sample()
            self.times[name] = time.perf_counter() - start
            self.current = None
            print(f"[memory] {name}: peak RSS {self.peaks[name]:.2f} GB, {self.times[name]:.0f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _write_folder(folder: str, stages: dict[str, str]) -> None:
    write_official_folder(Path(folder), stages)


def _run(cascade: int) -> dict:
    import torch
    from PIL import Image

    from pixal3d.conditioning.dinov3 import DINOv3Encoder
    from pixal3d.conditioning.extractor import ConditionExtractor
    from pixal3d.conditioning.naf import NAF
    from pixal3d.core.camera import Camera
    from pixal3d.models.pipeline_folder import open_pipeline_folder
    from pixal3d.pipelines.pixal3d import Pixal3DPipeline
    from pixal3d.sampling.flow_euler import STAGE_DEFAULTS

    stages = OFFICIAL_STAGES if cascade == 512 else OFFICIAL_1024
    tmp = Path(tempfile.mkdtemp(prefix="pixal3d_bench_memory_"))
    monitor = None
    try:
        start = time.perf_counter()
        writer = mp.get_context("spawn").Process(target=_write_folder, args=(str(tmp), stages))
        writer.start()
        writer.join()
        if writer.exitcode != 0:
            raise RuntimeError(f"writing the random weights failed (exit {writer.exitcode})")
        written = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) / 1e9
        print(f"[memory] wrote {written:.1f} GB of random weights in {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
        coords_lr = bunny_coords(32)
        coords_hr = bunny_coords(64) if cascade == 1024 else None
        monitor = RssMonitor()
        base = monitor.rss_gb()
        one = {k: p.with_overrides(steps=1) for k, p in STAGE_DEFAULTS.items()}  # t = 1: guided, two passes
        image = Image.new("RGB", (518, 518), (128, 96, 64))
        camera = Camera.front(0.8575560450553894)
        with monitor.stage("image encoders (DINOv3 ViT-L + NAF, built)"):
            conditioner = ConditionExtractor(DINOv3Encoder.from_config(DINOV3_VITL16), NAF(), device="cpu")
            pipe = Pixal3DPipeline(open_pipeline_folder(tmp), conditioner, torch.device("cpu"), low_vram=True)
        torch.manual_seed(42)
        with monitor.stage("structure: DINOv3 512 + 1.3B SS flow (1 step) + SS decoder"):
            structure_step(pipe, image, camera, one["sparse_structure"])
        with monitor.stage(f"shape 512: NAF + 1.3B flow (1 step), {len(coords_lr)} tokens"):
            lr = pipe.sample_shape("shape_lr", image, camera, coords_lr, one["shape_slat"], progress=False)
        if cascade == 1024:
            grid_hr = 1024 // pipe.cascade_config.latent_scale
            with monitor.stage("cascade: shape decoder upsample"):
                pipe.cascade(lr.slat, "1024_cascade", 49152)
            with monitor.stage(f"shape 1024: DINOv3 1024 + NAF + 1.3B flow (1 step), {len(coords_hr)} tokens"):
                hr = pipe.sample_shape("shape_hr", image, camera, coords_hr, one["shape_slat"], grid_resolution=grid_hr,
                                       progress=False)
            del lr
            with monitor.stage(f"texture 1024: 1.3B flow (1 step), {len(coords_hr)} tokens"):
                tex = pipe.sample_texture(image, camera, hr.slat, grid_hr, one["tex_slat"], progress=False)
            with monitor.stage("decode at 1024: shape + texture decoders"):
                decoded = pipe.decode(hr.slat, tex.slat, 1024)
                voxels = len(decoded.pbr.coords)
            print(f"[memory] decoded {voxels} voxels", file=sys.stderr, flush=True)
    finally:
        if monitor is not None:
            monitor.close()
        shutil.rmtree(tmp, ignore_errors=True)
    peaks = monitor.peaks
    note = "; ".join(f"{name} {peaks[name]:.2f} GB ({monitor.times[name]:.0f} s)" for name in peaks)
    return {"name": f"official {cascade} cascade, random weights, low_vram, 1 step per flow",
            "time_s": sum(monitor.times.values()), "peak_gb": max(peaks.values()),
            "note": f"per stage: {note}; RSS after importing torch {base:.2f} GB; {written:.1f} GB of weights written "
                    f"and removed; {torch.get_num_threads()} threads"}


def bench_official_512() -> dict:
    """Structure + shape 512, peak RSS per stage."""
    return _run(512)


def bench_official_1024() -> dict:
    """The whole 1024 cascade, peak RSS per stage."""
    return _run(1024)


if __name__ == "__main__":
    assert MANIFESTS.is_dir(), f"{MANIFESTS} is missing"
    main([bench_official_512, bench_official_1024], columns=COLUMNS)
