"""DINOv3 on the Pixal3D path against the ``dinov3_tiny`` reference run (transformers 4.57.3)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pixal3d.conditioning.dinov3 import DINOv3Encoder
from pixal3d.conditioning.encoders import build_image_encoder, image_to_tensor, imagenet_normalize
from pixal3d.errors import UserError
from tests.helpers import assert_close


@pytest.fixture(scope="module")
def fixture(request):
    return request.getfixturevalue("reference")("dinov3_tiny")


@pytest.fixture(scope="module")
def encoder(fixture):
    return DINOv3Encoder.from_config(fixture.meta["hf_config"], fixture.weights("w."))


def test_preprocessing_matches_reference(fixture):
    image = Image.fromarray(fixture["image_uint8_HWC_100"].numpy())
    image_01 = image_to_tensor(image, 64)
    assert_close(image_01, fixture["image_resized_01"], 1e-6, "LANCZOS resize /255")
    assert_close(imagenet_normalize(image_01), fixture["image_normalized"], 1e-6, "ImageNet normalise")


def test_tokens_global_and_patch_map(fixture, encoder):
    image_01 = fixture["image_resized_01"]
    assert_close(encoder.model.embeddings(fixture["image_normalized"]), fixture["embeddings_out"], 1e-5, "embeddings")
    cos, sin = encoder.model.rope_embeddings(fixture["image_normalized"])
    assert_close(cos, fixture["rope_cos"], 1e-5, "rope cos")
    assert_close(sin, fixture["rope_sin"], 1e-5, "rope sin")
    assert_close(encoder.tokens(image_01), fixture["tokens_nonaffine_ln"], 1e-5, "non-affine LN tokens")
    glob, patch = encoder.encode(image_01)
    assert_close(glob, fixture["global"], 1e-5, "global")
    # patch map rows = image y: token 5 + r*4 + c sits at patch_map[:, :, r, c]
    expected = fixture["tokens_nonaffine_ln"][:, 5:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2)
    assert_close(patch, expected, 1e-5, "patch map")
    # the model's own affine final norm is a different output (guards against using it by mistake)
    assert (glob - fixture["hf_last_hidden_state_affine_norm"][:, :5]).abs().max() > 1e-2
    with torch.no_grad():
        hf = encoder.model(pixel_values=fixture["image_normalized"]).last_hidden_state
    assert_close(hf, fixture["hf_last_hidden_state_affine_norm"], 1e-5, "HF forward with affine norm")


def test_from_folder_official_keys_and_rng(fixture, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(fixture.meta["hf_config"]))
    save_file({k: v.contiguous() for k, v in fixture.weights("w.").items()}, str(tmp_path / "model.safetensors"))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    encoder = DINOv3Encoder.from_folder(tmp_path)
    assert torch.equal(state, torch.get_rng_state()), "loading DINOv3 consumed the global RNG"
    assert_close(encoder.tokens(fixture["image_resized_01"]), fixture["tokens_nonaffine_ln"], 1e-5, "from_folder")
    via_spec = build_image_encoder({"name": "dinov3", "args": {"path": tmp_path.name}}, tmp_path.parent)
    assert_close(via_spec.encode(fixture["image_resized_01"])[0], fixture["global"], 1e-5, "build_image_encoder")


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="config.json and model.safetensors"):
        DINOv3Encoder.from_folder(tmp_path / "nowhere")


def test_bfloat16_is_close_to_float32(fixture):
    encoder = DINOv3Encoder.from_config(fixture.meta["hf_config"], fixture.weights("w."), dtype=torch.bfloat16)
    glob, patch = encoder.encode(fixture["image_resized_01"])
    assert glob.dtype == torch.float32 and patch.shape == (1, 64, 4, 4)
    assert_close(glob, fixture["global"], 0.1, "bf16 global")


def test_bad_image_size_is_a_user_error(encoder):
    with pytest.raises(UserError, match="multiple of the patch size"):
        encoder.encode(torch.zeros(1, 3, 40, 40))
