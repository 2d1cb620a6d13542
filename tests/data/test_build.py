"""Dataset builder (views, voxel frames, resume, shards, manifests) and the ViewDataset reader."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from pixal3d.core.asset import VoxelAsset
from pixal3d.core.camera import distance_from_fov
from pixal3d.data import build as B
from pixal3d.conditioning.backprojection import project_points
from pixal3d.data.dataset import ViewDataset, collate_views, occupancy_grid, relative_camera, split_of
from pixal3d.data.synth import synthesize
from pixal3d.errors import UserError

CONFIG = B.BuildConfig(views=2, resolution=32, image_size=64, seed=3)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    synthesize(2, root / "synth", seed=5, workers=1, sheet=False)
    (root / "broken.glb").write_bytes(b"glTF but not really")
    (root / "notes.txt").write_text("not a mesh")
    return root


@pytest.fixture(scope="module")
def data(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    result = B.build_dataset(assets, out, CONFIG, workers=1)
    assert (result.built, result.kept, result.failed) == (2, 0, 1)
    return out


def _manifest(path):
    return json.loads(path.read_text())


def test_layout_and_manifest(data):
    m = _manifest(data / "manifest.json")
    assert m["format"] == "pixal3d-dataset" and m["config"]["resolution"] == 32 and m["config_hash"] == CONFIG.hash()
    assert set(m["assets"]) == {"broken", "synth__synth_0005_000000", "synth__synth_0005_000001"}
    bad = m["assets"]["broken"]
    assert bad["status"] == "error" and bad["error"] and bad["views"] == [] and bad["source"] == "broken.glb"
    for asset_id in ("synth__synth_0005_000000", "synth__synth_0005_000001"):
        entry = m["assets"][asset_id]
        assert entry["status"] == "ok" and entry["error"] is None and len(entry["views"]) == 2
        for k, view in enumerate(entry["views"]):
            assert view["image"] == f"view_{k:02d}.png" and (data / asset_id / view["image"]).is_file()
            asset = VoxelAsset.load(data / asset_id / view["voxels"])
            assert asset.resolution == 32 and len(asset.coords) == view["num_voxels"] > 0
            assert set(asset.occupancy) == {32}
            assert asset.camera.fov_x == view["fov_x"] and asset.camera.distance == view["distance"]
            assert B.FOV_RANGE[0] <= view["fov_x"] <= B.FOV_RANGE[1]
            assert view["distance"] >= distance_from_fov(view["fov_x"])


def test_camera_sampling_ranges_and_determinism():
    views = B.sample_views("chair", B.BuildConfig(views=200, seed=1))
    assert views == B.sample_views("chair", B.BuildConfig(views=200, seed=1))
    assert views[:3] == B.sample_views("chair", B.BuildConfig(views=3, seed=1))  # prefix-stable in K
    assert views[0] != B.sample_views("table", B.BuildConfig(views=1, seed=1))[0]
    az = np.array([v.azimuth_deg for v in views])
    el = np.array([v.elevation_deg for v in views])
    fov = np.array([v.fov_x for v in views])
    assert az.min() >= 0 and az.max() < 360 and az.max() - az.min() > 300
    assert el.min() >= B.ELEVATION_RANGE_DEG[0] and el.max() <= B.ELEVATION_RANGE_DEG[1]
    assert fov.min() >= B.FOV_RANGE[0] and fov.max() <= B.FOV_RANGE[1]


@pytest.mark.parametrize("az,el", [(0.0, 0.0), (90.0, 0.0), (200.0, 35.0), (33.0, -20.0)])
def test_view_rotation_puts_camera_on_plus_z_without_roll(az, el):
    R = B.view_rotation(az, el)
    a, e = math.radians(az), math.radians(el)
    direction = np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
    np.testing.assert_allclose(R @ direction, [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    assert abs(R[0, 1]) < 1e-12  # image right stays horizontal: no roll
    assert (R @ [0, 1, 0])[1] > 0  # canonical up stays up
    if (az, el) == (0.0, 0.0):
        np.testing.assert_allclose(R, np.eye(3), atol=1e-12)  # the canonical front view


def test_fit_distance_keeps_every_vertex_in_frame():
    rng = np.random.default_rng(0)
    v = rng.uniform(-0.5, 0.5, (500, 3))
    for fov in (0.2, 0.6, 1.0):
        d = B.fit_distance(v, fov)
        t = math.tan(fov / 2)
        ndc = np.abs(v[:, :2]) / (d - v[:, 2:3]) / t
        assert ndc.max() == pytest.approx(1.0) and (d - v[:, 2]).min() > 0


def test_images_align_with_view_voxels(data):
    """Dual vertices projected with the stored camera (official pinhole) land on the rendered silhouette."""
    ds = ViewDataset(data, split="all", ss_resolution=32)
    assert len(ds) == 4
    for i in range(len(ds)):
        s = ds[i]
        S, R, cam = s["image"].shape[-1], 32, s["camera"]
        p = (s["coords"].numpy() + s["dual_vertices"].numpy()) / R - 0.5
        f = cam.focal_pixels(S)
        depth = cam.distance - p[:, 2]
        u, v = S / 2 + f * p[:, 0] / depth, S / 2 - f * p[:, 1] / depth
        assert (u >= 0).all() and (u < S).all() and (v >= 0).all() and (v < S).all()
        alpha = s["alpha"][0].numpy()
        assert (alpha[v.astype(int), u.astype(int)] > 0).mean() > 0.9
        # the silhouette is not trivially everything: mirrored x lands off the object more often
        mirrored = (alpha[v.astype(int), (S - 1 - u).astype(int)] > 0).mean()
        assert mirrored < (alpha[v.astype(int), u.astype(int)] > 0).mean()


def test_resume_keeps_complete_views_and_rebuilds_stale_ones(assets, data, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(data, out)
    result = B.build_dataset(assets, out, CONFIG, workers=1)
    assert (result.built, result.kept, result.failed) == (0, 2, 1)
    victim = out / "synth__synth_0005_000001" / "view_01.npz"
    other = out / "synth__synth_0005_000001" / "view_00.npz"
    victim.write_bytes(b"truncated")
    before = other.stat().st_mtime_ns
    result = B.build_dataset(assets, out, CONFIG, workers=1)
    assert (result.built, result.kept) == (1, 1)
    assert other.stat().st_mtime_ns == before
    assert VoxelAsset.load(victim).source["view"]["config_hash"] == CONFIG.hash()
    # another config (image size) is a different dataset: every view is redone
    result = B.build_dataset(assets, out, B.BuildConfig(views=2, resolution=32, image_size=48, seed=3), workers=1)
    assert (result.built, result.kept) == (2, 0)


def test_shards_partition_the_assets_and_merge(assets, data, tmp_path):
    out = tmp_path / "sharded"
    for i in range(2):
        B.build_dataset(assets, out, CONFIG, workers=1, shard=(i, 2))
    shards = [_manifest(out / f"manifest.shard-{i}-of-2.json")["assets"] for i in range(2)]
    assert not set(shards[0]) & set(shards[1])
    assert not (out / "manifest.json").exists()
    merged = B.load_manifest(out)
    single = _manifest(data / "manifest.json")
    assert merged["assets"] == single["assets"]  # same views, cameras and voxel counts as one unsharded run
    path, count = B.merge_manifests(out)
    assert path.name == "manifest.json" and count == 3
    assert len(ViewDataset(out, split="all", ss_resolution=32)) == 4
    # a shard built with another config cannot be merged silently
    B.build_dataset(assets, out, B.BuildConfig(views=1, resolution=32, image_size=64, seed=3), workers=1, shard=(0, 3))
    with pytest.raises(UserError, match="another config"):
        B.load_manifest(out)


def test_asset_ids_and_shard_parsing(tmp_path):
    for rel in ("a.obj", "a.glb", "sub dir/b.ply"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    paths = B.find_assets(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["a.glb", "a.obj", "sub dir/b.ply"]
    assert B.asset_ids(tmp_path, paths) == ["a_glb", "a_obj", "sub_dir__b"]
    assert B.parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(UserError):
            B.parse_shard(bad)
    with pytest.raises(UserError, match="resolution"):
        B.BuildConfig(resolution=48).validate()


def test_view_dataset_items_splits_and_collate(data):
    all_ids = {i[0] for i in ViewDataset(data, split="all", ss_resolution=32).items}
    train = ViewDataset(data, split="train", val_fraction=0.5, ss_resolution=32)
    val = ViewDataset(data, split="val", val_fraction=0.5, ss_resolution=32)
    train_ids, val_ids = {i[0] for i in train.items}, {i[0] for i in val.items}
    assert not train_ids & val_ids and train_ids | val_ids == all_ids
    assert all(split_of(a, 0.5) == "val" for a in val_ids)
    assert split_of("x", 0.0) == "train" and split_of("x", 1.0) == "val"
    with pytest.raises(UserError, match="resolution 32"):
        ViewDataset(data, resolution=64)

    ds = ViewDataset(data, split="all", resolution=32, image_size=48, ss_resolution=16)
    s = ds[1]
    n = len(s["coords"])
    assert s["image"].shape == (3, 48, 48) and s["alpha"].shape == (1, 48, 48)
    assert s["image"].min() >= 0 and s["image"].max() <= 1
    assert (s["image"][:, s["alpha"][0] == 0] == 0).all()  # composited on black
    assert s["dual_vertices"].shape == (n, 3) and s["intersected"].dtype == torch.bool and s["attrs"].shape == (n, 6)
    assert s["split_weight"].shape == (n,) and s["occupancy"].shape == (1, 16, 16, 16)
    stored = VoxelAsset.load(data / s["asset_id"] / f"view_{s['view']:02d}.npz").occupancy[32]
    dense32 = occupancy_grid(s["coords"].numpy(), 32, 32)
    assert int(dense32.sum()) == len(stored) and dense32[0, stored[:, 0], stored[:, 1], stored[:, 2]].all()

    items = [ds[i] for i in range(3)]
    batch = collate_views(items)
    sizes = [len(it["coords"]) for it in items]
    assert batch["coords"].dtype == torch.int32 and batch["coords"].shape == (sum(sizes), 4)
    assert torch.equal(batch["coords"][:, 0], torch.repeat_interleave(torch.arange(3, dtype=torch.int32), torch.tensor(sizes)))
    assert torch.equal(batch["coords"][sizes[0]:sizes[0] + sizes[1], 1:], items[1]["coords"])
    assert batch["image"].shape == (3, 3, 48, 48) and batch["occupancy"].shape == (3, 1, 16, 16, 16)
    assert batch["attrs"].shape == (sum(sizes), 6) and len(batch["camera"]) == 3
    assert batch["fov_x"][2].item() == pytest.approx(items[2]["camera"].fov_x)


def test_dataset_fields_read_only_what_is_asked(data):
    full = ViewDataset(data, split="all", ss_resolution=16)
    occ = ViewDataset(data, split="all", ss_resolution=16, fields=("occupancy",))
    img = ViewDataset(data, split="all", ss_resolution=16, fields=("image", "occupancy"))
    for i in range(len(full)):
        a, b, c = full[i], occ[i], img[i]
        assert torch.equal(a["occupancy"], b["occupancy"]) and torch.equal(a["occupancy"], c["occupancy"])
        assert set(b) == {"asset_id", "view", "camera", "occupancy"} and torch.equal(a["image"], c["image"])
        assert b["camera"] == a["camera"] == c["camera"]
    batch = collate_views([occ[0], occ[1]])
    assert batch["occupancy"].shape == (2, 1, 16, 16, 16) and "coords" not in batch and "image" not in batch
    with pytest.raises(UserError, match="subset"):
        ViewDataset(data, split="all", ss_resolution=16, fields=("pixels",))


def _environment_folder(path):
    import os

    import cv2

    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    path.mkdir()
    sky = np.ones((16, 32, 3), np.float32)
    sky[:8] *= 4.0  # bright upper half
    for name, tint in (("blue.exr", (1.0, 0.5, 0.2)), ("warm.exr", (0.3, 0.6, 1.0))):  # BGR
        assert cv2.imwrite(str(path / name), sky * np.array(tint, np.float32))
    return path


def test_lighting_draws_are_their_own_stream(tmp_path):
    envs = _environment_folder(tmp_path / "envs")
    none = B.sample_lighting("some/asset", CONFIG)
    assert none == [B.ViewLighting(None)] * CONFIG.views
    for fraction, lit in ((0.0, 0), (1.0, CONFIG.views)):
        config = B.BuildConfig(views=CONFIG.views, resolution=32, image_size=64, seed=3, environments=str(envs),
                               environment_fraction=fraction)
        draws = B.sample_lighting("some/asset", config)
        assert sum(d.environment is not None for d in draws) == lit
        assert B.sample_views("some/asset", config) == B.sample_views("some/asset", CONFIG)  # cameras unchanged
        assert config.hash() != CONFIG.hash()
    many = B.BuildConfig(views=64, environments=str(envs), environment_fraction=0.5)
    draws = B.sample_lighting("x", many)
    lit = [d for d in draws if d.environment]
    assert 16 <= len(lit) <= 48 and {d.environment for d in lit} == {"blue.exr", "warm.exr"}
    assert all(0 <= d.yaw_deg < 360 and B.EXPOSURE_RANGE[0] <= d.exposure <= B.EXPOSURE_RANGE[1] for d in lit)
    with pytest.raises(UserError, match="no environment maps"):
        B.BuildConfig(environments=str(tmp_path)).validate()
    with pytest.raises(UserError, match="environment-fraction"):
        B.BuildConfig(environment_fraction=1.5).validate()


def test_environment_lit_views_keep_geometry_and_record_their_light(assets, data, tmp_path):
    envs = _environment_folder(tmp_path / "envs")
    config = B.BuildConfig(views=2, resolution=32, image_size=64, seed=3, environments=str(envs), environment_fraction=1.0)
    out = tmp_path / "lit"
    B.build_dataset(assets, out, config, workers=1)
    plain, lit = _manifest(data / "manifest.json"), _manifest(out / "manifest.json")
    asset_id = "synth__synth_0005_000000"
    for a, b in zip(plain["assets"][asset_id]["views"], lit["assets"][asset_id]["views"]):
        assert a["lighting"]["environment"] is None and b["lighting"]["environment"] in ("blue.exr", "warm.exr")
        assert (a["fov_x"], a["distance"], a["num_voxels"]) == (b["fov_x"], b["distance"], b["num_voxels"])
        from PIL import Image

        ia = np.asarray(Image.open(data / asset_id / a["image"]), dtype=np.float64)
        ib = np.asarray(Image.open(out / asset_id / b["image"]), dtype=np.float64)
        assert np.array_equal(ia[..., 3], ib[..., 3])  # same silhouette, same coverage
        assert np.abs(ia[..., :3] - ib[..., :3])[ia[..., 3] > 0].mean() > 3  # other light


def test_view_dataset_augments_only_when_asked_and_repeats_under_a_seed(data):
    plain = ViewDataset(data, split="all", ss_resolution=32, fields=("image",))
    augmented = ViewDataset(data, split="all", ss_resolution=32, fields=("image",), augment=True)
    torch.manual_seed(11)
    a = [augmented[i]["image"] for i in range(len(augmented))]
    torch.manual_seed(11)
    b = [augmented[i]["image"] for i in range(len(augmented))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, plain[i]["image"]) for i, x in enumerate(a))
    assert torch.equal(plain[0]["image"], ViewDataset(data, split="all", ss_resolution=32, fields=("image",))[0]["image"])


def test_multiview_items_carry_the_other_views_with_cameras_in_this_views_frame(data):
    """An extra view's camera, carried into this view's frame, projects this view's voxels onto the extra view's
    silhouette (the dataset's relative poses are right); ``num_views=1`` adds nothing."""
    assert "extra_images" not in ViewDataset(data, split="all", ss_resolution=32)[0]
    ds = ViewDataset(data, split="all", ss_resolution=32, num_views=[2, 2])
    for i in range(len(ds)):
        s = ds[i]
        assert s["extra_images"].shape == (1, *s["image"].shape) and len(s["extra_cameras"]) == 1
        other = ds[i + 1 if i % 2 == 0 else i - 1]  # the asset's other view (2 views per asset, in order)
        assert torch.equal(s["extra_images"][0], other["image"])
        S, R = s["image"].shape[-1], 32
        p = (s["coords"].numpy() + s["dual_vertices"].numpy()) / R - 0.5  # view frame, x right, y up, z to camera
        world = torch.from_numpy(np.stack([p[:, 0], -p[:, 2], p[:, 1]], 1)).float()  # official Blender world
        uv, depth, valid = project_points(world, s["extra_cameras"][0], S)
        assert valid.all() and (depth > 0).all()
        col, row = (np.clip(np.round(uv[:, k].numpy()).astype(int), 0, S - 1) for k in (0, 1))
        alpha = other["alpha"][0].numpy()
        hit = (alpha[row, col] > 0).mean()
        assert hit > 0.9, hit
        assert (alpha[row, S - 1 - col] > 0).mean() < hit
        # the own camera, carried the same way, is the stored front camera
        header = json.loads(np.load(data / s["asset_id"] / f"view_{s['view']:02d}.npz")["header"].tobytes())
        T = np.asarray(header["source"]["view"]["file_to_view"])
        same = relative_camera(T, T, s["camera"].fov_x, s["camera"].distance)
        np.testing.assert_allclose(same.cam_to_world, s["camera"].cam_to_world, atol=1e-12)
    batch = collate_views([ds[0], ds[1], ds[2]])
    assert batch["extra_images"].shape[0] == 3 and batch["extra_item"].tolist() == [0, 1, 2]
    with pytest.raises(UserError, match="num_views"):
        ViewDataset(data, split="all", ss_resolution=32, num_views=[3, 1])
