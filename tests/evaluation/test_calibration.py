"""Choosing the shape decoder's subdivision bias (``pixal3d.evaluation.calibration``) on the shipped model."""

from __future__ import annotations

import json
import shutil

import pytest

from pixal3d import paths
from pixal3d.errors import UserError
from pixal3d.evaluation.calibration import (CALIBRATION_SCORES, SHAPE_DECODER, calibrate_subdivision_bias,
                                            choose_bias, write_subdivision_bias)
from pixal3d.evaluation.runner import EvalConfig

MODEL = paths.component_path("pixal3d-small")
needs_model = pytest.mark.skipif(not MODEL.exists(), reason="the default model is not installed (models/pixal3d-small)")


@pytest.fixture(scope="module")
def one_asset(tmp_path_factory):
    from pixal3d.data.synth import synthesize

    folder = tmp_path_factory.mktemp("calibration") / "assets"
    synthesize(1, folder, seed=1, workers=1, sheet=False)
    return folder


@needs_model
def test_every_bias_is_scored_on_one_generation_and_the_best_is_chosen(one_asset, tmp_path):
    config = EvalConfig(subset="full", views_per_mesh=1, baselines=(), sheet=False, image_size=128, held_out=1,
                        points=2000)
    result = calibrate_subdivision_bias(MODEL, one_asset, tmp_path / "report", [0.0, 3.0, 0.0], config)
    assert [row["bias"] for row in result.rows] == [0.0, 3.0]  # duplicates tried once
    for row in result.rows:
        assert row["score"] == pytest.approx(sum(row[k] for k in CALIBRATION_SCORES) / len(CALIBRATION_SCORES))
    assert result.bias == choose_bias(result.rows) and result.meshes == 1
    report = json.loads((tmp_path / "report" / "results.json").read_text())
    assert set(report["methods"]) == {"model (oracle) bias +0", "model (oracle) bias +3"}
    # more kept children: a positive bias decodes more voxels from the same seed
    assert result.rows[1]["voxels"] > result.rows[0]["voxels"] > 0 and result.rows[0]["seconds"] > 0


@needs_model
def test_the_bias_is_written_into_the_shape_decoder_config(tmp_path):
    from pixal3d.models.pipeline_folder import open_pipeline_folder

    folder = tmp_path / "model"
    shutil.copytree(MODEL, folder)
    path = write_subdivision_bias(folder, 2.0)
    assert json.loads(path.read_text())["args"]["subdivision_bias"] == 2.0
    decoder = open_pipeline_folder(folder).load(SHAPE_DECODER)
    assert decoder.subdivision_bias == 2.0
    assert {m.subdiv_bias for m in decoder.modules() if hasattr(m, "subdiv_bias")} == {2.0}


def test_calibration_needs_candidates(tmp_path):
    with pytest.raises(UserError, match="at least one"):
        calibrate_subdivision_bias(tmp_path, tmp_path, tmp_path / "out", [])


def test_the_cheapest_bias_within_the_tolerance_of_the_best_is_chosen():
    rows = [{"bias": 0.0, "score": 0.60}, {"bias": 1.0, "score": 0.695}, {"bias": 2.0, "score": 0.70},
            {"bias": 3.0, "score": 0.71}, {"bias": -1.0, "score": 0.705}]
    assert choose_bias(rows, tolerance=0.0) == 3.0
    assert choose_bias(rows, tolerance=0.01) == -1.0  # closest to 0 among 0.700 … 0.710
    assert choose_bias(rows[:4], tolerance=0.02) == 1.0
    assert choose_bias(rows[:1], tolerance=0.5) == 0.0
    with pytest.raises(UserError):
        choose_bias([])
