"""SparseStructureDecoder: tiny reference run, pixel shuffle, full-size manifest, fp16 trunk."""

from __future__ import annotations


import torch

from pixal3d.models.ss_vae import SparseStructureDecoder, pixel_shuffle_3d
from tests.helpers import assert_close


def _tiny(reference):
    f = reference("ss_decoder_tiny")
    model = SparseStructureDecoder(**f.meta["args"]).eval()
    model.load_state_dict(f.weights("w."), strict=True)
    return f, model


def test_matches_reference_with_intermediates(reference):
    f, model = _tiny(reference)
    captured = {}
    hooks = {"input_layer_out": model.input_layer, "middle_out": model.middle_block,
             "blocks2_out": model.blocks[2], "blocks5_out": model.blocks[5]}
    for name, module in hooks.items():
        module.register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
    with torch.no_grad():
        logits = model(f["z"])
    assert_close(logits, f["logits"], what="logits")
    for name in hooks:
        assert_close(captured[name], f[f"inter.{name}"], what=name)


def test_pixel_shuffle_order(reference):
    f = reference("ss_decoder_tiny")
    assert torch.equal(pixel_shuffle_3d(f["pixel_shuffle_in"], 2), f["pixel_shuffle_out"])
    x = torch.arange(16.0).reshape(1, 16, 1, 1, 1)
    out = pixel_shuffle_3d(x, 2)  # channel c'·8 + a·4 + b·2 + c goes to voxel (a, b, c)
    assert out[0, 1, 1, 0, 1].item() == 8 + 4 + 1


def test_fp16_trunk_runs_in_float32_on_cpu(reference):
    f, model = _tiny(reference)
    model.convert_to_fp16()
    assert model.blocks[0].conv1.weight.dtype == torch.float16 and model.blocks[0].norm1.weight.dtype == torch.float32
    with torch.no_grad():
        logits = model(f["z"])
    assert logits.dtype == torch.float32
    assert_close(logits, f["logits"], rtol=5e-3, what="fp16 trunk")
