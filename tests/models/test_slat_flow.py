from __future__ import annotations


import pytest
import torch

from pixal3d.models.registry import model_class
from pixal3d.models.slat_flow import ElasticSLatFlowModel, SLatFlowModel
from pixal3d.core.sparse_tensor import SparseTensor
from tests.helpers import assert_close


def _model(fixture) -> SLatFlowModel:
    model = ElasticSLatFlowModel(**fixture.meta["args"])
    model.load_state_dict(fixture.weights(), strict=True)
    return model.eval()


def _cond(f, zero: bool = False) -> dict:
    glob, proj = f["cond_global"], f["cond_proj_feats"]
    if zero:
        glob, proj = torch.zeros_like(glob), torch.zeros_like(proj)
    return {"global": glob, "proj": SparseTensor(proj, f["coords"])}


@torch.no_grad()
def test_proj_mode_matches_reference(reference):
    f = reference("slat_flow_tiny_proj")
    model = _model(f)
    seen: dict[str, torch.Tensor] = {}
    model.t_embedder.register_forward_hook(lambda m, i, o: seen.__setitem__("t_emb", o))
    model.adaLN_modulation.register_forward_hook(lambda m, i, o: seen.__setitem__("mod", o))
    model.input_layer.register_forward_hook(lambda m, i, o: seen.__setitem__("input_layer_out", o))
    for n, block in enumerate(model.blocks):
        block.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(f"block{n}_out", o.feats))
    x = SparseTensor(f["x_feats"], f["coords"])
    out = model(x, f["t"], _cond(f))
    assert torch.equal(out.coords, f["out_coords"])
    assert_close(out.feats, f["out_feats"], 1e-4, "out")
    for name in ("t_emb", "mod", "input_layer_out", "block0_out", "block1_out"):
        assert_close(seen[name], f[f"inter.{name}"], 1e-4, name)
    assert_close(model(x, f["t"], _cond(f, zero=True)).feats, f["out_negcond_feats"], 1e-4, "negative cond")
    # proj given as plain row-aligned feats
    plain = {"global": f["cond_global"], "proj": f["cond_proj_feats"]}
    assert_close(model(x, f["t"], plain).feats, f["out_feats"], 1e-4, "feats proj")


@torch.no_grad()
def test_texture_flow_concatenates_noise_first(reference):
    f = reference("slat_flow_tiny_tex")
    model = _model(f)
    x = SparseTensor(f["x_feats"], f["coords"])
    out = model(x, f["t"], _cond(f), concat_cond=SparseTensor(f["concat_cond_feats"], f["coords"]))
    assert_close(out.feats, f["out_feats"], 1e-4, "out")
    swapped = model(SparseTensor(f["concat_cond_feats"], f["coords"]), f["t"], _cond(f), concat_cond=f["x_feats"])
    assert (swapped.feats - f["out_feats"]).abs().max() > 0.1
    with pytest.raises(ValueError):
        model(x, f["t"], _cond(f))


@torch.no_grad()
def test_cross_mode_matches_reference(reference):
    f = reference("slat_flow_tiny_cross")
    model = _model(f)
    out = model(SparseTensor(f["x_feats"], f["coords"]), f["t"], f["cond"])
    assert_close(out.feats, f["out_feats"], 1e-4, "out")


@torch.no_grad()
def test_items_are_independent(reference):
    f = reference("slat_flow_tiny_proj")
    model = _model(f)
    full = model(SparseTensor(f["x_feats"], f["coords"]), f["t"], _cond(f)).feats
    rows = slice(37, 60)  # batch item 1 alone, renumbered as item 0
    coords = f["coords"][rows].clone()
    coords[:, 0] = 0
    alone = model(SparseTensor(f["x_feats"][rows], coords), f["t"][1:],
                  {"global": f["cond_global"][1:], "proj": f["cond_proj_feats"][rows]}).feats
    assert_close(alone, full[rows], 1e-5, "item 1")


def test_registry_names():
    assert model_class("SLatFlowModel") is SLatFlowModel
    assert model_class("ElasticSLatFlowModel") is ElasticSLatFlowModel
