"""GPU benchmark: the official-size 1024 cascade and the default model on a CUDA device, ``python bench/gpu.py [rows]``.

Rows (each in a fresh process; skipped with a note when no CUDA device is present):

* ``bench_default_model_cuda``: ``models/pixal3d-small`` on ``examples/example.png`` as ``inference.py`` runs it
  (generation + GLB export), after one warm-up generation.
* ``bench_official_1024_cascade``: every network of the official 1024 cascade at full size — DINOv3 ViT-L/16 +
  NAF, the four 1.3B flows, the three decoders — with random weights written in the official layout
  (``$PIXAL3D_SHARED/reference/manifests``) and loaded through the pipeline, run by ``Pixal3DPipeline.run`` with
  the official 12 steps and CFG schedule. Random weights decode to arbitrary occupancy, so the token sets are made
  realistic: the structure stage's occupied voxels are replaced by the Stanford bunny voxelised at 32³ and the
  cascade's 1024 tokens by the bunny at 64³ (``bench/pipeline.py:bunny_coords``); everything else, the final
  decoders included, runs as for a user. One cold run, then one warm run (the figure); per-stage time and peak
  allocated GPU memory of the warm run. TRELLIS.2 publishes ≈ 17 s for its 1024 cascade on an H100.

The training throughput on the same device is ``bench/train.py``'s ``*_small`` rows (``PIXAL3D_DEVICE=cuda``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from pipeline import DINOV3_VITL16, OFFICIAL_1024, bunny_coords, write_official_folder
from runner import REPO, main

#: TRELLIS.2's published time for its 1024 cascade on one H100 (seconds)
TRELLIS2_H100_1024_S = 17.0
COLUMNS = (("time_s", "time (s)", "{:.1f}"), ("peak_gpu_mb", "peak GPU MB", "{:.0f}"))


def _cuda_or_skip(name: str) -> dict | None:
    import torch

    if torch.cuda.is_available():
        return None
    return {"name": name, "time_s": "—", "peak_gpu_mb": "—", "note": "skipped: no CUDA device"}


def _gpu_name() -> str:
    import torch

    props = torch.cuda.get_device_properties(0)
    return f"{props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"


def time_cascade(pipe, image, camera, lr_tokens, hr_tokens, resolution: int):
    """Run ``pipe.run`` twice (cold, warm) with the structure stage's voxels replaced by ``lr_tokens`` and the
    cascade's by ``hr_tokens`` (``[N, 4]`` int32, CPU) at final ``resolution``. Returns ``((cold_s, out),
    (warm_s, out), peaks)``: ``peaks`` = peak allocated device memory (MB) per stage of the warm run (0 on CPU)."""
    import torch

    from pixal3d.pipelines.cascade import CascadeChoice

    cuda = pipe.device.type == "cuda"
    peaks: dict[str, float] = {}

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(pipe.device)

    def tracked(label, method):
        def run(*args, **kwargs):
            sync()
            if cuda:
                torch.cuda.reset_peak_memory_stats(pipe.device)
            out = method(*args, **kwargs)
            sync()
            key = label(*args) if callable(label) else label
            peaks[key] = torch.cuda.max_memory_allocated(pipe.device) / 2**20 if cuda else 0.0
            return out
        return run

    structure, cascade = pipe.sample_sparse_structure, pipe.cascade

    def structure_on_tokens(*args, **kwargs):
        sample = structure(*args, **kwargs)
        sample.occupied = lr_tokens.to(pipe.device)
        return sample

    def cascade_on_tokens(*args, **kwargs):
        cascade(*args, **kwargs)  # the decoder's upsampling runs and is timed; its coords are replaced
        return hr_tokens, CascadeChoice(resolution, hr_tokens, {resolution: len(hr_tokens)})

    pipe.sample_sparse_structure = tracked("sparse structure", structure_on_tokens)
    pipe.sample_shape = tracked(lambda stage, *_: stage, pipe.sample_shape)
    pipe.cascade = tracked("cascade upsample", cascade_on_tokens)
    pipe.sample_texture = tracked("texture", pipe.sample_texture)
    pipe.decode = tracked("decode", pipe.decode)
    runs = []
    for _ in range(2):  # cold, then warm
        pipe.conditioner.clear_cache()
        start = time.perf_counter()
        out = pipe.run(image, camera, seed=42, pipeline_type=f"{resolution}_cascade", progress=False)
        sync()
        runs.append((time.perf_counter() - start, out))
        print(f"{('cold', 'warm')[len(runs) - 1]} run {runs[-1][0]:.1f}s: {out.timings}", file=sys.stderr, flush=True)
    return runs[0], runs[1], peaks


def bench_official_1024_cascade() -> dict:
    """Official-size 1024 cascade, random weights in the official layout, realistic token sets, on CUDA."""
    name = "official 1024 cascade, random weights, warm run"
    if (skipped := _cuda_or_skip(name)) is not None:
        return skipped
    import torch
    from PIL import Image

    from pixal3d.conditioning.dinov3 import DINOv3Encoder
    from pixal3d.conditioning.extractor import ConditionExtractor
    from pixal3d.conditioning.naf import NAF
    from pixal3d.core.camera import Camera
    from pixal3d.models.pipeline_folder import open_pipeline_folder
    from pixal3d.pipelines.pixal3d import Pixal3DPipeline

    device = torch.device("cuda")
    tmp = Path(tempfile.mkdtemp(prefix="pixal3d_gpu_bench_"))
    try:
        start = time.perf_counter()
        write_official_folder(tmp, OFFICIAL_1024, device="cuda")
        write_s = time.perf_counter() - start

        start = time.perf_counter()
        conditioner = ConditionExtractor(DINOv3Encoder.from_config(DINOV3_VITL16), NAF(), device=device)
        pipe = Pixal3DPipeline(open_pipeline_folder(tmp), conditioner, device)
        for key in Pixal3DPipeline.REQUIRED_STAGES:
            pipe.models[key]
        torch.cuda.synchronize()
        load_s = time.perf_counter() - start

        lr_tokens, hr_tokens = bunny_coords(32), bunny_coords(64)
        image = Image.open(REPO / "examples" / "example.png").convert("RGB").resize((518, 518))
        (cold_s, _), (warm_s, out), peaks = time_cascade(pipe, image, Camera.front(0.8575560450553894),
                                                         lr_tokens, hr_tokens, 1024)
        voxels = len(out.decoded.pbr.coords)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in out.timings.items())
    memory = ", ".join(f"{k} {v / 1024:.1f}" for k, v in peaks.items())
    return {"name": name, "time_s": warm_s, "peak_gpu_mb": max(peaks.values()),
            "note": f"{_gpu_name()}; {warm_s / TRELLIS2_H100_1024_S:.2f}× TRELLIS.2's 17 s (H100); cold run {cold_s:.1f}s; "
                    f"{len(lr_tokens)} LR / {len(hr_tokens)} HR tokens, {voxels} decoded voxels at 1024³; "
                    f"warm stages: {stages}; peak GB per stage: {memory}; "
                    f"load {load_s:.0f}s, random weights written in {write_s:.0f}s (neither counted)"}


def bench_default_model_cuda() -> dict:
    """The default model on ``examples/example.png``: generation + GLB export on CUDA, after one warm-up."""
    name = "default model (pixal3d-small), example.png 512² → GLB"
    if (skipped := _cuda_or_skip(name)) is not None:
        return skipped
    import torch

    from pixal3d.pipelines.pixal3d import GenerationOptions, Pixal3DPipeline

    start = time.perf_counter()
    pipe = Pixal3DPipeline.from_pretrained(REPO / "models" / "pixal3d-small", device="cuda")
    load_s = time.perf_counter() - start
    example = str(REPO / "examples" / "example.png")
    pipe.generate(example, GenerationOptions(seed=42), progress=False)  # warm-up
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = pipe.generate(example, GenerationOptions(seed=42), progress=False)
        torch.cuda.synchronize()
        generated_s = time.perf_counter() - start
        result.save_glb(Path(tmp) / "out.glb", progress=False)
        total_s = time.perf_counter() - start
    return {"name": name, "time_s": total_s, "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20,
            "note": f"{_gpu_name()}; generation {generated_s:.2f}s, GLB export {total_s - generated_s:.1f}s (CPU: remesh, "
                    f"UV unwrap, bake); load {load_s:.1f}s (not counted)"}


if __name__ == "__main__":
    main([bench_default_model_cuda, bench_official_1024_cascade], columns=COLUMNS)
