"""``pixal3d data build``: a two-worker sharded build, merge, resume, and one-line errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pixal3d.cli import main
from pixal3d.data.dataset import ViewDataset


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    assert main(["data", "synth", "-n", "3", "-o", str(root), "--seed", "7", "--workers", "1", "--no-sheet", "-q"]) == 0
    return root


def test_sharded_parallel_build_merge_and_resume(assets, tmp_path, capsys):
    out = tmp_path / "data"
    common = ["--assets", str(assets), "-o", str(out), "--views", "1", "--resolution", "16", "--image-size", "32", "-q"]
    assert main(["data", "build", *common, "--shard", "0/2", "--workers", "2"]) == 0
    assert "2 assets built, 0 kept, 0 failed" in capsys.readouterr().out
    assert main(["data", "build", *common, "--shard", "1/2", "--workers", "1"]) == 0
    assert "1 assets built" in capsys.readouterr().out
    assert main(["data", "build", "-o", str(out), "--merge"]) == 0
    assert "merged 3 assets" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["assets"]) == [f"synth_0007_{i:06d}" for i in range(3)]
    image = Image.open(out / "synth_0007_000002" / "view_00.png")
    assert image.size == (32, 32) and image.mode == "RGBA"
    assert len(ViewDataset(out, split="all", resolution=16, ss_resolution=16)) == 3
    # everything is complete: a full unsharded rerun keeps all views
    assert main(["data", "build", *common, "--workers", "2"]) == 0
    assert "0 assets built, 3 kept, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("extra,message", [
    (["--resolution", "100"], "power of two"),
    (["--shard", "2/2"], "--shard"),
    (["--views", "0"], "--views"),
])
def test_bad_options_are_one_line_errors(assets, tmp_path, capsys, extra, message):
    assert main(["data", "build", "--assets", str(assets), "-o", str(tmp_path / "d"), *extra]) == 2
    assert message in _one_line_error(capsys)


def test_missing_or_empty_inputs(tmp_path, capsys):
    assert main(["data", "build", "--assets", str(tmp_path / "nope"), "-o", str(tmp_path / "d")]) == 2
    assert "not found" in _one_line_error(capsys)
    (tmp_path / "empty").mkdir()
    assert main(["data", "build", "--assets", str(tmp_path / "empty"), "-o", str(tmp_path / "d")]) == 2
    assert "no mesh files" in _one_line_error(capsys)
    assert main(["data", "build", "-o", str(tmp_path / "d"), "--merge"]) == 2
    assert "no dataset manifest" in _one_line_error(capsys)
    assert main(["data", "build", "-o", str(tmp_path / "d")]) == 2
    assert "--assets is required" in _one_line_error(capsys)


def test_all_assets_broken_exits_1(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "bad.obj").write_text("this is not an obj\n")
    assert main(["data", "build", "--assets", str(tmp_path / "a"), "-o", str(tmp_path / "d"), "-q",
                 "--resolution", "16", "--image-size", "32"]) == 1
    assert "0 assets built, 0 kept, 1 failed" in capsys.readouterr().out
    entry = json.loads((tmp_path / "d" / "manifest.json").read_text())["assets"]["bad"]
    assert entry["status"] == "error" and entry["error"]
