"""``pixal3d data pack``: the pack reads like the dataset it came from, for the fields it keeps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pixal3d.cli import main as pixal3d_main
from pixal3d.data.build import load_manifest
from pixal3d.data.dataset import ViewDataset
from pixal3d.data.pack import coarse_cells, pack_dataset
from pixal3d.errors import UserError


def test_a_pack_reads_like_its_dataset(tiny_data, tmp_path):
    result = pack_dataset(tiny_data, tmp_path / "pack", views=2, quality=95, grid=8)
    assert (result.assets, result.views) == (3, 6)
    files = [p for p in result.path.rglob("*") if p.is_file()]
    assert result.bytes == sum(p.stat().st_size for p in files)
    source, packed = load_manifest(tiny_data), load_manifest(result.path)
    assert packed["config_hash"] == source["config_hash"] and packed["pack"]["occupancy_grid"] == 8
    args = dict(split="all", ss_resolution=8, num_views=2)
    full = ViewDataset(tiny_data, fields=("image", "occupancy", "voxels"), **args)  # occupancy from the fine voxels
    slim = ViewDataset(result.path, fields=("image", "occupancy"), **args)
    assert len(full) == len(slim) == 6
    torch.manual_seed(0)
    for i in range(len(full)):
        a, b = full[i], slim[i]
        assert (a["asset_id"], a["view"]) == (b["asset_id"], b["view"])
        assert torch.equal(a["occupancy"], b["occupancy"]) and a["occupancy"].sum() > 0
        assert torch.equal(a["alpha"], b["alpha"])  # lossless alpha
        assert (a["image"] - b["image"]).abs().mean() < 0.02  # lossy colours
        assert (a["camera"].fov_x, a["camera"].distance) == (b["camera"].fov_x, b["camera"].distance)
        assert len(a["extra_cameras"]) == len(b["extra_cameras"]) == 1  # multi-view: the other view in this frame
        np.testing.assert_allclose(a["extra_cameras"][0].cam_to_world, b["extra_cameras"][0].cam_to_world)
        assert (a["extra_images"] - b["extra_images"]).abs().mean() < 0.02


def test_coarse_cells_match_the_fine_voxels(tiny_data):
    npz = next(tiny_data.glob("*/view_00.npz"))
    with np.load(npz) as data:
        coords = data["coords"].astype(np.int64)
    for grid in (4, 8, 16, 32):
        expected = np.unique(coords // (32 // grid), axis=0)
        np.testing.assert_array_equal(coarse_cells(npz, grid), expected)
        assert coarse_cells(npz, grid).dtype == np.uint8


def test_one_view_per_asset_keeps_the_first(tiny_data, tmp_path):
    result = pack_dataset(tiny_data, tmp_path / "pack", views=1)
    entries = json.loads((result.path / "manifest.json").read_text())["assets"]
    assert result.views == 3 and all([v["index"] for v in e["views"]] == [0] for e in entries.values())
    assert all(v["image"].endswith(".webp") for e in entries.values() for v in e["views"])


@pytest.mark.parametrize("kwargs, message", [
    ({"views": 0}, "--views"), ({"quality": 0}, "--quality"), ({"grid": 5}, "divide"),
    ({"max_bytes": 1000}, "over 0.0 MiB"),
])
def test_bad_packs_fail_and_write_nothing(tiny_data, tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        pack_dataset(tiny_data, tmp_path / "pack", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_packs_and_refuses_an_existing_folder(tiny_data, tmp_path, capsys):
    assert pixal3d_main(["data", "pack", str(tiny_data), "-o", str(tmp_path / "pack"), "-q"]) == 0
    assert "3 assets, 6 views" in capsys.readouterr().out
    assert pixal3d_main(["data", "pack", str(tiny_data), "-o", str(tmp_path / "pack"), "-q"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert pixal3d_main(["data", "pack", str(tiny_data), "-o", str(tmp_path / "p2"), "--max-mib", "0"]) == 2
