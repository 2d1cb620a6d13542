"""Other formats from a GLB (OBJ/MTL/PNG, PLY, STL, USDZ): each read back by its own reader."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import trimesh
from PIL import Image

from pixal3d.errors import UserError
from pixal3d.export.formats import format_files, parse_formats, planned_names, usd_available
from pixal3d.export.glb import ExportOptions, asset_to_glb
from tests.export.conftest import sphere_asset


@pytest.fixture(scope="module")
def glb(tmp_path_factory):
    path = tmp_path_factory.mktemp("formats") / "sphere.glb"
    asset_to_glb(sphere_asset(), path, ExportOptions(texture_size=64, decimation_target=500), progress=False)
    scene = trimesh.load(path, force="scene", process=False)
    mesh = next(iter(scene.geometry.values()))
    return path, mesh


def _write(files: dict[str, bytes], folder):
    for name, data in files.items():
        (folder / name).write_bytes(data)


def test_parse_formats():
    assert parse_formats(None) == ["glb"]
    assert parse_formats(["STL,obj", "ply"]) == ["glb", "obj", "ply", "stl"]
    with pytest.raises(UserError, match="unknown format fbx"):
        parse_formats(["fbx"])


def test_obj_mtl_png_round_trip(glb, tmp_path):
    path, mesh = glb
    files = format_files(path, ["glb", "obj"], "out")
    assert sorted(files) == sorted(planned_names("obj", "out"))
    _write(files, tmp_path)
    assert "map_Kd out_basecolor.png" in (tmp_path / "out.mtl").read_text()
    back = trimesh.load(tmp_path / "out.obj", process=False, force="mesh")
    assert len(back.faces) == len(mesh.faces)
    assert np.allclose(back.bounds, mesh.bounds, atol=1e-6)
    texture = back.visual.material.image
    assert texture is not None and texture.size == (64, 64)  # the base colour came back through the MTL
    assert np.asarray(Image.open(tmp_path / "out_basecolor.png")).shape == (64, 64, 4)


def test_ply_round_trip_with_vertex_colours(glb):
    path, mesh = glb
    data = format_files(path, ["ply"], "out")["out.ply"]
    back = trimesh.load(io.BytesIO(data), file_type="ply", process=False)
    assert len(back.vertices) == len(mesh.vertices) and len(back.faces) == len(mesh.faces)
    assert np.allclose(back.vertices, mesh.vertices, atol=1e-6)
    colors = back.visual.vertex_colors[:, :3].astype(float)
    # the sphere's texture is a colour ramp: the vertex colours vary (not a constant default colour)
    assert back.visual.kind == "vertex" and colors.std(axis=0).max() > 10


def test_stl_round_trip(glb):
    path, mesh = glb
    data = format_files(path, ["stl"], "out")["out.stl"]
    back = trimesh.load(io.BytesIO(data), file_type="stl", process=False)
    assert len(back.faces) == len(mesh.faces)
    assert np.allclose(back.bounds, mesh.bounds, atol=1e-5)


def test_usdz_round_trip_and_validators(glb, tmp_path):
    if not usd_available():
        pytest.skip("usd-core is not installed (pip install usd-core, or bash scripts/setup.sh --dev)")
    from pxr import Usd, UsdGeom, UsdShade, UsdValidation

    path, mesh = glb
    data = format_files(path, ["usdz"], "out")["out.usdz"]
    usdz = tmp_path / "out.usdz"
    usdz.write_bytes(data)
    names = zipfile.ZipFile(usdz).namelist()
    assert names[0] == "out.usdc" and "out_basecolor0.png" in names and "out_metallicroughness0.png" in names
    stage = Usd.Stage.Open(str(usdz))
    assert UsdGeom.GetStageUpAxis(stage) == "Y" and UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    prims = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert len(prims) == 1
    points = np.asarray(prims[0].GetPointsAttr().Get())
    assert points.shape == mesh.vertices.shape and np.allclose(points, mesh.vertices, atol=1e-6)
    assert len(prims[0].GetFaceVertexCountsAttr().Get()) == len(mesh.faces)
    material, _ = UsdShade.MaterialBindingAPI(prims[0].GetPrim()).ComputeBoundMaterial()
    surface = material.ComputeSurfaceSource()[0]
    for name in ("diffuseColor", "roughness", "metallic"):
        source = surface.GetInput(name).GetConnectedSources()[0][0].source
        texture = UsdShade.Shader(source.GetPrim())
        assert texture.GetIdAttr().Get() == "UsdUVTexture", name
        assert texture.GetInput("file").Get().resolvedPath, f"{name}: texture not found in the package"
    registry = UsdValidation.ValidationRegistry()
    errors = UsdValidation.ValidationContext(registry.GetOrLoadAllValidators()).Validate(stage)
    assert not errors, [e.GetErrorAsString() for e in errors]


def test_usdz_without_usd_core_is_one_clear_line(monkeypatch):
    import pixal3d.export.formats as formats

    monkeypatch.setattr(formats, "usd_available", lambda: False)
    with pytest.raises(UserError, match="pip install usd-core"):
        formats.parse_formats(["usdz"])
