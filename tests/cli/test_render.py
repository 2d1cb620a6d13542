from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image

from pixal3d.cli import main
from pixal3d.export.glb import ExportOptions, asset_to_glb
from tests.export.conftest import sphere_asset


@pytest.fixture(scope="module")
def glb(tmp_path_factory):
    path = tmp_path_factory.mktemp("render") / "sphere.glb"
    asset_to_glb(sphere_asset("opaque"), path, ExportOptions(texture_size=64, decimation_target=500), progress=False)
    return path


def test_render_input_and_turntable(glb, tmp_path):
    out = tmp_path / "view.png"
    assert main(["render", str(glb), "-o", str(out), "--size", "64"]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (64, 64, 4) and (img[..., 3] == 255).sum() > 500
    assert main(["render", str(glb), "-o", str(out), "--camera", "turntable", "--views", "4", "--size", "32",
                 "--mode", "mask"]) == 0
    sheet = np.asarray(Image.open(out))
    assert sheet.shape == (64, 64) and sheet.max() == 255


def test_render_errors(glb, tmp_path, capsys):
    out = tmp_path / "view.png"
    no_camera = tmp_path / "plain.glb"
    trimesh.creation.box().export(no_camera)
    corrupt = tmp_path / "bad.glb"
    corrupt.write_bytes(b"glTF" + bytes(40))
    for argv in (
        [str(tmp_path / "missing.glb"), "-o", str(out)],
        [str(no_camera), "-o", str(out)],
        [str(corrupt), "-o", str(out)],
        [str(glb), "-o", str(out), "--size", "2"],
        [str(glb), "-o", str(out), "--supersample", "0"],
    ):
        assert main(["render", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err
        assert not out.exists()
