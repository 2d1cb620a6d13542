"""``pixal3d generate --input-dir DIR --output-dir OUT [--shard I/N]``: one GLB per image, resumable, one bad
image recorded and not fatal."""

import json
import shutil
from pathlib import Path

from pixal3d.export.formats import usd_available

from tests.cli.test_generate import (FAST, assert_one_line_error, object_image, run_cli,  # noqa: F401 (fixture)
                                     run_in_process)


def _formats_read_back(stem: Path) -> None:
    """The GLB's other formats, each read back by its reader: the same triangles everywhere."""
    import trimesh

    faces = len(next(iter(trimesh.load(stem.with_suffix(".glb"), force="scene").geometry.values())).faces)
    assert len(trimesh.load(stem.with_suffix(".obj"), force="mesh").faces) == faces
    assert len(trimesh.load(stem.with_suffix(".ply")).faces) == faces
    assert len(trimesh.load(stem.with_suffix(".stl")).faces) == faces
    if usd_available():
        from pxr import Usd, UsdGeom

        stage = Usd.Stage.Open(str(stem.with_suffix(".usdz")))
        meshes = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
        assert len(meshes) == 1 and len(meshes[0].GetFaceVertexCountsAttr().Get()) == faces
    else:
        print("usdz not checked: usd-core is not installed (pip install usd-core)")


def test_batch_shards_skips_finished_and_records_a_bad_image(tmp_path, object_image, tiny_model):  # noqa: F811
    from tests.clients import assert_valid_gltf

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(object_image, inputs / "a.png")
    shutil.copy(object_image, inputs / "b.png")
    (inputs / "c.png").write_bytes(b"not an image")
    (inputs / "notes.txt").write_text("not picked up")
    common = ["--input-dir", inputs, "--output-dir", out, "--model", tiny_model, *FAST]

    formats = "obj,ply,stl" + (",usdz" if usd_available() else "")
    first = run_cli(*common, "--shard", "1/2", "--format", formats)  # shard 1 of 2: a.png and c.png
    assert first.returncode == 2, first.stderr[-3000:]
    assert "error: 1 of 2 images failed" in first.stderr and "Traceback" not in first.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["a.glb", "a.obj", "a.mtl", "a_basecolor.png", "a.ply", "a.stl", "summary.shard-1-of-2.json"]
        + (["a.usdz"] if usd_available() else []))
    _formats_read_back(out / "a")
    summary = json.loads((out / "summary.shard-1-of-2.json").read_text())
    assert [(i["image"].split("/")[-1], i["status"]) for i in summary["items"]] == [("a.png", "done"), ("c.png", "failed")]
    assert "cannot read image" in summary["items"][1]["message"]
    assert_valid_gltf(out / "a.glb")
    stamp = (out / "a.glb").stat().st_mtime_ns

    second = run_cli(*common, "--format", formats)  # the whole folder: a.png is done, b.png is new, c.png fails
    assert second.returncode == 2
    rows = {line.split()[0]: line.split()[1] for line in second.stderr.splitlines() if line.startswith(("a.png", "b.png", "c.png"))}
    assert rows == {"a.png": "skipped", "b.png": "done", "c.png": "failed"}, second.stderr[-2000:]
    assert "1 done, 1 skipped, 1 failed of 3" in second.stderr
    assert (out / "a.glb").stat().st_mtime_ns == stamp
    assert_valid_gltf(out / "b.glb")


def test_batch_bad_arguments(tmp_path, object_image, capsys):  # noqa: F811
    inputs = tmp_path / "in"
    inputs.mkdir()
    out = tmp_path / "out"
    for args, fragment in [
        (["--input-dir", inputs], "needs both --input-dir DIR and --output-dir OUT"),
        (["--input-dir", inputs, "--output-dir", out], "no images in"),
        (["--input-dir", tmp_path / "none", "--output-dir", out], "not found"),
        (["--input-dir", inputs, "--output-dir", inputs], "must differ from --input-dir"),
        (["--input-dir", inputs, "--output-dir", out, "--image", object_image], "not both"),
        (["--input-dir", inputs, "--output-dir", out, "--shard", "3/2"], "--shard: shard must be I/N"),
        (["--image", object_image, "--output", out / "x.glb", "--shard", "1/2"], "--shard is for batches"),
        (["--image", object_image], "give --image IMAGE --output OUT.glb"),
        (["--image", object_image, "--output", out / "x.glb", "--format", "fbx"], "unknown format fbx"),
    ]:
        proc = run_in_process(capsys, *args)
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and "error:" in lines[0] and fragment in lines[0], (args, proc.stderr)
    assert not out.exists()
