"""The one GLB JSON reader and rewriter: files and bytes, complete and truncated files, every refusal a UserError."""

from __future__ import annotations

import io
import struct

import pytest
import trimesh

from pixal3d.core.glb import read_glb_json, replace_glb_json
from pixal3d.errors import UserError


@pytest.fixture(scope="module")
def glb_bytes():
    return trimesh.creation.box().export(file_type="glb")


def test_reads_the_json_chunk_of_a_file_and_of_bytes(glb_bytes, tmp_path):
    path = tmp_path / "box.glb"
    path.write_bytes(glb_bytes)
    tree = read_glb_json(path, complete=True)
    assert tree["asset"]["version"] == "2.0" and len(tree["meshes"]) == 1
    assert read_glb_json(glb_bytes) == tree == read_glb_json(str(path))


def test_truncated_files_pass_only_when_completeness_is_not_asked(glb_bytes, tmp_path):
    path = tmp_path / "cut.glb"
    path.write_bytes(glb_bytes[:-8])  # the binary chunk is cut, the JSON is whole
    assert read_glb_json(path)["asset"]["version"] == "2.0"
    with pytest.raises(UserError, match="truncated"):
        read_glb_json(path, complete=True)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"PNG\0" + b[4:], "not a binary glTF"),
    (lambda b: b[:16] + b"BIN\0" + b[20:], "first GLB chunk is not JSON"),
    (lambda b: b[:12] + struct.pack("<I", len(b)) + b[16:], "does not fit"),
    (lambda b: b[:20] + b"{" * 4 + b[24:], "does not parse"),
    (lambda b: b[:10], "not a binary glTF"),
])
def test_damaged_files_are_one_line_errors(glb_bytes, tmp_path, damage, message):
    path = tmp_path / "bad.glb"
    path.write_bytes(damage(glb_bytes))
    with pytest.raises(UserError, match=message):
        read_glb_json(path)
    with pytest.raises(UserError, match="cannot read"):
        read_glb_json(tmp_path / "missing.glb")


def test_replacing_the_json_chunk_keeps_the_binary_chunk(glb_bytes):
    gltf = read_glb_json(glb_bytes)
    gltf["asset"]["generator"] = "pixal3d test ünïcode"
    out = replace_glb_json(glb_bytes, gltf)
    assert read_glb_json(out, complete=True) == gltf
    old_len, new_len = (struct.unpack_from("<I", b, 12)[0] for b in (glb_bytes, out))
    assert out[20 + new_len:] == glb_bytes[20 + old_len:]  # the BIN chunk, byte for byte
    assert len(out) % 4 == 0
    scene = trimesh.load(io.BytesIO(out), file_type="glb", force="scene")
    assert len(scene.geometry) == len(trimesh.load(io.BytesIO(glb_bytes), file_type="glb", force="scene").geometry)
