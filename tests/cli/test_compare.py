"""``pixal3d compare``: a comparison of two results files, and bad input as one line with exit code 2."""

from __future__ import annotations

import json

import pytest

from pixal3d.cli import main


def write_run(path, offset: float) -> None:
    results = [{"mesh": f"m{i}", "status": "ok", "mean": {"iou_input": 0.5 + 0.02 * i + offset,
                                                        "chamfer_l1": 0.05 - offset / 10}} for i in range(6)]
    config = {"subset": "quick", "views_used": 1, "seed": 0, "mode": "oracle", "image_size": 512, "held_out": 4,
              "points": 50000, "up": None}
    path.mkdir()
    (path / "results.json").write_text(json.dumps({
        "format": "pixal3d-evaluation", "config": config, "model": {"folder": str(path)},
        "methods": {"model (oracle)": {"kind": "model", "num_views": 1, "results": results}}}))


def test_compare_prints_table_and_writes_json(tmp_path, capsys):
    write_run(tmp_path / "a", 0.1)
    write_run(tmp_path / "b", 0.0)
    code = main(["compare", str(tmp_path / "a"), str(tmp_path / "b" / "results.json"), "--metric", "iou_input",
                 "--metric", "chamfer_l1", "--resamples", "300", "--json", str(tmp_path / "cmp.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "| iou_input | higher | 6 |" in out and "**A better**" in out
    data = json.loads((tmp_path / "cmp.json").read_text())
    assert [row["verdict"] for row in data["metrics"]] == ["A", "A"]
    assert data["metrics"][0]["difference"] == pytest.approx(0.1)


def test_bad_inputs_are_one_line(tmp_path, capsys):
    write_run(tmp_path / "a", 0.0)
    (tmp_path / "junk.json").write_text("[1, 2]")
    for args, fragment in [((str(tmp_path / "a"), str(tmp_path / "missing")), "not found"),
                           ((str(tmp_path / "a"), str(tmp_path / "junk.json")), "not the results.json"),
                           ((str(tmp_path / "a"), str(tmp_path / "a"), "--method-a", "x"), "no method 'x'"),
                           ((str(tmp_path / "a"), str(tmp_path / "a"), "--resamples", "0"), "")]:
        try:
            code = main(["compare", *args])
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and fragment in err, (args, err)
