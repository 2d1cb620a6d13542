"""``pixal3d inspect``: listing, strict header checks and exit codes.

Full-size official folders are simulated with header-only safetensors files (sparse data region),
so the checks run on the real 1.3B-parameter key sets without writing gigabytes.
"""

from __future__ import annotations

import json
import time

import pytest

from pixal3d.cli import main
from tests.models.test_manifests import (
    REFERENCE,
    load_manifest,
    official_entries,
    write_header_only_checkpoint,
)

#: pipeline key → official file stem (TencentARC/Pixal3D)
PIXAL3D_CKPTS = {
    "sparse_structure_flow_model": "ss_flow_img_dit_1_3B_64_bf16",
    "sparse_structure_decoder": "ss_dec_conv3d_16l8_fp16",
    "shape_slat_flow_model_512": "slat_flow_img2shape_dit_1_3B_512_bf16",
    "shape_slat_flow_model_1024": "slat_flow_img2shape_dit_1_3B_1024_bf16",
    "shape_slat_decoder": "shape_dec_next_dc_f16c32_fp16",
    "tex_slat_flow_model_1024": "slat_flow_imgshape2tex_dit_1_3B_1024_bf16",
    "tex_slat_decoder": "tex_dec_next_dc_f16c32_fp16",
}

PIPELINE_ARGS = {
    "sparse_structure_sampler": {"name": "FlowEulerGuidanceIntervalSampler", "args": {"sigma_min": 1e-5},
                                 "params": {"steps": 12, "guidance_strength": 7.5}},
    "shape_slat_normalization": {"mean": [0.0] * 32, "std": [1.0] * 32},
    "default_pipeline_type": "1536_cascade",
    "rembg_model": {"name": "BiRefNet", "args": {"model_name": "briaai/RMBG-2.0"}},
}


def write_checkpoint(stem, file_stem: str, edit=None) -> None:
    manifest = load_manifest(REFERENCE / "manifests" / f"{file_stem}.json")
    entries = official_entries(manifest)
    if edit:
        edit(entries)
    write_header_only_checkpoint(stem, manifest["name"], manifest["args"], entries)


def write_folder(folder, models: dict[str, str], skip=(), edits=None) -> None:
    """An official-layout folder: pipeline.json naming ``models`` and ckpts/ with full-size header-only files."""
    for key, spec in models.items():
        if key not in skip:
            write_checkpoint(folder / spec, PIXAL3D_CKPTS[key], (edits or {}).get(key))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.json").write_text(json.dumps(
        {"name": "Trellis2ImageTo3DPipeline", "args": dict(PIPELINE_ARGS, models=models)}))


def run(argv, capsys) -> tuple[int, str, str]:
    code = main(["inspect", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def pixal3d_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "Pixal3D"
    write_folder(folder, {k: f"ckpts/{v}" for k, v in PIXAL3D_CKPTS.items()})
    return folder


def test_full_size_pixal3d_folder_fits(pixal3d_folder, capsys):
    start = time.perf_counter()
    code, out, err = run([pixal3d_folder], capsys)
    assert code == 0, err
    assert err == ""
    assert f"model folder: {pixal3d_folder}" in out
    assert "default_pipeline_type: 1536_cascade" in out and "sampler sparse_structure: FlowEulerGuidanceIntervalSampler" in out
    assert "normalization shape_slat: 32 channels" in out and "rembg_model: BiRefNet" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in PIXAL3D_CKPTS}
    assert set(lines) == set(PIXAL3D_CKPTS)
    flow = lines["sparse_structure_flow_model"]
    assert "SparseStructureFlowModel" in flow and "1.34B" in flow and "bf16" in flow and "fp32" in flow
    assert " ok " in flow and "ckpts/ss_flow_img_dit_1_3B_64_bf16" in flow
    assert "fp16" in lines["tex_slat_decoder"] and "SparseUnetVaeDecoder" in lines["tex_slat_decoder"]
    assert time.perf_counter() - start < 30  # headers only: no tensor data is read


def test_single_checkpoint_by_stem_or_json(pixal3d_folder, capsys):
    stem = pixal3d_folder / "ckpts" / "ss_dec_conv3d_16l8_fp16"
    for target in (stem, stem.with_name(stem.name + ".json")):
        code, out, _ = run([target], capsys)
        assert code == 0
        assert f"checkpoint: {stem}" in out and "SparseStructureDecoder" in out and "73.7M" in out
    code, out, _ = run([pixal3d_folder / "ckpts"], capsys)
    assert code == 0 and out.count(" ok ") == len(PIXAL3D_CKPTS)


def test_mismatch_exits_2_with_first_mismatches(tmp_path, capsys):
    def edit(entries):
        del entries["blocks.3.mlp.mlp.0.weight"]
        entries["blocks.30.extra"] = ("F32", [4])
        entries["out_layer.weight"] = ("F32", [16, 1536])

    folder = tmp_path / "Pixal3D"
    write_folder(folder, {"sparse_structure_flow_model": "ckpts/ss_flow_img_dit_1_3B_64_bf16",
                          "sparse_structure_decoder": "ckpts/ss_dec_conv3d_16l8_fp16"},
                 edits={"sparse_structure_flow_model": edit})
    code, out, err = run([folder], capsys)
    assert code == 2
    assert "MISMATCH" in out
    message = err.strip()
    assert message.startswith("error: ") and "\n" not in message
    for part in ("ss_flow_img_dit_1_3B_64_bf16.safetensors", "missing key", "blocks.3.mlp.mlp.0.weight",
                 "unexpected key", "blocks.30.extra", "out_layer.weight file [16, 1536] vs model [8, 1536]"):
        assert part in message


def test_trellis2_folder_missing_hub_checkpoint_and_unimplemented_encoder(tmp_path, monkeypatch, capsys):
    root = tmp_path / "models"
    monkeypatch.setenv("PIXAL3D_MODELS", str(root))
    models = {k: f"ckpts/{v}" for k, v in PIXAL3D_CKPTS.items() if k.endswith("decoder")}
    models["sparse_structure_decoder"] = "microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16"
    folder = root / "TRELLIS.2-4B"
    write_folder(folder, models, skip={"sparse_structure_decoder"})
    # a class this project does not implement (every official class is implemented; this stands for a future one)
    write_header_only_checkpoint(folder / "ckpts" / "shape_enc_next_dc_f16c32_fp16", "FutureShapeEncoder", {},
                                 {"weight": ("F16", [4, 4])})
    (folder / "texturing_pipeline.json").write_text(json.dumps(
        {"name": "Trellis2TexturingPipeline", "args": {"models": {"shape_slat_encoder": "ckpts/shape_enc_next_dc_f16c32_fp16"}}}))

    code, out, err = run(["TRELLIS.2-4B"], capsys)  # a name under $PIXAL3D_MODELS
    assert code == 2
    assert "missing" in out and "not implemented" in out and "listed in texturing_pipeline.json" in out
    assert "ss_dec_conv3d_16l8_fp16.safetensors not found" in err
    assert str(root / "TRELLIS-image-large" / "ckpts") in err

    write_checkpoint(root / "TRELLIS-image-large" / "ckpts" / "ss_dec_conv3d_16l8_fp16", "ss_dec_conv3d_16l8_fp16")
    code, out, err = run(["trellis2"], capsys)  # the component name
    assert code == 0, err
    assert str(root / "TRELLIS-image-large" / "ckpts" / "ss_dec_conv3d_16l8_fp16") in out


def test_unreadable_targets_exit_2(tmp_path, capsys):
    code, _, err = run([tmp_path / "nothing-here"], capsys)
    assert code == 2 and "not found" in err
    code, _, err = run([tmp_path], capsys)
    assert code == 2 and "neither pipeline.json nor checkpoints" in err
    write_checkpoint(tmp_path / "dec", "ss_dec_conv3d_16l8_fp16")
    weights = tmp_path / "dec.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size - 1)
    code, out, err = run([tmp_path / "dec"], capsys)
    assert code == 2 and "truncated" in err and "unreadable" in out
    (tmp_path / "x.json").write_text(json.dumps({"name": "NoSuchClass", "args": {}}))
    (tmp_path / "x.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    code, out, err = run([tmp_path / "x.json"], capsys)
    assert code == 2 and "unknown model class 'NoSuchClass'" in err
