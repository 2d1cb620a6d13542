"""Training throughput (samples/s) of each stage: ``python bench/train.py [rows]``.

The ``*_tiny`` rows build a small dataset (3 synthetic assets × 2 views, 32³ voxels, 64² images) in a temporary
folder, then time optimiser steps of the stage's ``configs/train/*_tiny.json`` after one warm-up step (data
loading included, no checkpoint writes): ``STEPS`` steps and then ``2·STEPS`` more, each run starting its data
loader afresh, so the difference is the steady time of ``STEPS`` steps without the loader's start-up. The ``*_small`` rows do the same for the default model's
recipe (``configs/train/small/``, its batch sizes) on a dataset built like the recipe's (R = 128, 128² images;
``$PIXAL3D_BENCH_DATA`` names a built one, else 3 synthetic assets are built), each on untrained bases.

The device is pixal3d's usual choice (``$PIXAL3D_DEVICE``, else CUDA → MPS → CPU); every row's note names it.
``$PIXAL3D_BENCH_WORKERS`` overrides the configs' data-loading workers and ``$PIXAL3D_BENCH_BATCH_SCALE`` multiplies
their batch sizes (how a machine with more cores or a GPU would train).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import runner

STEPS = 10


def _dataset(root: Path, resolution: int = 32) -> Path:
    from pixal3d.data import build as B
    from pixal3d.data.synth import synthesize

    synthesize(3, root / "synth", seed=11, workers=1, sheet=False)
    B.build_dataset(root / "synth", root / "data", B.BuildConfig(views=2, resolution=resolution, image_size=64, seed=0),
                    workers=1)
    return root / "data"


def _device() -> str:
    from pixal3d.devices import select_device

    return str(select_device())


def _trainer(config: str, data: Path, out: Path, model_args: dict[str, dict] | None = None, **trainer_args):
    """The trainer of ``configs/train/<config>.json`` with ``trainer_args`` and per-stage ``model_args`` overrides,
    on :func:`_device`."""
    from pixal3d.data.dataset import ViewDataset, collate_views
    from pixal3d.training.config import parse_config
    from pixal3d.training.registry import trainer_class

    raw = json.loads((runner.REPO / "configs" / "train" / f"{config}.json").read_text())
    raw["trainer"]["args"].update(trainer_args)
    for key, args in (model_args or {}).items():
        raw["models"][key]["args"].update(args)
    raw["max_steps"] = 3 * STEPS + 1
    if os.environ.get("PIXAL3D_BENCH_WORKERS"):
        raw["num_workers"] = int(os.environ["PIXAL3D_BENCH_WORKERS"])
    raw["batch_size"] = raw["batch_size"] * int(os.environ.get("PIXAL3D_BENCH_BATCH_SCALE", "1"))
    cfg = parse_config(raw)
    dataset = ViewDataset(data, **cfg.dataset["args"])
    return trainer_class(cfg.trainer_name)(cfg, dataset, collate_views, out, device=_device(), progress=False), cfg


def _time(trainer, cfg, name: str, note: str) -> dict:
    import torch

    def sync() -> None:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)

    def timed(max_steps: int) -> float:
        sync()
        start = time.perf_counter()
        trainer.train(max_steps=max_steps, write=False)
        sync()
        return time.perf_counter() - start

    trainer.train(max_steps=1, write=False)  # warm-up
    short = timed(1 + STEPS)  # the loader's start + STEPS steps
    long = timed(1 + 3 * STEPS)  # the loader's start + 2·STEPS steps
    step = max(long - short, 1e-9) / STEPS
    return {"name": name, "time_s": step, "samples_per_s": cfg.batch_size / step,
            "note": f"batch {cfg.batch_size}, {cfg.num_workers} loader worker(s), {trainer.device.type}; loader start "
                    f"≈ {max(short - STEPS * step, 0):.1f}s (not counted); {note}"}


def bench_ss_vae_tiny() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = _dataset(Path(tmp))
        trainer, cfg = _trainer("ss_vae_tiny", data, Path(tmp) / "run")
        return _time(trainer, cfg, "SS VAE (16³ occupancy → 8×4³)", "encoder+decoder")


def _ss_flow(name: str, note: str, image_attn_mode: str) -> dict:
    """An SS flow row on top of the (untrained) tiny SS VAE, in ``proj`` or the ``cross`` ablation mode."""
    with tempfile.TemporaryDirectory() as tmp:
        data = _dataset(Path(tmp))
        vae, _ = _trainer("ss_vae_tiny", data, Path(tmp) / "vae")
        vae.save_checkpoint()
        trainer, cfg = _trainer("ss_flow_tiny", data, Path(tmp) / "run", base_pipeline=str(Path(tmp) / "vae"),
                                model_args={"sparse_structure_flow_model": {"image_attn_mode": image_attn_mode}})
        return _time(trainer, cfg, name, note)


def bench_ss_flow_tiny() -> dict:
    return _ss_flow("SS flow (4³ tokens, proj)", "frozen SS encoder + trainable small conv encoder", "proj")


def bench_ss_flow_tiny_cross() -> dict:
    return _ss_flow("SS flow (4³ tokens, cross ablation)", "all image tokens as context", "cross")


def bench_shape_vae_tiny() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = _dataset(Path(tmp))
        trainer, cfg = _trainer("shape_vae_tiny", data, Path(tmp) / "run")
        return _time(trainer, cfg, "shape SC-VAE (32³ dual grid → 8×2³)", "encoder+decoder, teacher-forced subdivisions")


def bench_tex_vae_tiny() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = _dataset(Path(tmp))
        trainer, cfg = _trainer("tex_vae_tiny", data, Path(tmp) / "run")
        return _time(trainer, cfg, "texture SC-VAE (32³ PBR → 8×2³)", "encoder+guided decoder")


SMALL_CONV = {"name": "small_conv", "args": {"channels": 64, "num_global_tokens": 2, "patch_size": 8}}


def _slat_flow(config: str, name: str, note: str) -> dict:
    """A SLat flow row on 64³ data (latent grid 4 with the 5-level tiny SC-VAEs), base folder = the untrained
    shape + texture SC-VAEs (checkpoint with their latent statistics), trainable small conv image encoder."""
    with tempfile.TemporaryDirectory() as tmp:
        data = _dataset(Path(tmp), resolution=64)
        shape_vae, _ = _trainer("shape_vae_tiny", data, Path(tmp) / "shape_vae")
        shape_vae.save_checkpoint()
        tex_vae, _ = _trainer("tex_vae_tiny", data, Path(tmp) / "tex_vae", base_pipeline=str(Path(tmp) / "shape_vae"))
        tex_vae.save_checkpoint()
        trainer, cfg = _trainer(config, data, Path(tmp) / "run", base_pipeline=str(Path(tmp) / "tex_vae"),
                                image_encoder=SMALL_CONV)
        batch = trainer.collate([trainer.dataset[i] for i in range(len(trainer.dataset))])
        x0, _ = trainer.targets(batch)
        tokens = x0.feats.shape[0] / len(trainer.dataset)
        return _time(trainer, cfg, name, f"{note}; {tokens:.0f} tokens per item")


def bench_shape_flow_tiny() -> dict:
    return _slat_flow("shape_flow_tiny", "shape SLat flow (64³ data → 4³ latent grid)",
                      "frozen shape SC-VAE encoder + trainable small conv encoder")


def bench_tex_flow_tiny() -> dict:
    return _slat_flow("tex_flow_tiny", "texture SLat flow (64³ data → 4³ latent grid)",
                      "frozen shape + texture SC-VAE encoders (concat shape latent)")


def _small_data(root: Path) -> Path:
    """The recipe-like dataset: ``$PIXAL3D_BENCH_DATA`` when set, else 3 synthetic assets × 1 view built at R = 128."""
    if os.environ.get("PIXAL3D_BENCH_DATA"):
        return Path(os.environ["PIXAL3D_BENCH_DATA"])
    from pixal3d.data import build as B
    from pixal3d.data.synth import synthesize

    synthesize(3, root / "synth", seed=11, workers=1, sheet=False)
    B.build_dataset(root / "synth", root / "data", B.BuildConfig(views=1, resolution=128, image_size=128, seed=0),
                    workers=1)
    return root / "data"


#: the recipe's runs in training order, each with the runs its base folder stands on
SMALL_CHAIN = {"ss_vae": (), "shape_vae": (), "ss_flow": ("ss_vae",), "tex_vae": (),
               "shape_flow": ("ss_flow", "shape_vae"), "tex_flow": ("shape_flow", "tex_vae")}


def _small(run: str, note: str) -> dict:
    """A row of the recipe's run ``run``, its bases saved untrained in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        data = _small_data(Path(tmp))
        saved: dict[str, str] = {}

        def base(name: str) -> str:
            if name not in saved:
                trainer, _ = build(name)
                trainer.save_checkpoint()
                saved[name] = str(Path(tmp) / name)
            return saved[name]

        def build(name: str):
            bases = [base(b) for b in SMALL_CHAIN[name]]
            args = {"base_pipeline": bases if len(bases) > 1 else bases[0]} if bases else {}
            return _trainer(f"small/{name}", data, Path(tmp) / name, **args)

        trainer, cfg = build(run)
        return _time(trainer, cfg, f"{run} (recipe config)", note)


def bench_ss_vae_small() -> dict:
    return _small("ss_vae", "16³ occupancy → 8×4³")


def bench_shape_vae_small() -> dict:
    return _small("shape_vae", "5-level dual-grid SC-VAE, 64³ crops of R = 128")


def bench_ss_flow_small() -> dict:
    return _small("ss_flow", "width 128, trains the small conv image encoder")


def bench_tex_vae_small() -> dict:
    return _small("tex_vae", "PBR SC-VAE, 64³ crops")


def bench_shape_flow_small() -> dict:
    return _small("shape_flow", "width 192, 6 blocks, 8³ latent grid")


def bench_tex_flow_small() -> dict:
    return _small("tex_flow", "width 192, 6 blocks, concat shape latent")


BENCHMARKS = [bench_ss_vae_tiny, bench_ss_flow_tiny, bench_ss_flow_tiny_cross, bench_shape_vae_tiny, bench_tex_vae_tiny,
              bench_shape_flow_tiny, bench_tex_flow_tiny, bench_ss_vae_small, bench_shape_vae_small, bench_ss_flow_small,
              bench_tex_vae_small, bench_shape_flow_small, bench_tex_flow_small]
COLUMNS = (("time_s", "s/step", "{:.3f}"), ("samples_per_s", "samples/s", "{:.1f}"), ("peak_mb", "peak MB", "{:.0f}"))

if __name__ == "__main__":
    runner.main(BENCHMARKS, columns=COLUMNS)
