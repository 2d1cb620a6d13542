"""Writes the official tiny end-to-end configuration (``pipeline_e2e_tiny``) as a model folder.

The seven networks get the fixture's weights under their official key names, DINOv3 goes into a
Hugging Face folder (config.json + model.safetensors) and NAF into ``naf_release.pth``, as a user
would lay out the official weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from pixal3d.core.pipeline_config import PipelineConfig
from pixal3d.models.pipeline_folder import StageWeights, write_pipeline_folder
from tests.helpers import Fixture

#: official file stems of the TencentARC/Pixal3D layout
OFFICIAL_STEMS = {
    "sparse_structure_flow_model": "ckpts/ss_flow_img_dit_1_3B_64_bf16",
    "sparse_structure_decoder": "ckpts/ss_dec_conv3d_16l8_fp16",
    "shape_slat_flow_model_512": "ckpts/slat_flow_img2shape_dit_1_3B_512_bf16",
    "shape_slat_flow_model_1024": "ckpts/slat_flow_img2shape_dit_1_3B_1024_bf16",
    "shape_slat_decoder": "ckpts/shape_dec_next_dc_f16c32_fp16",
    "tex_slat_flow_model_1024": "ckpts/slat_flow_imgshape2tex_dit_1_3B_1024_bf16",
    "tex_slat_decoder": "ckpts/tex_dec_next_dc_f16c32_fp16",
}


#: where TRELLIS.2-4B's pipeline.json points for the sparse-structure decoder (a Hub id of another repo)
TRELLIS2_SS_DECODER = "microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16"


def write_tiny_pipeline(path: Path, e2e: Fixture, dinov3: Fixture, naf: Fixture, layout: str = "pixal3d") -> Path:
    """The tiny official pipeline as a folder at ``path``.

    ``layout='pixal3d'``: TencentARC/Pixal3D (every checkpoint in ``ckpts/``). ``layout='trellis2'``:
    microsoft/TRELLIS.2-4B, whose sparse-structure decoder is the Hub id :data:`TRELLIS2_SS_DECODER`,
    stored as ``<models root>/TRELLIS-image-large/ckpts/…`` beside the folder (``path.parent`` must be
    the models root).
    """
    from pixal3d.models.loading import save_model

    stages = {}
    extra_models = {}
    for key, spec in e2e.meta["model_args"].items():
        weights = e2e.weights(f"w.{key}.")
        if layout == "trellis2" and key == "sparse_structure_decoder":
            save_model(weights, path.parent / "TRELLIS-image-large" / "ckpts" / "ss_dec_conv3d_16l8_fp16", spec["name"], spec["args"])
            extra_models[key] = TRELLIS2_SS_DECODER
            continue
        stages[key] = StageWeights(weights, spec["name"], spec["args"], OFFICIAL_STEMS[key])
    (path / "dinov3").mkdir(parents=True)
    (path / "dinov3" / "config.json").write_text(json.dumps(dinov3.meta["hf_config"]))
    save_file({k: v.contiguous() for k, v in dinov3.weights("w.").items()}, str(path / "dinov3" / "model.safetensors"))
    (path / "naf").mkdir()
    torch.save(naf.weights("w."), path / "naf" / "naf_release.pth")
    samplers = {
        f"{stage}_sampler": {"name": "FlowEulerGuidanceIntervalSampler", "args": {"sigma_min": 1e-5}, "params": params}
        for stage, params in e2e.meta["sampler_params"].items()
    }
    args = {
        **samplers,
        **e2e.meta["normalization"],
        "default_pipeline_type": "1024_cascade",
        "image_encoder": {"name": "dinov3", "args": {"path": "dinov3"}, "naf": "naf/naf_release.pth"},
        "image_cond_configs": e2e.meta["image_cond_configs"],
        "models": extra_models,
    }
    write_pipeline_folder(path, stages, PipelineConfig("Trellis2ImageTo3DPipeline").with_settings(args))
    return path
