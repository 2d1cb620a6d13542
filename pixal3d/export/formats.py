"""Other mesh formats from a written GLB: OBJ (+ MTL + base-colour PNG), PLY, STL through trimesh, and USDZ
(Apple AR Quick Look) through Pixar's ``usd-core`` package.

The GLB stays the main output — it alone carries every PBR channel and the input camera. Each other format is
made by reading that GLB back (node transforms applied) and holds what the format can:

* ``obj``: ``<stem>.obj`` + ``<stem>.mtl`` + ``<stem>_basecolor.png`` (one PNG per material, suffixed with its
  number when there are several): positions, normals, UVs and the RGBA base-colour texture;
* ``ply``: binary, positions, normals and per-vertex RGBA colours sampled from the base-colour texture (so only
  as detailed as the mesh);
* ``stl``: binary, geometry only;
* ``usdz``: one ``UsdGeom.Mesh`` per primitive with a ``UsdPreviewSurface`` material (base colour and alpha, and
  roughness / metallic from the glTF metallic-roughness texture's G / B channels), ``upAxis = Y``, 1 unit = 1 m —
  an ARKit-style package (the layer first, then its textures).

All share the GLB's frame: +Y up, the input view's side facing +Z. :func:`format_files` returns the files as
bytes, so a caller writes them together with the GLB (:func:`pixal3d.utils.files.atomic_outputs`).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import trimesh

from pixal3d.errors import UserError

#: every format ``--format`` accepts (``glb`` is always written)
FORMATS = ("glb", "obj", "ply", "stl", "usdz")


def usd_available() -> bool:
    """Whether USDZ can be written (the ``usd-core`` package, module ``pxr``)."""
    try:
        from pxr import Usd  # noqa: F401
    except ImportError:
        return False
    return True


def parse_formats(values: list[str] | str | None) -> list[str]:
    """``--format`` values (repeated and/or comma-separated, any case) → the formats in :data:`FORMATS` order,
    ``glb`` first. :class:`UserError` for an unknown one or USDZ without ``usd-core``."""
    if isinstance(values, str):
        values = [values]
    asked = {v.strip().lower().lstrip(".") for value in values or [] for v in str(value).split(",") if v.strip()}
    unknown = sorted(asked - set(FORMATS))
    if unknown:
        raise UserError(f"unknown format {', '.join(unknown)} (choose from {', '.join(FORMATS)})")
    if "usdz" in asked and not usd_available():
        raise UserError("usdz needs Pixar's usd-core package: pip install usd-core (or pip install -e .[usd])")
    return ["glb"] + [f for f in FORMATS[1:] if f in asked]


def planned_names(fmt: str, stem: str) -> list[str]:
    """The file names :func:`format_files` writes for a one-material GLB (the command line's case)."""
    return {"glb": [f"{stem}.glb"], "obj": [f"{stem}.obj", f"{stem}.mtl", f"{stem}_basecolor.png"],
            "ply": [f"{stem}.ply"], "stl": [f"{stem}.stl"], "usdz": [f"{stem}.usdz"]}[fmt]


def _world_meshes(glb: str | Path | bytes) -> list[trimesh.Trimesh]:
    """The GLB's triangle primitives in world coordinates (node transforms applied), visuals kept."""
    source = io.BytesIO(glb) if isinstance(glb, bytes) else str(glb)
    scene = trimesh.load(source, file_type="glb", force="scene", process=False)
    meshes = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geom = scene.geometry[name]
        if isinstance(geom, trimesh.Trimesh) and len(geom.faces):
            mesh = geom.copy()
            mesh.apply_transform(transform)
            mesh.metadata["name"] = node
            meshes.append(mesh)
    if not meshes:
        raise UserError("the GLB holds no triangles to convert")
    return meshes


def _material(mesh: trimesh.Trimesh):
    material = getattr(mesh.visual, "material", None)
    if material is None:
        return None
    return material.to_pbr() if hasattr(material, "to_pbr") else material


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def obj_files(meshes: list[trimesh.Trimesh], stem: str) -> dict[str, bytes]:
    """``<stem>.obj``, ``<stem>.mtl`` and the base-colour PNG(s) (trimesh's OBJ writer)."""
    scene = trimesh.Scene()
    for i, mesh in enumerate(meshes):
        mesh = mesh.copy()
        material = _material(mesh)
        if material is not None:
            material.name = f"{stem}_basecolor" + (f"{i}" if len(meshes) > 1 else "")
            mesh.visual.material = material
        scene.add_geometry(mesh, geom_name=f"{stem}_{i}")
    text, files = trimesh.exchange.obj.export_obj(scene, include_normals=True, include_texture=True,
                                                  return_texture=True, mtl_name=f"{stem}.mtl")
    out = {f"{stem}.obj": text.encode("utf-8")}
    out.update({name: bytes(data) for name, data in files.items()})
    return out


def _colored(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """``mesh`` with per-vertex colours (the base-colour texture sampled at each vertex's UV, times its factor)."""
    colors = None
    if getattr(mesh.visual, "kind", None) == "texture":
        colors = mesh.visual.to_color().vertex_colors
    elif getattr(mesh.visual, "kind", None) == "vertex":
        colors = mesh.visual.vertex_colors
    return trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_normals=mesh.vertex_normals, vertex_colors=colors,
                           process=False)


def ply_bytes(meshes: list[trimesh.Trimesh]) -> bytes:
    """Binary PLY of all primitives: positions, normals, RGBA vertex colours."""
    merged = trimesh.util.concatenate([_colored(m) for m in meshes])
    return merged.export(file_type="ply", encoding="binary", vertex_normal=True)


def stl_bytes(meshes: list[trimesh.Trimesh]) -> bytes:
    """Binary STL of all primitives (geometry only)."""
    merged = trimesh.util.concatenate([trimesh.Trimesh(m.vertices, m.faces, process=False) for m in meshes])
    return merged.export(file_type="stl")


def usdz_bytes(meshes: list[trimesh.Trimesh], stem: str) -> bytes:
    """A USDZ package: one mesh prim + ``UsdPreviewSurface`` material per primitive, textures inside."""
    if not usd_available():
        raise UserError("usdz needs Pixar's usd-core package: pip install usd-core (or pip install -e .[usd])")
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdUtils, Vt

    with tempfile.TemporaryDirectory(prefix="pixal3d-usdz-") as work:
        work = Path(work)
        layer = work / f"{stem}.usdc"
        stage = Usd.Stage.CreateNew(str(layer))
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
        UsdGeom.SetStageMetersPerUnit(stage, 1.0)
        root = UsdGeom.Xform.Define(stage, "/Model")
        stage.SetDefaultPrim(root.GetPrim())
        for i, mesh in enumerate(meshes):
            prim = UsdGeom.Mesh.Define(stage, f"/Model/mesh_{i}")
            prim.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(np.asarray(mesh.vertices, dtype=np.float32)))
            prim.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(mesh.faces), 3, dtype=np.int32)))
            prim.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(np.asarray(mesh.faces, dtype=np.int32).reshape(-1)))
            prim.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(np.asarray(mesh.vertex_normals, dtype=np.float32)))
            prim.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
            prim.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
            prim.CreateDoubleSidedAttr(True)
            lo, hi = np.asarray(mesh.bounds, dtype=np.float64)
            prim.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]))
            material = _material(mesh)
            uv = getattr(mesh.visual, "uv", None)
            shader_path = f"/Model/Materials/material_{i}"
            usd_material = UsdShade.Material.Define(stage, shader_path)
            surface = UsdShade.Shader.Define(stage, f"{shader_path}/surface")
            surface.CreateIdAttr("UsdPreviewSurface")
            usd_material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
            base = getattr(material, "baseColorTexture", None) if material is not None else None
            mr = getattr(material, "metallicRoughnessTexture", None) if material is not None else None
            factor = getattr(material, "baseColorFactor", None) if material is not None else None
            factor = np.asarray([255, 255, 255, 255] if factor is None else factor, dtype=np.float64).reshape(-1)
            factor = factor / 255.0 if factor.max() > 1.0 else factor
            if uv is not None and base is not None:
                primvars = UsdGeom.PrimvarsAPI(prim)
                st = primvars.CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex)
                st.Set(Vt.Vec2fArray.FromNumpy(np.asarray(uv, dtype=np.float32)[:, :2]))
                reader = UsdShade.Shader.Define(stage, f"{shader_path}/st")
                reader.CreateIdAttr("UsdPrimvarReader_float2")
                reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
                st_out = reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)

                def texture(name: str, image, fallback) -> UsdShade.Shader:
                    file = f"{stem}_{name}{i}.png"
                    image.save(work / file, format="PNG")
                    node = UsdShade.Shader.Define(stage, f"{shader_path}/{name}")
                    node.CreateIdAttr("UsdUVTexture")
                    node.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(f"./{file}")
                    node.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(st_out)
                    node.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("repeat")
                    node.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("repeat")
                    node.CreateInput("fallback", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(*fallback))
                    return node

                color = texture("basecolor", base.convert("RGBA"), (1.0, 1.0, 1.0, 1.0))
                color.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
                color.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(*map(float, factor[:4])))
                surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(
                    color.CreateOutput("rgb", Sdf.ValueTypeNames.Float3))
                mode = getattr(material, "alphaMode", None) or "OPAQUE"
                if mode != "OPAQUE":
                    surface.CreateInput("opacity", Sdf.ValueTypeNames.Float).ConnectToSource(
                        color.CreateOutput("a", Sdf.ValueTypeNames.Float))
                    if mode == "MASK":
                        surface.CreateInput("opacityThreshold", Sdf.ValueTypeNames.Float).Set(
                            float(getattr(material, "alphaCutoff", None) or 0.5))
                if mr is not None:
                    mr_node = texture("metallicroughness", mr.convert("RGB"), (0.0, 1.0, 0.0, 1.0))
                    mr_node.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("raw")
                    surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).ConnectToSource(
                        mr_node.CreateOutput("g", Sdf.ValueTypeNames.Float))
                    surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).ConnectToSource(
                        mr_node.CreateOutput("b", Sdf.ValueTypeNames.Float))
            else:
                surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(*map(float, factor[:3])))
                surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(1.0)
            UsdShade.MaterialBindingAPI.Apply(prim.GetPrim()).Bind(usd_material)
        stage.GetRootLayer().Save()
        package = work / f"{stem}.usdz"
        if not UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(layer)), str(package)):
            raise RuntimeError("usd-core could not write the USDZ package")
        return package.read_bytes()


def format_files(glb: str | Path | bytes, formats: list[str], stem: str) -> dict[str, bytes]:
    """The files of every format of ``formats`` but ``glb`` made from the GLB ``glb`` (a path or its bytes):
    ``{file name: bytes}``, names starting with ``stem`` (see the module docstring)."""
    extra = [f for f in formats if f != "glb"]
    if not extra:
        return {}
    meshes = _world_meshes(glb)
    out: dict[str, bytes] = {}
    for fmt in extra:
        if fmt == "obj":
            out.update(obj_files(meshes, stem))
        elif fmt == "ply":
            out[f"{stem}.ply"] = ply_bytes(meshes)
        elif fmt == "stl":
            out[f"{stem}.stl"] = stl_bytes(meshes)
        elif fmt == "usdz":
            out[f"{stem}.usdz"] = usdz_bytes(meshes, stem)
        else:
            raise UserError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return out
