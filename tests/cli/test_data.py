"""``pixal3d data synth`` and its assets through ``pixal3d render --camera front``: happy paths and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixal3d.cli import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_synth_then_preview(tmp_path, capsys):
    out = tmp_path / "assets"
    assert main(["data", "synth", "-n", "2", "-o", str(out), "--seed", "3", "--workers", "1", "--no-sheet", "-q"]) == 0
    assert "2 written, 0 kept" in capsys.readouterr().out
    files = sorted(p.name for p in out.iterdir())
    assert files == ["manifest.json", "synth_0003_000000.glb", "synth_0003_000001.glb"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 3 and [a["index"] for a in manifest["assets"]] == [0, 1]
    png = tmp_path / "view.png"
    assert main(["render", str(out / "synth_0003_000000.glb"), "-o", str(png), "--camera", "front", "--background", "transparent",
                 "--size", "48", "--supersample", "1"]) == 0
    image = Image.open(png)
    assert image.size == (48, 48) and image.mode == "RGBA"
    alpha = np.asarray(image)[..., 3]
    assert 0 < (alpha > 0).sum() and alpha[0, 0] == 0  # an object on a transparent background


@pytest.mark.parametrize("count", ["0", "-3"])
def test_synth_bad_count(tmp_path, capsys, count):
    assert main(["data", "synth", "-n", count, "-o", str(tmp_path / "x")]) == 2
    assert "at least 1" in _one_line_error(capsys)
    assert not (tmp_path / "x").exists()


def test_synth_bad_workers(tmp_path, capsys):
    assert main(["data", "synth", "-n", "1", "-o", str(tmp_path), "--workers", "0"]) == 2
    assert "--workers" in _one_line_error(capsys)


def test_synth_unwritable_directory(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert main(["data", "synth", "-n", "1", "-o", str(blocker / "out")]) == 2
    assert "cannot write" in _one_line_error(capsys)


def test_preview_errors(tmp_path, capsys):
    assert main(["render", str(tmp_path / "missing.glb"), "-o", str(tmp_path / "a.png"), "--camera", "front"]) == 2
    assert "not found" in _one_line_error(capsys)
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"not a glb")
    assert main(["render", str(bad), "-o", str(tmp_path / "a.png"), "--camera", "front"]) == 2
    _one_line_error(capsys)
    assert not (tmp_path / "a.png").exists()


def test_data_without_subcommand_shows_help(capsys):
    assert main(["data"]) == 2
    assert "synth" in capsys.readouterr().out
