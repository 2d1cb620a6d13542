"""Overfit: the sparse-structure VAE + flow trained on six samples regenerate their training occupancies.

3 synthetic assets × 2 views (16³ occupancy, 64² images). The SS VAE and then the SS flow (trainable small conv
image encoder, CFG dropout 0.1) train through their trainers; the flow's checkpoint folder is then sampled like
the pipeline's sparse-structure stage: the folder's image encoder conditions each training view with its camera
(:class:`ConditionExtractor`), the Euler sampler runs with the pipeline's default sparse-structure settings (12 steps,
CFG 7.5 in [0.6, 1], rescale_t 5) and the decoder's ``logits > 0`` is compared with the training occupancy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pixal3d.conditioning.extractor import ConditionExtractor
from pixal3d.models.pipeline_folder import open_pipeline_folder
from pixal3d.pipelines.pixal3d import GenerationOptions, stage_sampler_params
from pixal3d.sampling.flow_euler import FlowEulerGuidanceIntervalSampler, draw_noise
from pixal3d.training.vae import occupancy_iou
from tests.training.conftest import load_tiny_config
from tests.training.test_training import make_trainer

OPTIMIZER = {"betas": [0.9, 0.99], "weight_decay": 0.0}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convolutions: one intra-op thread avoids oversubscription on the shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def to_pil(image: torch.Tensor) -> Image.Image:
    """``[3, S, S]`` in [0, 1] → RGB PIL image (what a user would pass to the pipeline)."""
    return Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def test_ss_vae_and_flow_regenerate_their_training_shapes(tiny_data, tmp_path):
    vae_cfg = load_tiny_config("ss_vae_tiny", max_steps=200, batch_size=6, save_every=200, log_every=200,
                               optimizer={"lr": 0.002, **OPTIMIZER})
    make_trainer(vae_cfg, tiny_data, tmp_path / "vae").train()
    flow_cfg = load_tiny_config("ss_flow_tiny", max_steps=150, batch_size=6, save_every=150, log_every=150,
                                optimizer={"lr": 0.003, **OPTIMIZER},
                                trainer_args={"base_pipeline": str(tmp_path / "vae")})
    trainer = make_trainer(flow_cfg, tiny_data, tmp_path / "flow")
    trainer.train()

    folder = open_pipeline_folder(tmp_path / "flow" / "ckpts" / "step_0000150")
    extractor = ConditionExtractor.for_folder(folder)
    flow = folder.load("sparse_structure_flow_model").eval()
    decoder = folder.load("sparse_structure_decoder").eval()
    params = stage_sampler_params(folder.config.samplers, GenerationOptions())["sparse_structure"]
    sampler = FlowEulerGuidanceIntervalSampler()
    ious = []
    for index in range(len(trainer.dataset)):
        item = trainer.dataset[index]
        cond = extractor.condition("ss", to_pil(item["image"]), item["camera"])
        torch.manual_seed(index)
        noise = draw_noise((1, flow.out_channels, *[flow.resolution] * 3))
        with torch.no_grad():
            z = sampler.sample(flow, noise, cond, extractor.negative(cond), **params.as_kwargs()).samples
            logits = decoder(z)
        ious.append(float(occupancy_iou(logits, item["occupancy"][None])[0]))
    assert len(ious) == 6 and min(ious) >= 0.9, ious
