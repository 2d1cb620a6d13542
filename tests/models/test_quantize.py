"""Opt-in int8 inference: the flows' Linear layers become PyTorch's dynamic int8 Linear, the rest stays exact."""

import pytest
import torch
from PIL import Image

from pixal3d.core.camera import Camera
from pixal3d.errors import UserError
from pixal3d.models.quantize import stage_transform
from pixal3d.pipelines.pixal3d import Pixal3DPipeline


@pytest.fixture(scope="module")
def runs(reference, tiny_model):
    e2e = reference("pipeline_e2e_tiny")
    cam = e2e.meta["camera_params"]
    camera = Camera(cam["camera_angle_x"], cam["distance"], cam["mesh_scale"])
    image = Image.fromarray(e2e["image_uint8_HWC"].numpy())
    out = {}
    for mode in (None, "int8"):
        pipe = Pixal3DPipeline.from_pretrained(tiny_model, device="cpu", quantize=mode)
        out[mode] = (pipe, pipe.run(image, camera, seed=42, pipeline_type="1024_cascade", progress=False))
    return out


def test_only_the_flows_are_quantised(runs):
    pipe = runs["int8"][0]
    flow = pipe.models["sparse_structure_flow_model"]
    quantised = [m for m in flow.modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__]
    assert quantised and not any(type(m) is torch.nn.Linear for m in flow.modules())
    decoder = pipe.models["sparse_structure_decoder"]
    assert not any("quantized" in type(m).__module__ for m in decoder.modules())


def test_int8_stays_close_to_float(runs):
    exact, int8 = runs[None][1], runs["int8"][1]
    rel = float((exact.structure.samples - int8.structure.samples).norm() / exact.structure.samples.norm())
    assert 0 < rel < 0.1, rel  # measured 0.025 on the tiny fixture
    a = {tuple(c) for c in exact.structure.occupied.tolist()}
    b = {tuple(c) for c in int8.structure.occupied.tolist()}
    assert len(a & b) / len(a | b) >= 0.9


def test_unknown_mode():
    with pytest.raises(UserError, match="--quantize must be one of"):
        stage_transform("int4")
