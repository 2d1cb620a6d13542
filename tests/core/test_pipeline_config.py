"""pipeline.json as one typed config: read → write gives the same JSON (official layout and the default model)."""

import json
from pathlib import Path

import pytest

from pixal3d.core.cascade import OFFICIAL_CASCADE, CascadeConfig
from pixal3d.core.pipeline_config import PipelineConfig
from pixal3d.errors import UserError
from tests.pipelines.tiny_folder import OFFICIAL_STEMS

ROOT = Path(__file__).resolve().parents[2]

#: the TencentARC/Pixal3D layout: the official name, samplers, normalisation, image_cond_model, rembg_model
OFFICIAL = {
    "name": "Trellis2ImageTo3DPipeline",
    "args": {
        "models": dict(OFFICIAL_STEMS),
        "sparse_structure_sampler": {"name": "FlowEulerGuidanceIntervalSampler", "args": {"sigma_min": 1e-5},
                                     "params": {"steps": 12, "guidance_strength": 7.5, "guidance_rescale": 0.7,
                                                "guidance_interval": [0.6, 1.0], "rescale_t": 5.0}},
        "shape_slat_sampler": {"name": "FlowEulerGuidanceIntervalSampler", "args": {"sigma_min": 1e-5},
                               "params": {"steps": 12, "guidance_strength": 7.5, "guidance_rescale": 0.5,
                                          "guidance_interval": [0.6, 1.0], "rescale_t": 3.0}},
        "tex_slat_sampler": {"name": "FlowEulerGuidanceIntervalSampler", "args": {"sigma_min": 1e-5},
                             "params": {"steps": 12, "guidance_strength": 1.0, "guidance_rescale": 0.0,
                                        "guidance_interval": [0.6, 0.9], "rescale_t": 3.0}},
        "shape_slat_normalization": {"mean": [0.5, -1.0], "std": [2.0, 4.0]},
        "tex_slat_normalization": {"mean": [0.0, 1.0], "std": [1.0, 3.0]},
        "image_cond_model": {"name": "DinoV3FeatureExtractor", "args": {"model_name": "facebook/dinov3"}},
        "rembg_model": {"name": "BiRefNet", "args": {"model_name": "briaai/RMBG-2.0"}},
        "low_vram": False,
        "default_pipeline_type": "1536_cascade",
    },
}


def round_trip(path: Path, tmp_path: Path) -> None:
    config = PipelineConfig.read(path)
    config.write(tmp_path / "pipeline.json")
    assert (tmp_path / "pipeline.json").read_text() == path.read_text()
    assert PipelineConfig.read(tmp_path / "pipeline.json") == config


def test_official_layout_round_trip(tmp_path):
    path = tmp_path / "official" / "pipeline.json"
    path.parent.mkdir()
    path.write_text(json.dumps(OFFICIAL, indent=2) + "\n")
    round_trip(path, tmp_path)
    config = PipelineConfig.read(path)
    assert config.name == "Trellis2ImageTo3DPipeline" and len(config.models) == 7
    assert set(config.samplers) == {"sparse_structure", "shape_slat", "tex_slat"}
    assert config.normalization["tex_slat"]["std"] == [1.0, 3.0]
    assert config.image_cond_model["name"] == "DinoV3FeatureExtractor" and config.rembg_model["name"] == "BiRefNet"
    assert config.image_encoder is None and config.cascade is None and config.cascade_config == OFFICIAL_CASCADE
    assert config.other == {"low_vram": False}


def test_default_model_round_trip(tmp_path):
    path = ROOT / "models" / "pixal3d-small" / "pipeline.json"
    round_trip(path, tmp_path)
    config = PipelineConfig.read(path)
    assert config.cascade_config.pipeline_types == {"128_cascade": 128}
    assert config.image_encoder["name"] == "small_conv"
    assert config.cascade == CascadeConfig.from_args(config.cascade.to_args())


def test_with_settings_adds_after_the_read_keys():
    config = PipelineConfig.from_json(OFFICIAL)
    changed = config.with_settings({"tex_slat_normalization": {"mean": [0.0], "std": [1.0]}, "image_encoder": {"name": "x"}})
    args = changed.to_json()["args"]
    assert list(args) == list(OFFICIAL["args"]) + ["image_encoder"]
    assert args["tex_slat_normalization"] == {"mean": [0.0], "std": [1.0]} and changed.models == config.models
    assert config.to_json() == OFFICIAL  # the original is unchanged


@pytest.mark.parametrize("data, message", [
    ([], "must be a JSON object"),
    ({"args": {"models": {"a": 1}}}, "args.models must map"),
    ({"args": {"cascade": {"grid": 3}}}, "unknown cascade settings"),
])
def test_malformed_files_are_one_line_errors(data, message):
    with pytest.raises(UserError, match=message):
        PipelineConfig.from_json(data)


def test_unreadable_file(tmp_path):
    (tmp_path / "pipeline.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        PipelineConfig.read(tmp_path / "pipeline.json")
