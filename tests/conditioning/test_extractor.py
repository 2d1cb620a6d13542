"""Condition extractor (stage table, DINOv3 + NAF, caching, sparse taps) and the small conv encoder."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pixal3d.conditioning import backproject_dense, backproject_sparse
from pixal3d.conditioning.dinov3 import DINOv3Encoder
from pixal3d.conditioning.encoders import SmallConvEncoder, build_image_encoder
from pixal3d.conditioning.extractor import STAGES, ConditionExtractor, StageConfig
from pixal3d.conditioning.naf import NAF
from pixal3d.core.camera import Camera
from pixal3d.core.pipeline_config import PipelineConfig
from pixal3d.errors import UserError
from pixal3d.core.sparse_tensor import SparseTensor
from tests.helpers import assert_close

TINY_NAF_STAGE = StageConfig(160, 8, 80)
CAM_NAF = Camera.front(0.6911112070083618, 1.3888887166976929, 1.0)
CAM_DINO = Camera.front(0.8575560450553894, 2.0, 1.0)


@pytest.fixture(scope="module")
def refs(request):
    load = request.getfixturevalue("reference")
    return load("dinov3_tiny"), load("naf_tiny"), load("cond_extractor_naf_tiny")


@pytest.fixture(scope="module")
def extractor(refs):
    dino, naf, _ = refs
    encoder = DINOv3Encoder.from_config(dino.meta["hf_config"], dino.weights("w."))
    return ConditionExtractor(encoder, NAF.from_state_dict(naf.weights("w.")))


@pytest.fixture(scope="module")
def image(refs):
    return Image.fromarray(refs[2]["image_uint8_HWC_200"].numpy())


def test_stage_table():
    assert STAGES == {
        "ss": StageConfig(512, 16, None),
        "shape_512": StageConfig(512, 32, 512),
        "shape_1024": StageConfig(1024, 64, 512),
        "tex_1024": StageConfig(1024, 64, 1024),
    }


def test_dense_naf_condition_matches_reference(refs, extractor, image):
    ref = refs[2]
    cond = extractor.condition(TINY_NAF_STAGE, image, CAM_NAF)
    assert_close(cond["global"], ref["global"], 1e-5, "global")
    assert_close(cond["proj"][..., :64], ref["proj"][..., :64], 1e-5, "proj lr half")
    assert_close(cond["proj"][..., 64:], ref["proj"][..., 64:], 1e-5, "proj hr half (NAF)")


def test_dense_without_naf_matches_dinov3_proj(refs, extractor):
    dino = refs[0]
    cond = extractor.condition(StageConfig(64, 8, None), Image.fromarray(dino["image_uint8_HWC_100"].numpy()), CAM_DINO)
    assert_close(cond["global"], dino["global"], 1e-5, "global")
    assert_close(cond["proj"], dino["proj_G8"], 1e-5, "proj_G8")


def test_sparse_equals_grid_sampling_the_full_hr_map(extractor, image):
    g = 12
    gen = torch.Generator().manual_seed(3)
    flat = torch.randperm(g**3, generator=gen)[:300]
    coords = torch.stack([torch.zeros_like(flat), flat // g**2, flat // g % g, flat % g], 1).int()
    stage = StageConfig(160, 8, 80)
    cond = extractor.condition(stage, image, CAM_NAF, coords=coords, grid_resolution=g)
    assert isinstance(cond["proj"], SparseTensor) and torch.equal(cond["proj"].coords, coords)
    image_01, _, patch = extractor.features(image, 160)
    hr_map = extractor.naf(image_01, patch, 80)  # the full 80x80 map, only for this check
    assert_close(cond["proj"].feats[:, 64:], backproject_sparse(hr_map, CAM_NAF, coords, g, 160), 1e-5, "sparse hr")
    dense_lr = backproject_dense(patch, CAM_NAF, g, 160)[0]
    assert_close(cond["proj"].feats[:, :64], dense_lr[flat], 1e-5, "sparse lr = dense gathered")


def test_features_cached_per_size_and_image(refs, image, monkeypatch):
    dino, naf, _ = refs
    encoder = DINOv3Encoder.from_config(dino.meta["hf_config"], dino.weights("w."))
    ex = ConditionExtractor(encoder, NAF.from_state_dict(naf.weights("w.")), stages={"a": TINY_NAF_STAGE,
                                                                                        "b": StageConfig(160, 4, None)})
    calls = []
    original = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda x: calls.append(x.shape[-1]) or original(x))
    guides = []
    original_guide = ex.naf.guide
    monkeypatch.setattr(ex.naf, "guide", lambda *a, **k: guides.append(a[1]) or original_guide(*a, **k))
    ex.condition("a", image, CAM_NAF)
    ex.condition("b", image, CAM_NAF)
    ex.condition("a", image, CAM_NAF, grid_resolution=6)
    assert calls == [160] and guides == [80]
    ex.condition("b", image.copy(), CAM_NAF)  # a new image object → recomputed
    assert calls == [160, 160]


def test_negative_is_zeros_of_same_shapes(extractor, image):
    coords = torch.tensor([[0, 1, 2, 3], [0, 4, 5, 6]], dtype=torch.int32)
    for cond in (extractor.condition(TINY_NAF_STAGE, image, CAM_NAF),
                 extractor.condition(TINY_NAF_STAGE, image, CAM_NAF, coords=coords)):
        neg = ConditionExtractor.negative(cond)
        assert neg["global"].shape == cond["global"].shape and not neg["global"].any()
        proj, neg_proj = cond["proj"], neg["proj"]
        if isinstance(proj, SparseTensor):
            assert torch.equal(neg_proj.coords, proj.coords)
            proj, neg_proj = proj.feats, neg_proj.feats
        assert neg_proj.shape == proj.shape and proj.shape[-1] == 128 and not neg_proj.any()


def test_unknown_stage_is_a_user_error(extractor, image):
    with pytest.raises(UserError, match="unknown conditioning stage"):
        extractor.condition("shape_2048", image, CAM_NAF)


def test_for_folder_loads_before_seeding_without_touching_rng(refs, image, tmp_path):
    dino, naf, ref = refs
    (tmp_path / "dino").mkdir()
    (tmp_path / "dino" / "config.json").write_text(json.dumps(dino.meta["hf_config"]))
    save_file({k: v.contiguous() for k, v in dino.weights("w.").items()}, str(tmp_path / "dino" / "model.safetensors"))
    torch.save(naf.weights("w."), tmp_path / "naf.pth")
    config = PipelineConfig(image_encoder={"name": "dinov3", "args": {"path": "dino"}, "naf": "naf.pth"},
                            image_cond_configs={"shape_512": {"image_size": 160, "grid_resolution": 8,
                                                              "use_naf_upsample": True, "naf_target_size": 80}})
    folder = SimpleNamespace(path=tmp_path, config=config)
    torch.manual_seed(42)
    state = torch.get_rng_state()
    ex = ConditionExtractor.for_folder(folder)
    cond = ex.condition("shape_512", image, CAM_NAF)
    assert torch.equal(state, torch.get_rng_state()), "loading/using the extractor consumed the global RNG"
    assert_close(cond["proj"], ref["proj"], 1e-5, "for_folder proj")


def test_small_conv_encoder_shapes_gradients_and_weights(tmp_path):
    enc = SmallConvEncoder(32)
    image = torch.rand(2, 3, 64, 64, requires_grad=True)
    glob, patch = enc.encode(image)
    assert glob.shape == (2, 5, 32) and patch.shape == (2, 32, 4, 4)
    gen = torch.Generator().manual_seed(0)
    # random projections (a plain square-mean of a normalised output would have zero gradient)
    loss = (glob * torch.randn(glob.shape, generator=gen)).sum() + (patch * torch.randn(patch.shape, generator=gen)).sum()
    loss.backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    enc.save_weights(tmp_path / "encoder.safetensors")
    built = build_image_encoder({"name": "small_conv", "args": {"channels": 32, "weights": "encoder.safetensors"}}, tmp_path)
    assert_close(built.encode(image.detach())[1], enc.encode(image.detach())[1], 1e-6, "reloaded encoder")
    with pytest.raises(UserError, match="missing"):
        build_image_encoder({"name": "small_conv", "args": {"channels": 32, "weights": "nope.safetensors"}}, tmp_path)
    with pytest.raises(UserError, match="unknown image encoder"):
        build_image_encoder({"name": "clip"}, tmp_path)


def test_small_conv_encoder_follows_the_stage_table(image):
    ex = ConditionExtractor(SmallConvEncoder(16), stages={"shape_512": StageConfig(64, 4, 32)})
    coords = torch.tensor([[0, 0, 1, 2], [0, 3, 3, 3]], dtype=torch.int32)
    cond = ex.condition("shape_512", image, CAM_NAF, coords=coords)
    # no NAF for this encoder: proj carries the C patch channels only
    assert cond["global"].shape == (1, 5, 16) and cond["proj"].feats.shape == (2, 16)
    assert ex.condition("ss", image, CAM_NAF)["proj"].shape == (1, 16**3, 16)
    # a stage with cell samples averages them, dense and sparse
    ex.stages["ss"] = StageConfig(64, 4, None, cell_samples=2)
    patch = ex.features(image, 64)[2]
    dense = ex.condition("ss", image, CAM_NAF)["proj"]
    assert_close(dense, backproject_dense(patch, CAM_NAF, 4, 64, cell_samples=2), 1e-6, "cell-sampled dense")
    sparse = ex.condition("ss", image, CAM_NAF, coords=coords)["proj"].feats
    assert_close(sparse, dense[0, [6, 63]], 1e-5, "cell-sampled sparse")
