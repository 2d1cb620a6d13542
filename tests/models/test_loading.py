"""Checkpoint loading (pixal3d.models.loading) and pipeline folders (pixal3d.models.pipeline_folder).

The classes below are small real modules registered only for these tests; they reproduce the
dtype patterns of the official networks (bf16 flow blocks with fp32 embedders and a ``dtype``
attribute, an fp16 conv trunk, the derived ``rope_phases`` buffer).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pixal3d.errors import UserError
from pixal3d.models.loading import (
    check_checkpoint,
    load_model,
    open_checkpoint,
    read_safetensors_header,
    save_model,
)
from pixal3d.core.pipeline_config import PipelineConfig
from pixal3d.models.pipeline_folder import (
    PIXAL3D_STAGES,
    StageWeights,
    open_pipeline_folder,
    resolve_model_folder,
    write_pipeline_folder,
)
from pixal3d.models.registry import build_model, register_model


@register_model("LoadingTestFlow")
class LoadingTestFlow(nn.Module):
    """fp32 input layer, blocks in ``dtype`` (activations cast to ``self.dtype``), persistent ``rope_phases``."""

    def __init__(self, width: int = 8, depth: int = 2, dtype: str = "bfloat16"):
        super().__init__()
        self.dtype = getattr(torch, dtype)
        self.input_layer = nn.Linear(4, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.blocks.to(self.dtype)
        self.out_layer = nn.Linear(width, 4)
        self.register_buffer("rope_phases", self.phases(self.input_layer.weight.device))

    def phases(self, device) -> torch.Tensor:
        return torch.polar(torch.ones(6, 2, device=device), torch.arange(12.0, device=device).reshape(6, 2))

    def init_buffers(self, device: torch.device) -> None:
        self.rope_phases = self.phases(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input_layer(x).to(self.dtype)
        for block in self.blocks:
            h = block(h)
        return self.out_layer(h.float())


@register_model("LoadingTestDecoder")
class LoadingTestDecoder(nn.Module):
    """fp32 input/output convs around an fp16 trunk (``use_fp16``), with a non-persistent derived buffer."""

    def __init__(self, channels: int = 4, use_fp16: bool = True):
        super().__init__()
        self.dtype = torch.float16 if use_fp16 else torch.float32
        self.input_layer = nn.Conv3d(2, channels, 3, padding=1)
        self.trunk = nn.Sequential(nn.Conv3d(channels, channels, 3, padding=1), nn.GroupNorm(1, channels))
        self.trunk.to(self.dtype)
        self.out_layer = nn.Conv3d(channels, 1, 1)
        self.register_buffer("offsets", torch.arange(3.0), persistent=False)

    def init_buffers(self, device: torch.device) -> None:
        self.offsets = torch.arange(3.0, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(self.trunk(self.input_layer(x).to(self.dtype)).float())


@register_model("LoadingTestNoHook")
class LoadingTestNoHook(nn.Module):
    """A derived non-persistent buffer but no ``init_buffers``: loading must refuse it."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 2)
        self.register_buffer("table", torch.zeros(3), persistent=False)


FLOW_ARGS = {"width": 8, "depth": 2, "dtype": "bfloat16"}


def random_state(name: str, args: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the class's own key names and dtypes (derived ``rope_phases`` left out)."""
    gen = torch.Generator().manual_seed(seed)
    model = build_model(name, args, device="meta")
    return {k: torch.randn(v.shape, generator=gen).to(v.dtype) for k, v in model.state_dict().items()
            if k != "rope_phases"}


def write_checkpoint(stem, name: str, args: dict, state: dict) -> None:
    save_model(state, stem, name, args)


def test_load_gives_identical_tensors_in_class_dtypes(tmp_path):
    state = random_state("LoadingTestFlow", FLOW_ARGS)
    write_checkpoint(tmp_path / "flow", "LoadingTestFlow", FLOW_ARGS, state)
    for mmap in (True, False):
        model = load_model(tmp_path / "flow", mmap=mmap)
        loaded = model.state_dict()
        assert set(loaded) == set(state) | {"rope_phases"}
        for key, value in state.items():
            assert loaded[key].dtype == value.dtype, key
            assert torch.equal(loaded[key], value), key
        assert model.blocks[0].weight.dtype == torch.bfloat16 and model.input_layer.weight.dtype == torch.float32
        assert torch.equal(model.rope_phases, model.phases("cpu"))
        assert not model.training
        assert model(torch.randn(3, 4)).shape == (3, 4)


def test_accepts_json_or_safetensors_path_and_stored_rope_phases(tmp_path):
    state = random_state("LoadingTestFlow", FLOW_ARGS)
    state["rope_phases"] = torch.zeros(6, 2)  # whatever a file stores there is ignored
    save_model({}, tmp_path / "flow", "LoadingTestFlow", FLOW_ARGS)  # overwritten below, atomically
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "flow.safetensors"))
    for path in ("flow.json", "flow.safetensors", "flow"):
        model = load_model(tmp_path / path)
        assert torch.equal(model.rope_phases, model.phases("cpu"))


def test_fp16_falls_back_to_fp32_on_cpu_and_forced_dtype(tmp_path):
    args = {"channels": 4, "use_fp16": True}
    state = random_state("LoadingTestDecoder", args, seed=1)
    write_checkpoint(tmp_path / "dec", "LoadingTestDecoder", args, state)
    header, _, _ = read_safetensors_header(tmp_path / "dec.safetensors")
    assert header["trunk.0.weight"].dtype == "F16" and header["input_layer.weight"].dtype == "F32"

    model = load_model(tmp_path / "dec", device="cpu")
    assert model.trunk[0].weight.dtype == torch.float32 and model.dtype == torch.float32
    assert torch.equal(model.trunk[0].weight, state["trunk.0.weight"].float())
    assert torch.equal(model.offsets, torch.arange(3.0))
    assert model(torch.randn(1, 2, 3, 3, 3)).dtype == torch.float32

    flow_state = random_state("LoadingTestFlow", FLOW_ARGS)
    write_checkpoint(tmp_path / "flow", "LoadingTestFlow", FLOW_ARGS, flow_state)
    forced = load_model(tmp_path / "flow", dtype=torch.float32)
    assert forced.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in forced.parameters())
    assert forced.rope_phases.dtype == torch.complex64
    assert torch.equal(forced.blocks[1].weight, flow_state["blocks.1.weight"].float())
    x = torch.randn(2, 4)
    assert forced(x).dtype == torch.float32


def test_loading_draws_no_random_numbers(tmp_path):
    write_checkpoint(tmp_path / "flow", "LoadingTestFlow", FLOW_ARGS, random_state("LoadingTestFlow", FLOW_ARGS))
    before = torch.get_rng_state()
    load_model(tmp_path / "flow")
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda s: s.pop("blocks.1.weight"), ["missing key", "blocks.1.weight"]),
        (lambda s: s.__setitem__("blocks.7.weight", torch.zeros(2)), ["unexpected key", "blocks.7.weight"]),
        (lambda s: s.__setitem__("out_layer.weight", torch.zeros(4, 9)), ["wrong shape", "out_layer.weight", "[4, 9]", "[4, 8]"]),
    ],
)
def test_strict_mismatches_raise_one_user_error(tmp_path, edit, expected):
    state = random_state("LoadingTestFlow", FLOW_ARGS)
    edit(state)
    write_checkpoint(tmp_path / "flow", "LoadingTestFlow", FLOW_ARGS, state)
    with pytest.raises(UserError) as info:
        load_model(tmp_path / "flow")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "flow.safetensors") in message and "LoadingTestFlow" in message
    for part in expected:
        assert part in message
    _, mismatches = check_checkpoint(tmp_path / "flow")
    assert not mismatches.ok


def test_non_strict_keeps_class_init_for_missing_keys(tmp_path):
    state = random_state("LoadingTestFlow", FLOW_ARGS)
    del state["blocks.1.weight"]
    state["out_layer.weight"] = torch.zeros(4, 9)
    state["extra"] = torch.zeros(1)
    write_checkpoint(tmp_path / "flow", "LoadingTestFlow", FLOW_ARGS, state)
    model = load_model(tmp_path / "flow", strict=False)
    assert torch.equal(model.blocks[0].weight, state["blocks.0.weight"])
    assert model.blocks[1].weight.dtype == torch.bfloat16 and not model.blocks[1].weight.is_meta
    assert model.out_layer.weight.shape == (4, 8)


def test_many_mismatches_are_truncated(tmp_path):
    state = {f"junk.{i}": torch.zeros(1) for i in range(9)}
    write_checkpoint(tmp_path / "flow", "LoadingTestFlow", FLOW_ARGS, state)
    with pytest.raises(UserError, match=r"9 unexpected key\(s\): .*\(\+4 more\)"):
        load_model(tmp_path / "flow")


def test_derived_buffer_without_hook_is_an_error(tmp_path):
    write_checkpoint(tmp_path / "m", "LoadingTestNoHook", {}, random_state("LoadingTestNoHook", {}))
    with pytest.raises(UserError, match="table"):
        load_model(tmp_path / "m")


def test_bad_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "absent")
    (tmp_path / "a.json").write_text(json.dumps({"name": "LoadingTestFlow", "args": FLOW_ARGS}))
    with pytest.raises(UserError, match="a.safetensors not found"):
        load_model(tmp_path / "a")
    (tmp_path / "a.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}")
    with pytest.raises(UserError, match="not a safetensors file"):
        load_model(tmp_path / "a")
    (tmp_path / "b.json").write_text(json.dumps({"name": "NoSuchModel", "args": {}}))
    save_model({}, tmp_path / "c", "LoadingTestFlow", {"width": 8, "bogus": 1})
    with pytest.raises(UserError, match="bogus"):
        load_model(tmp_path / "c")
    (tmp_path / "b.safetensors").write_bytes((tmp_path / "c.safetensors").read_bytes())
    with pytest.raises(UserError, match="unknown model class 'NoSuchModel'"):
        load_model(tmp_path / "b")


def test_save_model_is_atomic_and_writes_json_last(tmp_path):
    with pytest.raises(TypeError):
        save_model(random_state("LoadingTestFlow", FLOW_ARGS), tmp_path / "x", "LoadingTestFlow", {"width": object()})
    assert list(tmp_path.iterdir()) == []
    shared = torch.randn(4, 4)
    save_model({"a": shared, "b": shared[:2]}, tmp_path / "y", "Anything", {})
    header, metadata, _ = read_safetensors_header(tmp_path / "y.safetensors")
    assert header["b"].shape == (2, 4) and metadata == {"format": "pt"}
    assert json.loads((tmp_path / "y.json").read_text()) == {"name": "Anything", "args": {}}
    assert open_checkpoint(tmp_path / "y").num_params == 24


# --- pipeline folders -------------------------------------------------------------------------

DEC_ARGS = {"channels": 4, "use_fp16": True}
PIPELINE_ARGS = {
    "sparse_structure_sampler": {"name": "FlowEulerGuidanceIntervalSampler", "args": {"sigma_min": 1e-5},
                                 "params": {"steps": 12, "guidance_strength": 7.5}},
    "shape_slat_normalization": {"mean": [0.5, -1.0], "std": [2.0, 4.0]},
    "tex_slat_normalization": {"mean": [0.0, 1.0], "std": [1.0, 3.0]},
    "default_pipeline_type": "1536_cascade",
    "rembg_model": {"name": "BiRefNet", "args": {"model_name": "briaai/RMBG-2.0"}},
}


def stage_weights(key: str, seed: int) -> StageWeights:
    if key.endswith("decoder"):
        return StageWeights(random_state("LoadingTestDecoder", DEC_ARGS, seed), "LoadingTestDecoder", DEC_ARGS)
    return StageWeights(random_state("LoadingTestFlow", FLOW_ARGS, seed), "LoadingTestFlow", FLOW_ARGS)


def test_pixal3d_layout_round_trip(tmp_path):
    stages = {key: stage_weights(key, i) for i, key in enumerate(PIXAL3D_STAGES)}
    stages["sparse_structure_decoder"].stem = "ckpts/ss_dec_conv3d_16l8_fp16"
    folder = write_pipeline_folder(tmp_path / "Pixal3D", stages, PipelineConfig("Trellis2ImageTo3DPipeline").with_settings(PIPELINE_ARGS))
    assert folder.config.name == "Trellis2ImageTo3DPipeline"
    assert list(folder.stages) == list(PIXAL3D_STAGES) and folder.missing() == []
    assert folder.stages["sparse_structure_decoder"].stem == tmp_path / "Pixal3D/ckpts/ss_dec_conv3d_16l8_fp16"
    assert folder.config.samplers["sparse_structure"]["params"]["steps"] == 12
    assert folder.config.default_pipeline_type == "1536_cascade" and folder.config.rembg_model["name"] == "BiRefNet"
    assert folder.config.image_encoder is None
    mean, std = folder.latent_normalization("shape_slat")
    assert mean.tolist() == [0.5, -1.0] and std.dtype == torch.float32
    for key in PIXAL3D_STAGES:
        loaded = folder.load(key).state_dict()
        for name, value in stages[key].weights.items():
            assert torch.equal(loaded[name], value.float() if value.dtype == torch.float16 else value), (key, name)


def test_trellis2_layout_with_hub_id_and_texturing_config(tmp_path, monkeypatch):
    root = tmp_path / "models"
    monkeypatch.setenv("PIXAL3D_MODELS", str(root))
    keys = [k for k in PIXAL3D_STAGES if k != "sparse_structure_decoder"] + ["tex_slat_flow_model_512"]
    stages = {key: stage_weights(key, i) for i, key in enumerate(keys)}
    args = dict(PIPELINE_ARGS, models={"sparse_structure_decoder": "microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16"},
                image_cond_model={"name": "DinoV3FeatureExtractor", "args": {"model_name": "facebook/dinov3"}})
    folder = write_pipeline_folder(root / "TRELLIS.2-4B", stages, PipelineConfig("Trellis2ImageTo3DPipeline").with_settings(args))
    (folder.path / "texturing_pipeline.json").write_text(json.dumps(
        {"name": "Trellis2TexturingPipeline",
         "args": {"models": {"shape_slat_encoder": "ckpts/shape_enc_next_dc_f16c32_fp16",
                             "tex_slat_flow_model_512": "ckpts/tex_slat_flow_model_512"}}}))
    folder = open_pipeline_folder(folder.path)
    assert folder.config.image_cond_model["name"] == "DinoV3FeatureExtractor"
    assert folder.stages["shape_slat_encoder"].source == "texturing_pipeline.json"
    assert folder.stages["tex_slat_flow_model_512"].source == "pipeline.json"
    missing = folder.missing(["sparse_structure_decoder"])
    assert len(missing) == 1
    assert "ss_dec_conv3d_16l8_fp16.json and ss_dec_conv3d_16l8_fp16.safetensors not found" in missing[0]
    assert "huggingface.co/microsoft/TRELLIS-image-large" in missing[0]
    assert str(root / "TRELLIS-image-large" / "ckpts") in missing[0]
    with pytest.raises(UserError, match="sparse_structure_decoder"):
        folder.load("sparse_structure_decoder")
    with pytest.raises(UserError, match="no model 'nope'"):
        folder.load("nope")

    dec = stage_weights("sparse_structure_decoder", 99)
    save_model(dec.weights, root / "TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16", dec.name, dec.args)
    folder = open_pipeline_folder(folder.path)
    assert folder.missing(list(PIXAL3D_STAGES)) == []
    loaded = folder.load("sparse_structure_decoder")
    assert torch.equal(loaded.input_layer.weight, dec.weights["input_layer.weight"])
    assert resolve_model_folder("TRELLIS.2-4B") == root / "TRELLIS.2-4B"
    assert resolve_model_folder("trellis2") == root / "TRELLIS.2-4B"
    with pytest.raises(UserError, match="PIXAL3D_MODELS"):
        resolve_model_folder("pixal3d")


def test_hub_id_found_as_local_copy_and_partial_download(tmp_path):
    dec = stage_weights("sparse_structure_decoder", 5)
    folder_path = tmp_path / "TRELLIS.2-4B"
    write_pipeline_folder(folder_path, {}, PipelineConfig().with_settings({"models": {"sparse_structure_decoder": "microsoft/TRELLIS-image-large/ckpts/ss_dec"}}))
    stem = folder_path / "ckpts" / "ss_dec"
    save_model(dec.weights, stem, dec.name, dec.args)
    stem.with_name("ss_dec.safetensors").unlink()
    folder = open_pipeline_folder(folder_path, models_root=tmp_path / "elsewhere")
    assert folder.missing() == [f"sparse_structure_decoder: ss_dec.safetensors missing in {folder_path / 'ckpts'}"]
    save_model(dec.weights, stem, dec.name, dec.args)
    folder = open_pipeline_folder(folder_path, models_root=tmp_path / "elsewhere")
    assert folder.stages["sparse_structure_decoder"].stem == stem


def test_low_memory_keeps_one_stage_resident(tmp_path):
    keys = ["sparse_structure_flow_model", "sparse_structure_decoder"]
    folder = write_pipeline_folder(tmp_path / "f", {k: stage_weights(k, i) for i, k in enumerate(keys)}, PipelineConfig().with_settings(PIPELINE_ARGS))
    models = folder.models(low_memory=True)
    first = models[keys[0]]
    assert models[keys[0]] is first and models.resident == [keys[0]]
    models[keys[1]]
    assert models.resident == [keys[1]]
    with models.use(keys[0]) as net:
        assert isinstance(net, LoadingTestFlow) and models.resident == [keys[0]]
    assert models.resident == []
    keep = folder.models(low_memory=False)
    keep[keys[0]], keep[keys[1]]
    assert keep.resident == keys


def test_bad_pipeline_json_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="pipeline.json is missing"):
        open_pipeline_folder(tmp_path)
    (tmp_path / "pipeline.json").write_text(json.dumps({"args": {"models": {"a": 3}}}))
    with pytest.raises(UserError, match="args.models"):
        open_pipeline_folder(tmp_path)
    (tmp_path / "pipeline.json").write_text("{")
    with pytest.raises(UserError, match="cannot read"):
        open_pipeline_folder(tmp_path)
    (tmp_path / "pipeline.json").write_text(json.dumps({"args": {"models": {}}}))
    with pytest.raises(UserError, match="shape_slat_normalization"):
        open_pipeline_folder(tmp_path).latent_normalization("shape_slat")


# --- the real classes, with the reference fixtures' weights under their official names ---------

E2E_FOLDER_ARGS = {"default_pipeline_type": "1024_cascade"}


def e2e_stages(fixture) -> dict[str, StageWeights]:
    """The seven stages of ``pipeline_e2e_tiny`` with the recorded (random) weights."""
    stages = {}
    for key, spec in fixture.meta["model_args"].items():
        weights = fixture.weights(f"w.{key}.")
        assert weights, key
        stages[key] = StageWeights(weights, spec["name"], spec["args"])
    return stages


def assert_loaded(folder, stages) -> None:
    for key, stage in stages.items():
        model = folder.load(key)
        assert type(model).__name__ == stage.name
        loaded = model.state_dict()
        assert set(loaded) - set(stage.weights) <= {"rope_phases"}, key
        for name, value in stage.weights.items():
            assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), (key, name)


def test_tiny_pipeline_of_real_classes_in_both_official_layouts(reference, tmp_path, monkeypatch):
    fixture = reference("pipeline_e2e_tiny")
    stages = e2e_stages(fixture)
    assert set(stages) == set(PIXAL3D_STAGES)
    args = dict(E2E_FOLDER_ARGS, **fixture.meta["normalization"])

    pixal3d = write_pipeline_folder(tmp_path / "Pixal3D", stages, PipelineConfig("Trellis2ImageTo3DPipeline").with_settings(args))
    assert pixal3d.missing() == []
    assert_loaded(pixal3d, stages)
    mean, std = pixal3d.latent_normalization("tex_slat")
    assert mean.tolist() == pytest.approx(fixture.meta["normalization"]["tex_slat_normalization"]["mean"])

    root = tmp_path / "models"
    monkeypatch.setenv("PIXAL3D_MODELS", str(root))
    decoder = stages["sparse_structure_decoder"]
    hub = "microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16"
    others = {k: v for k, v in stages.items() if k != "sparse_structure_decoder"}
    others["tex_slat_flow_model_512"] = stages["tex_slat_flow_model_1024"]
    trellis = write_pipeline_folder(root / "TRELLIS.2-4B", others, PipelineConfig().with_settings(dict(args, models={"sparse_structure_decoder": hub})))
    assert [line.split(":")[0] for line in trellis.missing()] == ["sparse_structure_decoder"]
    save_model(decoder.weights, root / "TRELLIS-image-large" / "ckpts" / "ss_dec_conv3d_16l8_fp16", decoder.name, decoder.args)
    trellis = open_pipeline_folder(resolve_model_folder("trellis2"))
    assert trellis.missing() == []
    assert_loaded(trellis, dict(stages, tex_slat_flow_model_512=stages["tex_slat_flow_model_1024"]))


@torch.no_grad()
def test_ss_flow_loaded_from_checkpoint_matches_reference(reference, tmp_path):
    from tests.helpers import assert_close

    fixture = reference("ss_flow_tiny_proj")
    bf16 = reference("ss_flow_tiny_proj_bf16")
    cond = {"global": fixture["cond_global"], "proj": fixture["cond_proj"]}
    save_model(fixture.weights(), tmp_path / "fp32", "SparseStructureFlowModel", fixture.meta["args"])
    save_model(fixture.weights(), tmp_path / "bf16", "SparseStructureFlowModel", bf16.meta["args"])

    model = load_model(tmp_path / "fp32")
    phases = torch.complex(fixture["rope_phases_real"], fixture["rope_phases_imag"])
    assert_close(torch.view_as_real(model.rope_phases), torch.view_as_real(phases), 1e-6, "rope_phases")
    assert_close(model(fixture["x"], fixture["t"], cond), fixture["out"], 1e-4, "fp32 out")

    model = load_model(tmp_path / "bf16")  # fp32 file → bf16 block weights, as the class gives them
    assert model.blocks[0].self_attn.to_qkv.weight.dtype == torch.bfloat16
    assert model.input_layer.weight.dtype == torch.float32
    assert_close(model(fixture["x"], fixture["t"], cond), bf16["out_bf16model"], 3e-2, "bf16 out")

    model = load_model(tmp_path / "bf16", dtype="float32")  # forced: the bf16 class computes in float32
    assert model.dtype == torch.float32
    assert_close(model(fixture["x"], fixture["t"], cond), fixture["out"], 1e-4, "forced fp32 out")


def test_unknown_argument_of_a_kwargs_class_is_a_user_error():
    args = {"resolution": 8, "in_channels": 8, "model_channels": 64, "cond_channels": 32, "out_channels": 8,
            "num_blocks": 1, "num_heads": 4, "not_an_option": 3}
    with pytest.raises(UserError, match="cannot build SparseStructureFlowModel.*not_an_option"):
        build_model("SparseStructureFlowModel", args, device="meta")
    with pytest.raises(UserError, match="cannot build SparseStructureFlowModel.*pe_mode"):
        build_model("SparseStructureFlowModel", {k: v for k, v in args.items() if k != "not_an_option"} | {"pe_mode": "ape"}, device="meta")
