from __future__ import annotations

import numpy as np
import pytest

from pixal3d.cli import main
from tests.export.conftest import sphere_asset


@pytest.fixture
def asset_file(tmp_path):
    path = tmp_path / "asset.npz"
    sphere_asset("opaque").save(path)
    return path


def test_export_writes_glb(asset_file, tmp_path, capsys):
    out = tmp_path / "out.glb"
    assert main(["export", str(asset_file), "-o", str(out), "--texture_size", "64", "--decimation_target", "500"]) == 0
    assert out.read_bytes()[:4] == b"glTF"
    assert "faces" in capsys.readouterr().out


@pytest.mark.parametrize("extra, problem", [
    ([], "missing"),
    ([], "corrupt"),
    (["--texture_size", "8"], "option"),
    (["--decimation_target", "0"], "option"),
])
def test_bad_inputs_one_line_exit_2(asset_file, tmp_path, capsys, extra, problem):
    src = asset_file
    if problem == "missing":
        src = tmp_path / "nope.npz"
    elif problem == "corrupt":
        src = tmp_path / "corrupt.npz"
        src.write_bytes(np.random.default_rng(0).bytes(200))
    out = tmp_path / "out.glb"
    assert main(["export", str(src), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_output_must_be_glb(asset_file, tmp_path, capsys):
    assert main(["export", str(asset_file), "-o", str(tmp_path / "out.obj")]) == 2
    assert not (tmp_path / "out.obj").exists()
