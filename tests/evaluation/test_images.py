"""The photo protocol (``pixal3d evaluate --images``): silhouette scores, a run on the tiny model, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from pixal3d.errors import UserError
from pixal3d.evaluation.images import find_images
from tests.cli.test_evaluate import run_main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_find_images(tmp_path):
    with pytest.raises(UserError, match="not found"):
        find_images(tmp_path / "none")
    with pytest.raises(UserError, match="no images"):
        find_images(tmp_path)
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_images(tmp_path)] == ["a.jpg", "b.png"]


def test_a_run_on_the_tiny_model(tiny_model, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("mug.png", "lamp.png"):
        shutil.copyfile(EXAMPLES / name, photos / name)
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(photos / "blank.png")  # nothing to find: recorded as failed
    code, err = run_main(capsys, "--images", photos, "--model", tiny_model, "-o", tmp_path / "out", "--steps", "2")
    assert code == 0, err[-2000:]
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["ok"] == 2 and data["failed"] == 1
    for row in data["rows"]:
        if row["status"] == "ok":
            assert 0 <= row["iou"] <= min(row["precision"], row["recall"]) + 1e-9
    assert (tmp_path / "out" / "sheet.png").is_file() and "IoU held" in (tmp_path / "out" / "results.md").read_text()
    code, err = run_main(capsys, "--images", photos, "--meshes", photos, "-o", tmp_path / "x")
    assert code == 2 and "takes no --meshes" in err
