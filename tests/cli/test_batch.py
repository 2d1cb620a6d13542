"""``pixal3d generate --input-dir DIR --output-dir OUT [--shard I/N]``: one GLB per image, resumable, one bad
image recorded and not fatal."""

import json
import shutil

from tests.cli.test_generate import FAST, assert_one_line_error, object_image, run_cli  # noqa: F401 (fixture)


def test_batch_shards_skips_finished_and_records_a_bad_image(tmp_path, object_image, tiny_model):  # noqa: F811
    from tests.clients import assert_valid_gltf

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(object_image, inputs / "a.png")
    shutil.copy(object_image, inputs / "b.png")
    (inputs / "c.png").write_bytes(b"not an image")
    (inputs / "notes.txt").write_text("not picked up")
    common = ["--input-dir", inputs, "--output-dir", out, "--model", tiny_model, *FAST]

    first = run_cli(*common, "--shard", "1/2")  # shard 1 of 2: a.png and c.png
    assert first.returncode == 2, first.stderr[-3000:]
    assert "error: 1 of 2 images failed" in first.stderr and "Traceback" not in first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.glb", "summary.shard-1-of-2.json"]
    summary = json.loads((out / "summary.shard-1-of-2.json").read_text())
    assert [(i["image"].split("/")[-1], i["status"]) for i in summary["items"]] == [("a.png", "done"), ("c.png", "failed")]
    assert "cannot read image" in summary["items"][1]["message"]
    assert_valid_gltf(out / "a.glb")
    stamp = (out / "a.glb").stat().st_mtime_ns

    second = run_cli(*common)  # the whole folder: a.png is finished, b.png is new, c.png fails again
    assert second.returncode == 2
    rows = {line.split()[0]: line.split()[1] for line in second.stderr.splitlines() if line.startswith(("a.png", "b.png", "c.png"))}
    assert rows == {"a.png": "skipped", "b.png": "done", "c.png": "failed"}, second.stderr[-2000:]
    assert "1 done, 1 skipped, 1 failed of 3" in second.stderr
    assert (out / "a.glb").stat().st_mtime_ns == stamp
    assert_valid_gltf(out / "b.glb")


def test_batch_bad_arguments(tmp_path, object_image):  # noqa: F811
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
    ]:
        assert_one_line_error(run_cli(*args), fragment)
    assert not out.exists()
