from __future__ import annotations

import trimesh

from pixal3d.cli import main
from pixal3d.core.asset import VoxelAsset
from tests.helpers import EVALSETS


def test_voxelize_happy_path(tmp_path, capsys):
    out = tmp_path / "duck.npz"
    assert main(["voxelize", str(EVALSETS / "meshes" / "khronos_Duck.glb"), "-o", str(out), "--resolution", "32"]) == 0
    asset = VoxelAsset.load(out)
    assert asset.resolution == 32 and len(asset.coords) > 100
    assert sorted(asset.occupancy) == [32] and asset.camera.fov_x == 0.8575560450553894
    assert "voxels at 32³" in capsys.readouterr().out


def test_voxelize_bad_inputs(tmp_path, capsys):
    out = tmp_path / "o.npz"
    bad = tmp_path / "bad.obj"
    bad.write_text("v 0 0 0\nf 1 2 3\n")
    empty = tmp_path / "empty.ply"
    empty.write_text("ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    box = tmp_path / "box.obj"
    trimesh.creation.box().export(box)
    cases = [
        [str(tmp_path / "missing.obj"), "-o", str(out)],
        [str(bad), "-o", str(out)],
        [str(empty), "-o", str(out)],
        [str(box), "-o", str(out), "--resolution", "100"],
        [str(box), "-o", str(out), "--resolution", "0"],
    ]
    for args in cases:
        assert main(["voxelize", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]
