"""Benchmark: the opt-in int8 path (``--quantize int8``): its speed, and what it costs in fidelity.

Rows (each in a fresh process, see ``bench/runner.py``):

* ``bench_block``: one official-size flow block (``bench/flow_block.py``'s builder: width 1536, 4096 tokens,
  dense) forward in float32, bfloat16 (the official flow dtype) and dynamic int8 (``quantize_flow_int8``:
  int8 Linear layers, float32 attention and norms), all in one process so the ratios are of one run.
  ``PIXAL3D_BENCH_TOKENS=N`` measures a smaller block when 4096 is too slow; ``PIXAL3D_BENCH_REPS`` (3).
* ``bench_tiny``: the official tiny configuration (``../shared/reference/pipeline_e2e_tiny``), 1024 cascade,
  12 steps per flow, exact vs int8 (same seed 42, same image).
* ``bench_default_model``: ``models/pixal3d-small`` on ``examples/example.png`` (default steps, seed 42), exact vs
  int8.

The fidelity rows report the occupancy IoU of the structure stage (occupied voxels of the two runs) and the
Chamfer L1 / F-score@0.01 of the final decoded meshes (50 000 surface samples each, the evaluation's metric,
unit-cube frame), int8 vs exact; and, as the scale of run-to-run variation, the same numbers between the exact
run and an exact run with another seed (43). ``time (s)`` is the int8 generation; ``vs exact``: exact time ÷ int8.

    python bench/quantize.py [bench_block] [bench_tiny] [bench_default_model]
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from runner import REPO, main

COLUMNS = (("time_s", "time (s)", "{:.2f}"), ("speedup", "vs exact", "{:.2f}"), ("iou", "structure IoU", "{:.3f}"),
           ("chamfer", "Chamfer L1", "{:.4f}"), ("fscore", "F@0.01", "{:.3f}"), ("peak_mb", "peak memory (MB)", "{:.0f}"))


def bench_block() -> dict:
    """Official-size flow block forward: float32, bfloat16, int8 (one process)."""
    import torch
    from flow_block import TOKENS, build_block, timed

    from pixal3d.models.quantize import quantize_flow_int8

    tokens = int(os.environ.get("PIXAL3D_BENCH_TOKENS", TOKENS))
    reps = int(os.environ.get("PIXAL3D_BENCH_REPS", 3))
    block, rope, _, x, mod, glob, proj = build_block(tokens)
    times = {}
    with torch.inference_mode():
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            for module in block.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(dtype)
            ctx = {"global": glob.to(dtype), "proj": proj.to(dtype)}
            xd, md = x.to(dtype), mod.to(dtype)
            times[name] = timed(lambda: block(xd, md, ctx, rope), reps)
        block.float()
        reference = block(x, mod, {"global": glob, "proj": proj}, rope)
        quantized = quantize_flow_int8(block)
        ctx = {"global": glob, "proj": proj}
        times["int8"] = timed(lambda: quantized(x, mod, ctx, rope), reps)
        rel = float((quantized(x, mod, ctx, rope) - reference).norm() / reference.norm())
    return {"name": f"flow block, {tokens} tokens, width 1536: int8 vs bf16 vs fp32", "time_s": times["int8"],
            "speedup": times["float32"] / times["int8"],
            "note": f"float32 {times['float32']:.2f} s, bfloat16 {times['bfloat16']:.2f} s, int8 {times['int8']:.2f} s: "
                    f"int8 is {times['bfloat16'] / times['int8']:.2f}× bf16 and {times['float32'] / times['int8']:.2f}× fp32 "
                    f"(vs exact = fp32 ÷ int8); block output relative error of int8 vs fp32 {rel:.4f}; median of {reps}; "
                    f"{torch.get_num_threads()} threads"}


def _structure_iou(a, b) -> float:
    sa, sb = {tuple(c) for c in a.tolist()}, {tuple(c) for c in b.tolist()}
    return len(sa & sb) / max(1, len(sa | sb))


def _surface(out, camera):
    from pixal3d.evaluation.metrics import sample_surface
    from pixal3d.export.glb import asset_surface
    from pixal3d.pipelines.pixal3d import decoded_asset

    vertices, faces = asset_surface(decoded_asset(out, camera))
    return sample_surface(vertices, faces, 50_000), len(faces)


def _compare(exact, other, camera) -> dict:
    from pixal3d.evaluation.metrics import surface_scores

    (pa, fa), (pb, fb) = _surface(exact, camera), _surface(other, camera)
    scores = surface_scores(pb, pa)
    return {"iou": _structure_iou(exact.structure.occupied, other.structure.occupied),
            "chamfer": scores["chamfer_l1"], "fscore": scores["fscore@0.01"], "faces": (fa, fb)}


def _fidelity_row(name: str, run) -> dict:
    """``run(quantize, seed) -> (GenerationOutput, Camera)``; int8 vs exact at seed 42, exact 42 vs exact 43."""
    import torch

    start = time.perf_counter()
    exact, camera = run(None, 42)
    t_exact = time.perf_counter() - start
    start = time.perf_counter()
    int8, _ = run("int8", 42)
    t_int8 = time.perf_counter() - start
    seed43, _ = run(None, 43)
    q, s = _compare(exact, int8, camera), _compare(exact, seed43, camera)
    n = len(exact.structure.occupied)
    return {"name": name, "time_s": t_int8, "speedup": t_exact / t_int8, "iou": q["iou"], "chamfer": q["chamfer"],
            "fscore": q["fscore"],
            "note": f"exact {t_exact:.2f} s, int8 {t_int8:.2f} s (incl. load); {n} / {len(int8.structure.occupied)} "
                    f"occupied structure voxels (exact / int8), {q['faces'][0]} / {q['faces'][1]} faces; "
                    f"seed 43 vs 42 (exact, the scale of run-to-run variation): IoU {s['iou']:.3f}, "
                    f"Chamfer L1 {s['chamfer']:.4f}, F@0.01 {s['fscore']:.3f}; {torch.get_num_threads()} threads"}


def bench_tiny() -> dict:
    """The official tiny configuration, 1024 cascade, exact vs int8."""
    from PIL import Image

    from pixal3d.core.camera import Camera
    from pixal3d.pipelines.pixal3d import GenerationOptions, Pixal3DPipeline, stage_sampler_params
    from tests.helpers import Fixture
    from tests.pipelines.tiny_folder import write_tiny_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        e2e = Fixture("pipeline_e2e_tiny")
        folder = write_tiny_pipeline(Path(tmp) / "tiny", e2e, Fixture("dinov3_tiny"), Fixture("naf_tiny"))
        cam = e2e.meta["camera_params"]
        camera = Camera.front(cam["camera_angle_x"], cam["distance"], cam["mesh_scale"])
        image = Image.fromarray(e2e["image_uint8_HWC"].numpy())

        def run(quantize, seed):
            pipe = Pixal3DPipeline.from_pretrained(folder, device="cpu", quantize=quantize)
            params = stage_sampler_params(pipe.folder.samplers, GenerationOptions(steps=12))
            return pipe.run(image, camera, seed=seed, pipeline_type="1024_cascade", sampler_params=params,
                            progress=False), camera

        return _fidelity_row("tiny config (official layout), 1024 cascade: int8 vs exact", run)


def bench_default_model() -> dict:
    """``models/pixal3d-small`` on ``examples/example.png``, exact vs int8 (generation only, no GLB)."""
    from pixal3d.pipelines.pixal3d import GenerationOptions, Pixal3DPipeline

    folder, image = REPO / "models" / "pixal3d-small", str(REPO / "examples" / "example.png")

    def run(quantize, seed):
        pipe = Pixal3DPipeline.from_pretrained(folder, device="cpu", quantize=quantize)
        result = pipe.generate(image, GenerationOptions(seed=seed), progress=False)
        return result.stages, result.camera

    return _fidelity_row("default model (pixal3d-small), example.png: int8 vs exact", run)


if __name__ == "__main__":
    main([bench_block, bench_tiny, bench_default_model], columns=COLUMNS)
