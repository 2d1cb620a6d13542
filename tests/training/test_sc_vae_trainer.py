"""Shape / texture SC-VAE trainers: teacher forcing, posterior draws, overfitting to the target mesh, texture loss,
pipeline-folder checkpoints with latent normalisation (trainer and ``pixal3d latents stats``)."""

from __future__ import annotations

import json

import pytest
import torch

from pixal3d.cli import main as cli_main
from pixal3d.data.dataset import ViewDataset, collate_views
from pixal3d.errors import UserError
from pixal3d.models.pipeline_folder import open_pipeline_folder
from pixal3d.ovoxel.dual_grid import flexible_dual_grid_to_mesh
from pixal3d.training.config import parse_config
from pixal3d.training.registry import trainer_class
from pixal3d.training.sc_vae import (
    encode_batch,
    ground_truth_subdivisions,
    latent_statistics,
    sample_sparse_posterior,
)
from pixal3d.training.trainer import item_generators
from tests.training.conftest import load_tiny_config

RES = 32  # voxel resolution of the tiny dataset


pytestmark = pytest.mark.usefixtures("one_thread")


def make_trainer(cfg: dict, data, out=None):
    config = parse_config(cfg)
    dataset = ViewDataset(data, **config.dataset["args"])
    return trainer_class(config.trainer_name)(config, dataset, collate_views, out, progress=False)


def three_level(cfg: dict, kind: str) -> dict:
    """The tiny config with 3-level encoder/decoder (latent grid R/4 instead of R/16): fast to overfit."""
    levels, ch = 3, [16, 32, 64]
    common = {"block_type": ["SparseConvNeXtBlock3d"] * levels, "block_args": [{}] * levels}
    enc = cfg["models"][f"{kind}_encoder"]["args"]
    enc.update(common, model_channels=ch, num_blocks=[0, 1, 1], down_block_type=["SparseResBlockS2C3d"] * 2)
    dec = cfg["models"][f"{kind}_decoder"]["args"]
    dec.update(common, model_channels=ch[::-1], num_blocks=[1, 1, 0], up_block_type=["SparseResBlockC2S3d"] * 2)
    return cfg


def voxel_keys(coords: torch.Tensor) -> set[tuple[int, ...]]:
    return set(map(tuple, coords.tolist()))


def chamfer_voxels(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Symmetric mean nearest distance between the face centroids of two meshes, in voxels."""
    ca, cb = a[0][a[1]].mean(1), b[0][b[1]].mean(1)
    d = torch.cdist(ca, cb)
    return float((d.min(1).values.mean() + d.min(0).values.mean()) / 2 * RES)


def test_teacher_forced_decode_lands_on_the_target_voxels(tiny_data):
    trainer = make_trainer(load_tiny_config("shape_vae_tiny"), tiny_data)
    batch = collate_views([trainer.dataset[i] for i in range(2)])
    mean, _ = encode_batch("shape_slat", trainer.encoder, batch, "cpu")
    assert mean.feats.shape[1] == 8 and int(mean.coords[:, 1:].max()) < RES // 16
    decoder = trainer.decoder
    masks, guides = ground_truth_subdivisions(mean.coords, batch["coords"], len(decoder.blocks) - 1)
    with torch.no_grad():
        raw, subs = decoder(mean, teacher_subs=guides)
        free, _ = decoder(mean)
    assert voxel_keys(raw.coords) == voxel_keys(batch["coords"]) and len(raw.coords) == len(batch["coords"])
    for s, g, m in zip(subs, guides, masks):  # predicted logits come back on the teacher's coordinates
        assert torch.equal(s.coords, g.coords) and s.feats.shape == m.shape
    assert voxel_keys(free.coords) != voxel_keys(batch["coords"])  # an untrained decoder predicts other voxels
    with pytest.raises(ValueError, match="teacher_subs"):
        decoder(mean, teacher_subs=guides[:-1])


def test_posterior_noise_of_an_item_comes_from_its_generator(tiny_data):
    trainer = make_trainer(load_tiny_config("tex_vae_tiny"), tiny_data)
    items = [trainer.dataset[i] for i in range(3)]
    with torch.no_grad():
        mean, logvar = encode_batch("tex_slat", trainer.encoder, collate_views(items), "cpu")
        z = sample_sparse_posterior(mean, logvar, item_generators(0, 7, [0, 1, 2]))
        again = sample_sparse_posterior(mean, logvar, item_generators(0, 7, [0, 1, 2]))
        # item 2 alone, drawing from the generator of its position: the same rows
        m2, lv2 = encode_batch("tex_slat", trainer.encoder, collate_views(items[2:]), "cpu")
        alone = sample_sparse_posterior(m2, lv2, item_generators(0, 7, [2]))
    assert torch.equal(z.feats, again.feats) and not torch.equal(z.feats, mean.feats)
    torch.testing.assert_close(z.feats[mean.coords[:, 0] == 2], alone.feats, rtol=1e-5, atol=1e-5)


def test_shape_vae_overfits_two_voxel_sets_to_their_meshes(tiny_data):
    cfg = three_level(load_tiny_config("shape_vae_tiny", trainer_args={"lambda_intersected": 1.0, "lambda_subdiv": 1.0}),
                      "shape_slat")
    cfg["optimizer"]["lr"] = 0.003
    trainer = make_trainer(cfg, tiny_data)
    batch = collate_views([trainer.dataset[i] for i in (0, 2)])

    def evaluate():
        """Eval-mode decode of the posterior means with predicted subdivisions: per item (voxel IoU, flag
        accuracy on the shared voxels, Chamfer in voxels of the dual-grid meshes)."""
        enc, dec = trainer.encoder.eval(), trainer.decoder.eval()
        with torch.no_grad():
            mean, _ = encode_batch("shape_slat", enc, batch, "cpu")
            raw, _ = dec(mean)
            vertices, flags, split = dec.heads(raw)
        enc.train(), dec.train()
        out = []
        for b in range(2):
            p, t = raw.coords[:, 0] == b, batch["coords"][:, 0] == b
            pred_keys, target_keys = voxel_keys(raw.coords[p]), voxel_keys(batch["coords"][t])
            iou = len(pred_keys & target_keys) / len(pred_keys | target_keys)
            target_row = {k: i for i, k in enumerate(map(tuple, batch["coords"].tolist()))}
            pairs = [(i, target_row[k]) for i, k in enumerate(map(tuple, raw.coords.tolist())) if p[i] and k in target_row]
            pi, ti = torch.tensor(pairs).T
            flag_acc = float((flags[pi] == batch["intersected"][ti]).float().mean())
            mesh = flexible_dual_grid_to_mesh(raw.coords[p, 1:], vertices[p], flags[p], split[p], RES)
            target = flexible_dual_grid_to_mesh(batch["coords"][t, 1:], batch["dual_vertices"][t], batch["intersected"][t],
                                                batch["split_weight"][t], RES)
            chamfer = chamfer_voxels(mesh, target) if len(mesh[1]) else float("inf")
            out.append((iou, flag_acc, chamfer))
        return out

    before = evaluate()
    losses = [trainer.train_step(batch, [0, 1])["loss"] for _ in range(40)]
    after = evaluate()
    assert losses[-1] < 0.3 * losses[0]
    assert all(iou < 0.5 for iou, _, _ in before)  # the untrained decoder is far from the targets
    for iou, flag_acc, chamfer in after:
        assert iou > 0.9 and flag_acc > 0.9 and chamfer < 0.6, after


def test_tex_vae_loss_decreases_on_a_fixed_batch(tiny_data):
    trainer = make_trainer(load_tiny_config("tex_vae_tiny"), tiny_data)
    batch = collate_views([trainer.dataset[i] for i in range(2)])

    def evaluate() -> float:
        with torch.no_grad():
            return sum(trainer.compute_loss(batch, item_generators(99, k, [0, 1]))[0].item() for k in range(2)) / 2

    before = evaluate()
    for _ in range(12):
        stats = trainer.train_step(batch, [0, 1])
    assert evaluate() < 0.4 * before
    assert set(stats) >= {"l1", "l2", "kl", "attr_mae"} and stats["attr_mae"] < 0.1


def test_checkpoints_carry_stages_and_latent_normalization(tiny_data, tmp_path):
    shape_cfg = load_tiny_config("shape_vae_tiny", max_steps=2, save_every=2, trainer_args={"stats_items": 4})
    make_trainer(shape_cfg, tiny_data, tmp_path / "shape").train()
    tex_cfg = load_tiny_config("tex_vae_tiny", max_steps=2, save_every=2,
                               trainer_args={"stats_items": 4, "base_pipeline": str(tmp_path / "shape")})
    tex = make_trainer(tex_cfg, tiny_data, tmp_path / "tex")
    tex.train()
    ckpt = tmp_path / "tex" / "ckpts" / "step_0000002"
    folder = open_pipeline_folder(ckpt)
    assert set(folder.stages) == {"shape_slat_encoder", "shape_slat_decoder", "tex_slat_encoder", "tex_slat_decoder"}
    names = {key: json.loads((folder.stages[key].stem.with_suffix(".json")).read_text())["name"] for key in folder.stages}
    assert names == {"shape_slat_encoder": "FlexiDualGridVaeEncoder", "shape_slat_decoder": "FlexiDualGridVaeDecoder",
                     "tex_slat_encoder": "SparseUnetVaeEncoder", "tex_slat_decoder": "SparseUnetVaeDecoder"}
    models = {key: folder.load(key) for key in folder.stages}  # strict loads
    torch.testing.assert_close(models["tex_slat_encoder"].state_dict(), tex.ema["tex_slat_encoder"].state_dict())
    # both normalisations: the shape one carried over from the base run, the texture one written now
    shape_base = open_pipeline_folder(tmp_path / "shape" / "ckpts" / "step_0000002")
    for kind in ("shape_slat", "tex_slat"):
        mean, std = folder.latent_normalization(kind)
        assert mean.shape == std.shape == (8,) and (std > 0).all()
    assert folder.config.normalization["shape_slat"] == shape_base.config.normalization["shape_slat"]
    expected = latent_statistics("tex_slat", models["tex_slat_encoder"], tex.dataset, collate_views, max_items=4)
    torch.testing.assert_close(folder.latent_normalization("tex_slat"), expected)

    # the stats command recomputes them for an existing folder (more items: other values) and reads runs too
    data = json.dumps([str(tiny_data)])
    assert cli_main(["latents", "stats", "--pipeline", str(tmp_path / "tex"), "--data", data, "--items", "6", "--split", "all"]) == 0
    updated = open_pipeline_folder(ckpt)
    expected6 = latent_statistics("tex_slat", models["tex_slat_encoder"], tex.dataset, collate_views, max_items=6)
    torch.testing.assert_close(updated.latent_normalization("tex_slat"), expected6)
    assert not torch.allclose(expected6[0], expected[0])
    assert set(updated.stages) == set(folder.stages)
    assert cli_main(["latents", "stats", "--pipeline", str(tmp_path / "none"), "--data", str(tiny_data)]) == 2


def test_crop_keeps_one_aligned_window_per_item(tiny_data):
    from pixal3d.training.sc_vae import crop_batch

    trainer = make_trainer(load_tiny_config("shape_vae_tiny"), tiny_data)
    batch = collate_views([trainer.dataset[i] for i in range(3)])
    gens = item_generators(0, 0, [0, 1, 2])
    cropped = crop_batch(batch, 16, gens)
    assert 0 < len(cropped["coords"]) < len(batch["coords"])
    for key in ("dual_vertices", "intersected", "split_weight", "attrs"):
        assert len(cropped[key]) == len(cropped["coords"])
    rows = {tuple(c): i for i, c in enumerate(batch["coords"].tolist())}
    for b in range(3):  # every item keeps voxels, all inside one 16³ window at a multiple of 16, with their values
        mine = cropped["coords"][cropped["coords"][:, 0] == b, 1:]
        assert len(mine) and torch.equal(mine.min(0).values // 16, mine.max(0).values // 16)
    picked = torch.tensor([rows[tuple(c)] for c in cropped["coords"].tolist()])
    assert torch.equal(cropped["dual_vertices"], batch["dual_vertices"][picked])
    # the same generators give the same windows; a window as large as the grid keeps everything
    assert torch.equal(crop_batch(batch, 16, item_generators(0, 0, [0, 1, 2]))["coords"], cropped["coords"])
    assert torch.equal(crop_batch(batch, RES, gens)["coords"], batch["coords"])
    with pytest.raises(UserError, match="multiple of the latent cell"):
        crop_batch(batch, 24, gens)
    # the trainer trains on windows when asked
    cfg = load_tiny_config("shape_vae_tiny", max_steps=1, trainer_args={"crop": 16})
    cropping = make_trainer(cfg, tiny_data)
    assert len(cropping.training_batch(batch, item_generators(0, 0, [0, 1, 2]))["coords"]) == len(cropped["coords"])
    loss, _ = cropping.compute_loss(batch, item_generators(0, 0, [0, 1, 2]))
    assert torch.isfinite(loss)
