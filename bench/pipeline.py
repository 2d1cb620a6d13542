"""Pipeline benchmark: per-stage time and peak memory of image → voxels, on this machine.

Rows (each in a fresh process, see ``bench/runner.py``):

* ``bench_tiny``: the official tiny configuration (``../shared/reference/pipeline_e2e_tiny``: its
  random weights in the TencentARC/Pixal3D layout, tiny DINOv3 + NAF) run end to end with the
  official 12 steps per flow (1024 cascade), decoders included.
* ``bench_official_512``: the official full-size networks of the 512 stage — DINOv3 ViT-L/16 + NAF,
  the 1.3B sparse-structure flow, its decoder, the 1.3B 512 shape flow — with random weights written
  in the official layout and loaded through the pipeline in low-memory mode (one network resident).
  The shape stage runs on a realistic token set: the Stanford bunny voxelised at 32³ (not random
  occupancy, which random decoder weights would give). Each flow runs ONE guided Euler step (two
  forward passes); the 12-step time is extrapolated from the official schedule (guided steps = two
  passes, the others one).

* ``bench_official_512_full``: the same networks run as generation runs them — the structure flow's 12 Euler steps
  with the official CFG interval and its decoder, then the 512 shape flow's 12 steps on the bunny's tokens —
  measured end to end, nothing extrapolated.

* ``bench_default_model``: the shipped default model (``models/pixal3d-small``) on the bundled 512²
  example image, as ``inference.py`` runs it: load, generate (default steps and CFG), GLB export.

Usage: ``python bench/pipeline.py [bench_tiny] [bench_official_512] [bench_official_512_full] [bench_default_model]``. The official row writes ~6 GB
of weights to a temporary folder (removed afterwards) and takes several minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from runner import REPO, main, maxrss_mb

SHARED = Path(os.environ.get("PIXAL3D_SHARED", REPO.parent / "shared"))  # as the tests: override with PIXAL3D_SHARED
MANIFESTS = SHARED / "reference" / "manifests"
#: DINOv3 ViT-L/16 (the official image encoder), for random-weight benchmarks
DINOV3_VITL16 = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
                 "num_register_tokens": 4, "patch_size": 16, "rope_theta": 100.0, "layer_norm_eps": 1e-5}
OFFICIAL_STAGES = {
    "sparse_structure_flow_model": "ss_flow_img_dit_1_3B_64_bf16",
    "sparse_structure_decoder": "ss_dec_conv3d_16l8_fp16",
    "shape_slat_flow_model_512": "slat_flow_img2shape_dit_1_3B_512_bf16",
}
#: the official 1024 cascade: every pipeline key → checkpoint stem (TencentARC/Pixal3D names)
OFFICIAL_1024 = {**OFFICIAL_STAGES,
                 "shape_slat_flow_model_1024": "slat_flow_img2shape_dit_1_3B_1024_bf16",
                 "tex_slat_flow_model_1024": "slat_flow_imgshape2tex_dit_1_3B_1024_bf16",
                 "shape_slat_decoder": "shape_dec_next_dc_f16c32_fp16",
                 "tex_slat_decoder": "tex_dec_next_dc_f16c32_fp16"}


def _stage_seconds(timings: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())


def bench_tiny() -> dict:
    """Official tiny configuration, 12 steps per flow, 1024 cascade, on CPU."""
    import torch
    from PIL import Image

    from pixal3d.core.camera import Camera
    from pixal3d.pipelines.pixal3d import GenerationOptions, Pixal3DPipeline, stage_sampler_params
    from tests.helpers import Fixture
    from tests.pipelines.tiny_folder import write_tiny_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        e2e = Fixture("pipeline_e2e_tiny")
        folder = write_tiny_pipeline(Path(tmp) / "tiny", e2e, Fixture("dinov3_tiny"), Fixture("naf_tiny"))
        base = maxrss_mb()
        pipe = Pixal3DPipeline.from_pretrained(folder, device="cpu")
        cam = e2e.meta["camera_params"]
        camera = Camera.front(cam["camera_angle_x"], cam["distance"], cam["mesh_scale"])
        image = Image.fromarray(e2e["image_uint8_HWC"].numpy())
        params = stage_sampler_params(pipe.folder.config.samplers, GenerationOptions(steps=12))
        start = time.perf_counter()
        out = pipe.run(image, camera, seed=42, pipeline_type="1024_cascade", sampler_params=params, progress=False)
        total = time.perf_counter() - start
        n_vox = len(out.decoded.pbr.coords)
    return {"name": "tiny config, 12 steps/flow, 1024 cascade", "time_s": total, "peak_mb": maxrss_mb() - base,
            "note": f"{len(out.shape_lr.coords)} LR / {len(out.shape_hr.coords)} HR tokens, {n_vox} voxels; "
                    f"{_stage_seconds(out.timings)}; {torch.get_num_threads()} threads"}


def write_random_stage(folder: Path, stem: str, device: str = "cpu") -> None:
    """Random weights for one official checkpoint (shapes and dtypes of its manifest), official file names.
    ``device``: where the random numbers are drawn (``cuda`` draws the 1.3B flows in seconds)."""
    import torch

    from pixal3d.models.loading import build_on_meta, save_model

    manifest = json.loads((MANIFESTS / f"{stem}.json").read_text())
    model = build_on_meta(manifest["name"], manifest["args"])
    gen = torch.Generator(device).manual_seed(0)
    state = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("rope_phases"):
            continue
        value = torch.randn(tensor.shape, generator=gen, device=device) * (0.02 if tensor.ndim > 1 else 0.1)
        if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "gamma")):
            value += 1.0
        state[name] = value.to(tensor.dtype).cpu()
    save_model(state, folder / "ckpts" / stem, manifest["name"], manifest["args"])


def write_official_folder(folder: Path, stages: dict[str, str], device: str = "cpu") -> None:
    """A model folder of ``stages`` (pipeline key → official stem) with random weights (:func:`write_random_stage`)
    and a ``pipeline.json`` naming them, with unit latent normalisations (32 channels)."""
    from pixal3d.core.pipeline_config import PIPELINE_FILE, PipelineConfig

    for stem in stages.values():
        write_random_stage(folder, stem, device=device)
    unit = {"mean": [0.0] * 32, "std": [1.0] * 32}
    PipelineConfig("Trellis2ImageTo3DPipeline", models={k: f"ckpts/{v}" for k, v in stages.items()},
                   normalization={"shape_slat": unit, "tex_slat": unit}).write(Path(folder) / PIPELINE_FILE)


def structure_step(pipe, image, camera, params) -> None:
    """The structure stage once with sampler ``params``: condition, flow sampling and the SS decoder (random weights
    decode to arbitrary occupancy, so the benchmarks give the shape stages the bunny's voxels instead)."""
    from pixal3d.sampling.flow_euler import draw_noise

    cond = pipe.conditioner.condition("ss", image, camera)
    with pipe.models.use("sparse_structure_flow_model") as flow:
        r = flow.resolution
        noise = draw_noise((1, flow.out_channels, r, r, r))
        z = pipe.sampler.sample(flow, noise, cond, pipe.conditioner.negative(cond), **params.as_kwargs()).samples
    with pipe.models.use("sparse_structure_decoder") as decoder:
        decoder(z)


def bunny_coords(resolution: int = 32) -> "torch.Tensor":
    """``[N, 4]`` int32 ``(0, x, y, z)``: the Stanford bunny of the evaluation set voxelised at ``resolution``³, a
    realistic token set for benchmarks. Cached in ``outputs/bench/`` (git-ignored), so a machine without
    ``../shared`` (a lent GPU machine) can use a copy of the cache."""
    import numpy as np
    import torch

    cache = REPO / "outputs" / "bench" / f"bunny_coords_{resolution}.npy"
    if not cache.is_file():
        from pixal3d.mesh.io import load_mesh
        from pixal3d.mesh.voxelize import voxelize

        asset, _ = voxelize(load_mesh(SHARED / "evalsets" / "meshes" / "stanford_bunny.obj"), resolution)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, asset.coords.astype(np.int32))
    coords = torch.from_numpy(np.load(cache)).int()
    return torch.cat([torch.zeros(len(coords), 1, dtype=torch.int32), coords], 1)


def _twelve_step_estimate(one_guided_step_s: float, rescale_t: float, interval: tuple[float, float]) -> float:
    from pixal3d.sampling.flow_euler import guidance_active, time_grid

    guided = sum(guidance_active(t, interval) for t in time_grid(12, rescale_t)[:-1])
    return guided * one_guided_step_s + (12 - guided) * one_guided_step_s / 2


@contextmanager
def official_512_run():
    """Random weights of the official 512 stage written to a temporary folder (removed on exit) and opened in
    low-memory mode on the CPU → ``(pipeline, image, camera, bunny coords at 32³, {"build encoders": s}, RSS base MB)``."""
    import torch
    from PIL import Image

    from pixal3d.conditioning.dinov3 import DINOv3Encoder
    from pixal3d.conditioning.extractor import ConditionExtractor
    from pixal3d.conditioning.naf import NAF
    from pixal3d.core.camera import Camera
    from pixal3d.models.pipeline_folder import open_pipeline_folder
    from pixal3d.pipelines.pixal3d import Pixal3DPipeline

    tmp = Path(tempfile.mkdtemp(prefix="pixal3d_bench_"))
    try:
        write_official_folder(tmp, OFFICIAL_STAGES)
        coords_lr = bunny_coords(32)
        base = maxrss_mb()
        start = time.perf_counter()
        conditioner = ConditionExtractor(DINOv3Encoder.from_config(DINOV3_VITL16), NAF(), device="cpu")
        pipe = Pixal3DPipeline(open_pipeline_folder(tmp), conditioner, torch.device("cpu"), low_vram=True)
        image = Image.new("RGB", (518, 518), (128, 96, 64))
        times = {"build encoders": time.perf_counter() - start}
        yield pipe, image, Camera.front(0.8575560450553894), coords_lr, times, base
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_official_512_full() -> dict:
    """Official-size 512 stage measured end to end: DINOv3 + NAF conditioning, the structure flow's 12 guided Euler steps
    and its decoder, the 512 shape flow's 12 steps on the bunny's tokens (random weights, low-memory mode, CPU)."""
    import torch

    from pixal3d.sampling.flow_euler import STAGE_DEFAULTS

    with official_512_run() as (pipe, image, camera, coords_lr, times, base):
        torch.manual_seed(42)
        start = time.perf_counter()
        structure_step(pipe, image, camera, STAGE_DEFAULTS["sparse_structure"])
        times["structure: condition + flow 12 steps + decoder"] = time.perf_counter() - start
        start = time.perf_counter()
        pipe.sample_shape("shape_lr", image, camera, coords_lr, STAGE_DEFAULTS["shape_slat"], progress=False)
        times["shape 512: condition + flow 12 steps"] = time.perf_counter() - start
        peak = maxrss_mb() - base
    return {"name": "official 512 stage (SS + shape 512) end to end, random weights", "time_s": sum(times.values()),
            "peak_mb": peak, "note": f"{len(coords_lr)} LR tokens (bunny at 32³), official 12 steps and CFG interval per "
                                     f"flow, nothing extrapolated; {_stage_seconds(times)}; {torch.get_num_threads()} threads"}


def bench_official_512() -> dict:
    """Official-size 512 stage (random weights, official layout), low-memory mode, CPU: one guided step per flow,
    12 steps extrapolated."""
    import torch

    from pixal3d.sampling.flow_euler import STAGE_DEFAULTS

    with official_512_run() as (pipe, image, camera, coords_lr, times, base):
        one = {k: p.with_overrides(steps=1) for k, p in STAGE_DEFAULTS.items()}  # t = 1: guided, two passes
        torch.manual_seed(42)
        start = time.perf_counter()
        pipe.conditioner.condition("ss", image, camera)
        times["condition ss (DINOv3 512)"] = time.perf_counter() - start
        start = time.perf_counter()
        structure_step(pipe, image, camera, one["sparse_structure"])
        ss_step = time.perf_counter() - start
        start = time.perf_counter()
        pipe.conditioner.condition("shape_512", image, camera, coords=coords_lr)
        times["condition shape_512 (NAF)"] = time.perf_counter() - start
        start = time.perf_counter()
        pipe.sample_shape("shape_lr", image, camera, coords_lr, one["shape_slat"], progress=False)
        shape_step = time.perf_counter() - start
        d = STAGE_DEFAULTS
        times["SS flow 12 steps (est.)"] = _twelve_step_estimate(ss_step, d["sparse_structure"].rescale_t, d["sparse_structure"].guidance_interval)
        times["shape 512 flow 12 steps (est.)"] = _twelve_step_estimate(shape_step, d["shape_slat"].rescale_t, d["shape_slat"].guidance_interval)
        peak = maxrss_mb() - base
    total = sum(times.values())
    return {"name": "official 512 stage (SS + shape 512), random weights", "time_s": total, "peak_mb": peak,
            "note": f"{len(coords_lr)} LR tokens (bunny at 32³); 1 guided step measured per flow "
                    f"(SS incl. load+decode {ss_step:.0f}s, shape incl. load {shape_step:.0f}s), 12 steps extrapolated; "
                    f"{_stage_seconds(times)}; {torch.get_num_threads()} threads"}


def bench_default_model() -> dict:
    """The default model end to end on ``examples/example.png`` (512²): generation + GLB, load timed apart."""
    import torch

    from pixal3d.pipelines.pixal3d import GenerationOptions, Pixal3DPipeline
    folder = REPO / "models" / "pixal3d-small"
    start = time.perf_counter()
    pipe = Pixal3DPipeline.from_pretrained(folder, device="cpu")
    load = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = pipe.generate(str(REPO / "examples" / "example.png"), GenerationOptions(seed=42), progress=False)
        generated = time.perf_counter() - start
        result.save_glb(Path(tmp) / "out.glb")
        total = time.perf_counter() - start
    return {"name": "default model (pixal3d-small), example.png 512² → GLB", "time_s": total,
            "note": f"load {load:.1f}s (not counted), generation {generated:.1f}s, GLB {total - generated:.1f}s; "
                    f"peak RSS of the whole process {maxrss_mb():.0f} MB; {torch.get_num_threads()} threads"}


if __name__ == "__main__":
    main([bench_tiny, bench_official_512, bench_official_512_full, bench_default_model])
