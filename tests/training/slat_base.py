"""A base pipeline folder for the SLat flow trainers: randomly initialised shape / texture SC-VAE encoders (3 levels,
factor 4), the latent statistics of the tiny dataset as ``*_slat_normalization`` and a small_conv image encoder."""

from __future__ import annotations

from pathlib import Path

import torch

from pixal3d.conditioning.encoders import SmallConvEncoder
from pixal3d.data.dataset import ViewDataset, collate_views
from pixal3d.core.pipeline_config import PipelineConfig
from pixal3d.models.pipeline_folder import StageWeights, write_pipeline_folder
from pixal3d.models.registry import build_model
from pixal3d.training.sc_vae import normalization_entry
from pixal3d.training.slat_flow import posterior_mean

LATENT = 8
CONVNEXT = "SparseConvNeXtBlock3d"
ENCODER_SPEC = {"name": "small_conv", "args": {"channels": 64, "num_global_tokens": 2, "patch_size": 8,
                                               "weights": "ckpts/image_encoder.safetensors"}}


def encoder_args(levels: int = 3) -> dict:
    """Sparse U-Net encoder args with ``levels`` levels (downsampling ``2^(levels−1)``)."""
    return {"model_channels": [16, 32, 64][:levels], "latent_channels": LATENT, "num_blocks": [1] * levels,
            "block_type": [CONVNEXT] * levels, "down_block_type": ["SparseResBlockS2C3d"] * (levels - 1),
            "block_args": [{}] * levels}


def write_slat_base(path: Path, data: Path, with_image_encoder: bool = True) -> Path:
    """Write the base folder at ``path`` (statistics over every sample of ``data``)."""
    torch.manual_seed(0)
    shape_args, tex_args = encoder_args(), {"in_channels": 6, **encoder_args()}
    shape = build_model("FlexiDualGridVaeEncoder", shape_args).eval()
    tex = build_model("SparseUnetVaeEncoder", tex_args).eval()
    dataset = ViewDataset(data, split="all", ss_resolution=16, image_size=64)
    batch = collate_views([dataset[i] for i in range(len(dataset))])
    args: dict = {}
    for kind, encoder in (("shape_slat", shape), ("tex_slat", tex)):
        latent = posterior_mean(kind, encoder, batch, torch.device("cpu")).feats
        args[f"{kind}_normalization"] = normalization_entry(latent.mean(0), latent.std(0))
    if with_image_encoder:
        (path / "ckpts").mkdir(parents=True, exist_ok=True)
        enc_args = {k: v for k, v in ENCODER_SPEC["args"].items() if k != "weights"}
        SmallConvEncoder(**enc_args).save_weights(path / ENCODER_SPEC["args"]["weights"])
        args["image_encoder"] = ENCODER_SPEC
    stages = {"shape_slat_encoder": StageWeights(shape, "FlexiDualGridVaeEncoder", shape_args),
              "tex_slat_encoder": StageWeights(tex, "SparseUnetVaeEncoder", tex_args)}
    write_pipeline_folder(path, stages, PipelineConfig().with_settings(args))
    return path
