"""Every official checkpoint config (``reference/manifests``) built through the loader's build path.

``build_on_meta`` must give exactly the manifest's state-dict keys, shapes, dtypes and kinds, and a
checkpoint file with the official key set (header-only, data region left sparse) must pass the
strict header check that ``load_model`` and ``pixal3d inspect`` run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pixal3d.models.loading import build_on_meta, check_checkpoint, is_recomputed, open_checkpoint
from tests.helpers import REFERENCE

MANIFESTS = sorted(p for p in (REFERENCE / "manifests").glob("*.json") if p.name != "INDEX.json")

#: torch dtype name → safetensors dtype name
ST_NAMES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
ITEMSIZE = {"F32": 4, "BF16": 2, "F16": 2}


def load_manifest(path: Path) -> dict:
    return json.loads(path.read_text())


def write_header_only_checkpoint(stem: Path, name: str, args: dict, entries: dict[str, tuple[str, list[int]]]) -> None:
    """``{stem}.json`` + a valid ``{stem}.safetensors`` whose data region is a sparse hole (no disk, no RAM).

    ``entries``: key → (safetensors dtype name, shape).
    """
    header, offset = {}, 0
    for key, (dtype, shape) in entries.items():
        size = math.prod(shape) * ITEMSIZE[dtype]
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    weights = stem.with_name(stem.name + ".safetensors")
    weights.parent.mkdir(parents=True, exist_ok=True)
    with open(weights, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    stem.with_name(stem.name + ".json").write_text(json.dumps({"name": name, "args": args}))


def official_entries(manifest: dict) -> dict[str, tuple[str, list[int]]]:
    """The manifest's keys as stored in a released file (derived ``rope_phases`` left out)."""
    return {k: (ST_NAMES[v["dtype"]], v["shape"]) for k, v in manifest["keys"].items() if not is_recomputed(k)}


def test_every_manifest_is_covered():
    assert {p.stem for p in MANIFESTS} >= {
        "ss_flow_img_dit_1_3B_64_bf16", "ss_dec_conv3d_16l8_fp16", "slat_flow_img2shape_dit_1_3B_512_bf16",
        "slat_flow_img2shape_dit_1_3B_1024_bf16", "slat_flow_imgshape2tex_dit_1_3B_1024_bf16",
        "shape_dec_next_dc_f16c32_fp16", "tex_dec_next_dc_f16c32_fp16",
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.stem for p in MANIFESTS])
def test_meta_build_matches_manifest(path, tmp_path):
    manifest = load_manifest(path)
    stem = tmp_path / manifest["file_stem"]
    write_header_only_checkpoint(stem, manifest["name"], manifest["args"], official_entries(manifest))
    model, mismatches = check_checkpoint(stem)
    assert mismatches.ok, mismatches.summary()

    state = model.state_dict(keep_vars=True)
    assert set(state) == set(manifest["keys"])
    buffers = {name for name, _ in model.named_buffers()}
    for key, entry in manifest["keys"].items():
        tensor = state[key]
        assert tensor.is_meta, key
        assert list(tensor.shape) == entry["shape"], key
        assert str(tensor.dtype).removeprefix("torch.") == entry["dtype"], key
        assert (key in buffers) == (entry["kind"] == "buffer"), key
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]
    assert open_checkpoint(stem).num_params == manifest["num_params"]


def test_meta_build_uses_no_rng_and_no_memory():
    manifest = load_manifest(REFERENCE / "manifests" / "ss_flow_img_dit_1_3B_64_bf16.json")
    before = torch.get_rng_state()
    model = build_on_meta(manifest["name"], manifest["args"])
    assert torch.equal(before, torch.get_rng_state())
    assert all(t.is_meta for t in model.state_dict().values())
