"""Procedural assets: reproducibility, validity of every GLB, variety, resumability, preview renderer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from pixal3d.core.camera import Camera, look_at
from pixal3d.data import preview, synth
from pixal3d.errors import UserError

SEED = 7
COUNT = 30


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    result = synth.synthesize(COUNT, out, seed=SEED, workers=2, sheet=True)
    manifest = json.loads(result.manifest.read_text())
    return out, result, manifest


def _merged_watertight(mesh: trimesh.Trimesh) -> bool:
    # vertices are split along UV seams and sharp edges; the surface is closed once positions are merged
    geom = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    geom.merge_vertices(merge_tex=True, merge_norm=True)
    return bool(geom.is_watertight)


def test_same_seed_same_bytes_whatever_count_or_workers(dataset, tmp_path):
    out, result, _ = dataset
    assert result.written == COUNT and result.skipped == 0
    small = synth.synthesize(3, tmp_path, seed=SEED, workers=1, sheet=False)
    assert small.sheet is None
    for i in range(3):
        name = synth.asset_name(SEED, i)
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()
    recipe, scene = synth.generate(SEED, 5)  # in-process generation matches the pool's file too
    assert synth.glb_bytes(scene) == (out / synth.asset_name(SEED, 5)).read_bytes()


def test_different_seeds_differ(dataset):
    out, _, _ = dataset
    for i in range(3):
        other = synth.glb_bytes(synth.generate(SEED + 1, i)[1])
        assert other != (out / synth.asset_name(SEED, i)).read_bytes()
    assert synth.sample_recipe(SEED, 0) != synth.sample_recipe(SEED + 1, 0)


def test_every_asset_is_valid(dataset):
    out, _, manifest = dataset
    assert [a["index"] for a in manifest["assets"]] == list(range(COUNT))
    for entry in manifest["assets"]:
        path = out / entry["file"]
        assert entry["file"] == f"synth_{SEED:04d}_{entry['index']:06d}.glb"
        recipe = entry["recipe"]
        assert synth.stored_recipe(path, SEED, entry["index"]) == recipe  # the GLB carries its recipe
        scene = trimesh.load(path, file_type="glb")
        geoms = list(scene.dump())
        assert len(geoms) == len(recipe["parts"])
        lo, hi = scene.bounds
        assert np.all(lo >= -0.5 - 1e-6) and np.all(hi <= 0.5 + 1e-6)
        assert np.max(hi - lo) == pytest.approx(recipe["longest_side"], abs=1e-4)
        assert 0.9 <= recipe["longest_side"] <= 1.0
        parts = {p["name"]: p for p in recipe["parts"]}
        for geom in geoms:
            assert 4 <= len(geom.faces) <= 200_000
            assert geom.area > 1e-3
            assert np.isfinite(geom.vertices).all()
            name = geom.metadata.get("name", "").split("_", 1)[-1]
            part = parts[name]
            if part["watertight"]:
                assert _merged_watertight(geom), (entry["file"], name)
            assert geom.visual.uv is not None and len(geom.visual.uv) == len(geom.vertices)


def test_materials_have_pbr_fields_and_alpha(dataset):
    out, _, manifest = dataset
    for entry in manifest["assets"]:
        tree = synth.glb_json(out / entry["file"])
        recipe = entry["recipe"]
        assert len(tree["materials"]) == len({p["material"] for p in recipe["parts"]})
        by_name = {m["name"]: m for m in tree["materials"]}
        for slot, spec in enumerate(recipe["materials"]):
            if f"material{slot}" not in by_name:
                continue  # slot sampled but used by no part
            mat = by_name[f"material{slot}"]
            pbr = mat["pbrMetallicRoughness"]
            assert {"baseColorFactor", "metallicFactor", "roughnessFactor"} <= set(pbr)
            if spec["mr_texture"] is None:
                assert pbr["metallicFactor"] == pytest.approx(spec["metallic"])
                assert pbr["roughnessFactor"] == pytest.approx(spec["roughness"])
            else:
                assert "metallicRoughnessTexture" in pbr and pbr["metallicFactor"] == 1.0
            assert ("baseColorTexture" in pbr) == (spec["pattern"] != "solid" or spec["alpha_texture"] is not None)
            assert mat.get("alphaMode", "OPAQUE") == spec["alpha_mode"]
            if spec["alpha_mode"] == "MASK":
                assert mat["alphaCutoff"] == pytest.approx(0.5) and "baseColorTexture" in pbr
            if spec["alpha_mode"] == "BLEND":
                assert pbr["baseColorFactor"][3] < 1.0 or "baseColorTexture" in pbr


def test_variety(dataset):
    _, _, manifest = dataset
    recipes = [a["recipe"] for a in manifest["assets"]]
    materials = [m for r in recipes for m in r["materials"]]
    assert len({r["category"] for r in recipes}) >= 5
    assert len({k for r in recipes for k in r["shape_kinds"]}) >= 8
    assert any(len(r["parts"]) >= 3 for r in recipes)
    patterns = {m["pattern"] for m in materials}
    assert "solid" in patterns and len(patterns - {"solid"}) >= 3
    metallic = [m["metallic"] for m in materials]
    assert min(metallic) < 0.1 and max(metallic) > 0.85
    rough = [m["roughness"] for m in materials]
    assert max(rough) - min(rough) > 0.6
    assert any(m["alpha_mode"] != "OPAQUE" for m in materials)
    assert any(m["mr_texture"] for m in materials)
    assert any(not p["watertight"] for r in recipes for p in r["parts"]) or COUNT < 30


def test_resume_keeps_valid_files_and_remakes_broken_ones(dataset):
    out, _, manifest = dataset
    target = out / synth.asset_name(SEED, 3)
    good = target.read_bytes()
    keep = out / synth.asset_name(SEED, 4)
    stamp = keep.stat().st_mtime_ns
    target.write_bytes(good[: len(good) // 2])  # an interrupted write
    result = synth.synthesize(COUNT, out, seed=SEED, workers=2, sheet=False)
    assert (result.written, result.skipped) == (1, COUNT - 1)
    assert target.read_bytes() == good
    assert keep.stat().st_mtime_ns == stamp
    assert json.loads(result.manifest.read_text())["assets"] == manifest["assets"]


def test_contact_sheet(dataset):
    out, result, _ = dataset
    sheet = Image.open(result.sheet)
    cols = int(np.ceil(np.sqrt(COUNT)))
    assert sheet.size == (cols * synth.SHEET_TILE, int(np.ceil(COUNT / cols)) * synth.SHEET_TILE)
    pixels = np.asarray(sheet.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10  # objects were drawn, not just the background


def test_bad_arguments(tmp_path):
    with pytest.raises(UserError):
        synth.synthesize(0, tmp_path)
    with pytest.raises(UserError):
        synth.synthesize(2, tmp_path, seed=-1)
    with pytest.raises(UserError):
        synth.synthesize(2, tmp_path, workers=0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError):
        synth.synthesize(2, blocker / "sub")
    assert not any(p.suffix == ".glb" for p in tmp_path.rglob("*"))


def _quad(z: float, half: float, color, alpha_mode="OPAQUE", alpha=1.0) -> trimesh.Trimesh:
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], dtype=np.float64)
    mat = trimesh.visual.material.PBRMaterial(baseColorFactor=list(color) + [alpha], metallicFactor=0.0, roughnessFactor=1.0,
                                              alphaMode=alpha_mode)
    visual = trimesh.visual.TextureVisuals(uv=np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64), material=mat)
    return trimesh.Trimesh(v, [[0, 1, 2], [0, 2, 3]], visual=visual, process=False)


def test_preview_coverage_and_blending():
    ortho = Camera.orthographic(look_at(np.array([0.0, 0.0, 3.0]), np.zeros(3)), 0.5)
    scene = trimesh.Scene([_quad(0.0, 0.25, (1.0, 0.0, 0.0))])
    img = preview.render_scene(scene, 64, camera=ortho)
    assert img.shape == (64, 64, 4) and img.dtype == np.uint8
    assert (img[..., 3] > 0).sum() == 32 * 32  # pixel centres inside [-0.25, 0.25]²
    assert img[32, 32, 0] > 100 and img[32, 32, 1] < 20
    # a half-transparent green quad in front of the red one: both contribute, order-independently
    front = _quad(0.1, 0.25, (0.0, 1.0, 0.0), "BLEND", 0.5)
    a = preview.render_scene(trimesh.Scene([scene.dump()[0], front]), 64, camera=ortho)
    b = preview.render_scene(trimesh.Scene([front, _quad(0.0, 0.25, (1.0, 0.0, 0.0))]), 64, camera=ortho)
    assert np.array_equal(a, b)
    assert a[32, 32, 0] > 30 and a[32, 32, 1] > 30 and a[32, 32, 3] == 255


def test_front_camera_frames_unit_cube_half_width():
    # the official distance maps x = ±0.5 on the z = 0 plane to the image's left and right edges
    cam = preview.front_camera()
    assert cam.cam_to_world[2, 3] == pytest.approx(1.0 / (2.0 * np.tan(preview.DEFAULT_FOV_X / 2.0)))
    img = preview.render_scene(trimesh.Scene([_quad(0.0, 0.5, (0.5, 0.5, 0.5))]), 32, camera=cam)
    assert (img[..., 3] == 255).all()
    img = preview.render_scene(trimesh.Scene([_quad(0.0, 0.45, (0.5, 0.5, 0.5))]), 40, camera=cam)
    assert (img[..., 3] > 0).sum() == 36 * 36
