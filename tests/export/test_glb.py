from __future__ import annotations


import numpy as np
import pytest
import trimesh

from pixal3d.core.glb import read_glb_json
from pixal3d.core.render import glb_camera, load_render_meshes, render
from pixal3d.export.glb import (ExportOptions, asset_to_glb, choose_alpha_mode, default_face_budget,
                                default_texture_size)
from tests.clients import assert_valid_gltf, blender_import
from tests.export.conftest import DISTANCE, FOV, sphere_asset


def test_choose_alpha_mode():
    assert choose_alpha_mode(np.ones(1000)) == ("OPAQUE", None)
    binary = np.r_[np.zeros(500), np.ones(480), np.full(20, 0.5)]
    assert choose_alpha_mode(binary) == ("MASK", 0.5)
    assert choose_alpha_mode(np.linspace(0, 1, 1000))[0] == "BLEND"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One GLB per alpha kind plus an official-orientation one."""
    out = tmp_path_factory.mktemp("glb")
    files = {}
    for kind, res in (("opaque", 32), ("binary", 64), ("soft", 32)):
        files[kind] = out / f"{kind}.glb"
        result = asset_to_glb(sphere_asset(kind, res), files[kind], ExportOptions(texture_size=128), progress=False)
        assert set(result.timings) == {"mesh", "cleanup", "simplify", "unwrap", "bake", "inpaint", "write"}
    files["official"] = out / "official.glb"
    asset_to_glb(sphere_asset("opaque"), files["official"], ExportOptions(texture_size=128, official_orientation=True),
                 progress=False)
    return files


def test_material_and_alpha_modes(written):
    for kind, mode in (("opaque", "OPAQUE"), ("binary", "MASK"), ("soft", "BLEND")):
        gltf = read_glb_json(written[kind])
        (material,) = gltf["materials"]
        pbr = material["pbrMetallicRoughness"]
        assert "baseColorTexture" in pbr and "metallicRoughnessTexture" in pbr
        assert pbr.get("metallicFactor", 1.0) == 1.0 and pbr.get("roughnessFactor", 1.0) == 1.0
        assert pbr.get("baseColorFactor", [1, 1, 1, 1]) == [1, 1, 1, 1]
        assert material.get("alphaMode", "OPAQUE") == mode
        assert ("alphaCutoff" in material) == (mode == "MASK")
        attributes = gltf["meshes"][0]["primitives"][0]["attributes"]
        assert {"POSITION", "NORMAL", "TEXCOORD_0"} <= set(attributes)
        assert len(gltf["images"]) == 2


def test_textures_hold_the_voxel_attributes(written):
    (mesh,) = [m for m in trimesh.load(written["opaque"], force="scene").geometry.values()]
    material = mesh.visual.material
    mr = np.asarray(material.metallicRoughnessTexture)
    assert np.all(mr[..., 0] == 0)
    assert np.abs(np.median(mr[..., 1]) - int(0.7 * 255)) <= 1  # roughness in G
    assert np.abs(np.median(mr[..., 2]) - int(0.2 * 255)) <= 1  # metallic in B
    base = np.asarray(material.baseColorTexture)
    assert base.shape[2] == 4 and base[..., 3].min() >= 250  # opaque (float32 1.0 may truncate to 254)


def test_orientation_and_camera_node(written):
    # default: voxel frame as is (sphere centre at +x), camera on +z looking at the centre
    v = np.concatenate([m.vertices for m in load_render_meshes(written["opaque"])])
    assert abs(v.mean(0)[0] - 0.1) < 0.01 and abs(v.mean(0)[2]) < 0.01
    cam = glb_camera(written["opaque"])
    np.testing.assert_allclose(cam.cam_to_world[:3, 3], [0, 0, DISTANCE], atol=1e-6)
    assert cam.fov_y == pytest.approx(FOV)
    # official: (x, y, z) → (−x, y, −z), the camera turns with the object
    v = np.concatenate([m.vertices for m in load_render_meshes(written["official"])])
    assert abs(v.mean(0)[0] + 0.1) < 0.01
    cam = glb_camera(written["official"])
    np.testing.assert_allclose(cam.cam_to_world[:3, 3], [0, 0, -DISTANCE], atol=1e-6)
    # both files look identical through their own cameras
    a = render(load_render_meshes(written["opaque"]), glb_camera(written["opaque"]), 96, "mask")
    b = render(load_render_meshes(written["official"]), glb_camera(written["official"]), 96, "mask")
    assert (a & b).sum() / (a | b).sum() > 0.99
    # +Y up: the camera's up vector is +Y and the sphere is centred at y = 0 in the image
    np.testing.assert_allclose(glb_camera(written["opaque"]).cam_to_world[:3, 1], [0, 1, 0], atol=1e-9)
    rows = np.nonzero(a.any(1))[0]
    assert abs((rows.min() + rows.max() + 1) / 2 - 48) <= 1


def test_real_clients_accept_the_files(written):
    for path in written.values():
        assert_valid_gltf(path)
    reports = blender_import(list(written.values()))
    for kind, report in zip(written, reports):
        assert report["result"] == ["FINISHED"]
        assert len(report["meshes"]) == 1 and len(report["cameras"]) == 1
        # glTF +Z (toward the input camera) is Blender −Y; the official file puts it on +Y
        y = report["cameras"][0]["location"][1]
        assert y == pytest.approx(DISTANCE if kind == "official" else -DISTANCE, abs=1e-4)
        assert report["cameras"][0]["angle_y"] == pytest.approx(FOV, abs=1e-5)
        (material,) = report["materials"]
        linked = material["linked"]
        assert linked["Base Color"] and linked["Metallic"] and linked["Roughness"]
        assert linked["Alpha"] == (kind in ("binary", "soft"))


def test_vertex_normals_are_unit_even_on_degenerate_faces():
    import numpy as np

    from pixal3d.export.glb import unit_vertex_normals

    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 2, 2], [3, 3, 3], [4, 4, 4]], dtype=np.float64)
    faces = np.array([[0, 1, 2], [3, 4, 5]])  # the second face is a zero-area sliver
    normals = unit_vertex_normals(vertices, faces)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    assert np.allclose(normals[0], [0, 0, 1])
    assert normals[5] @ (vertices[5] - vertices.mean(0)) > 0  # outward fallback


def test_export_progress_callback(tmp_path):
    events = []
    result = asset_to_glb(sphere_asset(), tmp_path / "p.glb", ExportOptions(texture_size=64, decimation_target=500),
                          progress=lambda *e: events.append(e))
    total = len(result.timings) - 1  # inpaint is timed inside the bake stage
    assert events == [("export", i, total) for i in range(total + 1)]


def test_default_texture_size_and_face_budget_follow_the_resolution():
    # 4 texels per voxel edge as a power of two in [256, 2048]; the official 1e6 faces at 1024³ scaled by (R/1024)²
    assert [default_texture_size(r) for r in (32, 64, 128, 256, 512, 1024, 1536)] == [256, 256, 512, 1024, 2048, 2048, 2048]
    assert [default_face_budget(r) for r in (32, 128, 256, 448, 1024)] == [10_000, 15_625, 62_500, 191_406, 200_000]
    assert default_face_budget(512) == 200_000  # the former fixed default, kept for official-size grids
    options = ExportOptions().for_resolution(128)
    assert (options.texture_size, options.decimation_target) == (512, 15_625)
    given = ExportOptions(texture_size=64, decimation_target=500).for_resolution(1024)
    assert (given.texture_size, given.decimation_target) == (64, 500)


def test_default_options_bake_the_resolutions_texture_size(tmp_path):
    path = tmp_path / "auto.glb"
    asset_to_glb(sphere_asset("opaque", 64), path, progress=False)
    (mesh,) = trimesh.load(path, force="scene").geometry.values()
    assert np.asarray(mesh.visual.material.baseColorTexture).shape[:2] == (256, 256)
