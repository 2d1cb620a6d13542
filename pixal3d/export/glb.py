"""Decoded asset → production GLB: mesh → cleanup → [remesh] → simplify → UV → bake → GLB.

File conventions:

* **Orientation.** glTF is +Y up. By default the voxel frame is written unchanged,
  ``(x, y, z) → (x, y, z)``: +Y up and the side seen in the input image faces +Z (glTF's "front",
  what most viewers show first). ``official_orientation=True`` writes the official Pixal3D orientation
  ``(x, y, z) → (−x, y, −z)`` (a 180° turn about +Y).
* **Camera.** When the asset knows its input camera (``fov_x``, ``distance``, ``mesh_scale``) the file
  holds a perspective camera node reproducing the input framing: ``yfov = fov_x``, ``aspectRatio``
  1, placed on the input-view side at ``distance · mesh_scale`` from the centre (the object is stored in
  unit-cube units, which is the world scaled by ``mesh_scale``), looking at the centre.
* **Material.** ``baseColorTexture`` RGBA (A = alpha), ``metallicRoughnessTexture`` (R 0, G roughness,
  B metallic), factors 1; ``alphaMode`` from the baked alpha (OPAQUE / MASK with ``alphaCutoff`` 0.5 /
  BLEND); ``doubleSided = not remesh`` as the reference. ``TEXCOORD_0`` is the atlas UV with ``v``
  down (texel row ``r`` ↔ ``v = (r+0.5)/S``). Vertex normals are included.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import trimesh
from tqdm import tqdm

from pixal3d.core.asset import VoxelAsset
from pixal3d.core.camera import Camera
from pixal3d.core.glb import read_glb_json, replace_glb_json
from pixal3d.errors import UserError
from pixal3d.export.bake import BakedTextures, bake, texture_image
from pixal3d.mesh.cleanup import MAX_HOLE_PERIMETER, MIN_COMPONENT_AREA, clean_mesh
from pixal3d.mesh.remesh import remesh_narrow_band
from pixal3d.mesh.simplify import DEFAULT_FACE_BUDGET, simplify_mesh
from pixal3d.mesh.uv import UVLayout, unwrap
from pixal3d.ovoxel.dual_grid import flexible_dual_grid_to_mesh
from pixal3d.utils.files import atomic_output

#: file orientation matrices applied to voxel-frame positions and normals (``p_file = M @ p``)
ORIENTATION_DEFAULT = np.eye(3)
ORIENTATION_OFFICIAL = np.diag([-1.0, 1.0, -1.0])

#: alpha below this counts as "not opaque" when choosing ``alphaMode``
OPAQUE_ALPHA = 0.99


#: texels per voxel edge of the final grid in the default texture size (the official exporter bakes 4096² for 1024³)
TEXELS_PER_VOXEL = 4
#: the default texture size's range (a power of two)
TEXTURE_SIZE_RANGE = (256, 2048)
#: the official face budget (1,000,000 at 1024³), which the default budget scales with the surface, ∝ R²
OFFICIAL_FACES_AT_1024 = 1_000_000
#: the smallest default face budget
MIN_DEFAULT_FACES = 10_000


def default_texture_size(resolution: int) -> int:
    """The texture edge for a grid of ``resolution``³: :data:`TEXELS_PER_VOXEL` texels per voxel edge, rounded up to
    a power of two within :data:`TEXTURE_SIZE_RANGE` (512 at 128³, 1024 at 256³, 2048 from 512³ on): a texture finer
    than the voxels holds no more colour, only more texels to bake."""
    size = 1 << max(int(TEXELS_PER_VOXEL * resolution) - 1, 1).bit_length()
    return int(min(max(size, TEXTURE_SIZE_RANGE[0]), TEXTURE_SIZE_RANGE[1]))


def default_face_budget(resolution: int) -> int:
    """The face budget for a grid of ``resolution``³: the official 1,000,000 faces at 1024³ scaled by ``(R/1024)²``
    (a surface's face count grows with R²), within [:data:`MIN_DEFAULT_FACES`, :data:`DEFAULT_FACE_BUDGET`]
    (15,625 at 128³; 200,000 from 448³ on)."""
    budget = round(OFFICIAL_FACES_AT_1024 * (resolution / 1024) ** 2)
    return int(min(max(budget, MIN_DEFAULT_FACES), DEFAULT_FACE_BUDGET))


@dataclass
class ExportOptions:
    """Options of :func:`asset_to_glb` (CLI flags of ``pixal3d export``). ``texture_size`` / ``decimation_target``
    ``None``: chosen from the asset's resolution (:func:`default_texture_size`, :func:`default_face_budget`)."""

    texture_size: int | None = None
    decimation_target: int | None = None
    remesh: bool = False
    official_orientation: bool = False
    max_hole_perimeter: float = MAX_HOLE_PERIMETER
    min_component_area: float = MIN_COMPONENT_AREA

    def validate(self) -> None:
        """:class:`UserError` for out-of-range values."""
        size = int(self.texture_size) if self.texture_size is not None else TEXTURE_SIZE_RANGE[1]
        if not 16 <= size <= 8192 or size & (size - 1):
            raise UserError(f"texture_size must be between 16 and 8192 and a power of two (e.g. 1024, 2048), "
                            f"got {self.texture_size}")
        if self.decimation_target is not None and int(self.decimation_target) < 4:
            raise UserError(f"decimation_target must be at least 4 faces, got {self.decimation_target}")
        if not self.max_hole_perimeter >= 0:
            raise UserError(f"max_hole_perimeter must be ≥ 0, got {self.max_hole_perimeter}")
        if not self.min_component_area >= 0:
            raise UserError(f"min_component_area must be ≥ 0, got {self.min_component_area}")

    def for_resolution(self, resolution: int) -> "ExportOptions":
        """These options with the texture size and face budget that were left to the asset filled in for ``resolution``."""
        return replace(self, texture_size=self.texture_size or default_texture_size(resolution),
                       decimation_target=self.decimation_target or default_face_budget(resolution))


@dataclass
class ExportResult:
    """What :func:`asset_to_glb` wrote: face/vertex counts, alpha mode and seconds per stage."""

    path: Path
    faces: int
    vertices: int
    alpha_mode: str
    timings: dict[str, float] = field(default_factory=dict)


def choose_alpha_mode(alpha: np.ndarray) -> tuple[str, float | None]:
    """glTF ``(alphaMode, alphaCutoff)`` for baked alpha values ``[M]`` in [0, 1].

    OPAQUE when at most 0.1 % of texels are below :data:`OPAQUE_ALPHA`; MASK (cutoff 0.5) when at most
    5 % lie strictly between 0.05 and 0.95 (essentially binary: only the trilinear transition band
    between transparent and opaque voxels); BLEND otherwise.
    """
    alpha = np.asarray(alpha, dtype=np.float32).reshape(-1)
    if alpha.size == 0 or np.mean(alpha < OPAQUE_ALPHA) <= 1e-3:
        return "OPAQUE", None
    if np.mean((alpha > 0.05) & (alpha < 0.95)) <= 0.05:
        return "MASK", 0.5
    return "BLEND", None


def unit_vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``[V, 3]`` float32; glTF requires unit length, so a vertex whose
    faces are all degenerate gets the direction from the mesh centroid (or +Y if it sits on it)."""
    normals = np.array(trimesh.Trimesh(vertices, faces, process=False).vertex_normals, dtype=np.float64)
    length = np.linalg.norm(normals, axis=1)
    bad = ~(length > 1e-8)
    if bad.any():
        outward = vertices[bad] - vertices.mean(axis=0)
        outward_len = np.linalg.norm(outward, axis=1, keepdims=True)
        normals[bad] = np.where(outward_len > 1e-8, outward / np.maximum(outward_len, 1e-12), [0.0, 1.0, 0.0])
        length = np.linalg.norm(normals, axis=1)
    return (normals / length[:, None]).astype(np.float32)


def asset_surface(asset: VoxelAsset) -> tuple[np.ndarray, np.ndarray]:
    """The asset's surface in the unit cube: its stored mesh, else the flexible-dual-grid mesh.

    Returns ``(vertices [V,3] float64, faces [F,3] int64)``.
    """
    if asset.mesh_vertices is not None:
        return np.asarray(asset.mesh_vertices, dtype=np.float64), np.asarray(asset.mesh_faces, dtype=np.int64)
    split = None if asset.split_weight is None else torch.from_numpy(np.asarray(asset.split_weight, dtype=np.float32))
    vertices, faces = flexible_dual_grid_to_mesh(
        torch.from_numpy(np.asarray(asset.coords)).long(),
        torch.from_numpy(np.asarray(asset.dual_vertices, dtype=np.float32)),
        torch.from_numpy(np.asarray(asset.intersected)).bool(),
        split,
        asset.resolution,
    )
    return vertices.double().numpy(), faces.long().numpy()


def camera_node(camera: Camera, orientation: np.ndarray) -> tuple[dict, dict]:
    """glTF ``(camera, node)`` dicts for the input camera in a file with ``orientation`` (3×3).

    In the voxel frame the camera sits at ``(0, 0, distance·mesh_scale)`` looking down −Z with +Y up,
    which is a glTF camera's own frame, so its rotation is ``orientation`` itself.
    """
    dist = float(camera.distance) * float(camera.mesh_scale)
    position = orientation @ np.array([0.0, 0.0, dist])
    cam = {
        "type": "perspective",
        "name": "input_view",
        "perspective": {"yfov": float(camera.fov_x), "aspectRatio": 1.0, "znear": max(1e-3, 0.01 * dist), "zfar": dist + 10.0},
    }
    node = {"name": "input_view", "translation": [float(x) for x in position]}
    if not np.allclose(orientation, np.eye(3)):
        node["rotation"] = _quaternion(orientation)
    return cam, node


def _quaternion(rot: np.ndarray) -> list[float]:
    """Unit quaternion ``[x, y, z, w]`` of a proper rotation matrix."""
    m = np.asarray(rot, dtype=np.float64)
    w = math.sqrt(max(0.0, 1 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + m[0, 0] - m[1, 1] - m[2, 2])) / 2, m[2, 1] - m[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - m[0, 0] + m[1, 1] - m[2, 2])) / 2, m[0, 2] - m[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - m[0, 0] - m[1, 1] + m[2, 2])) / 2, m[1, 0] - m[0, 1])
    return [x, y, z, w]


def patch_glb_camera(data: bytes, camera: dict, node: dict) -> bytes:
    """Add a camera and its node to the first scene of a GLB (bytes in → bytes out)."""
    gltf = read_glb_json(data)
    gltf.setdefault("cameras", []).append(camera)
    node = dict(node, camera=len(gltf["cameras"]) - 1)
    gltf.setdefault("nodes", []).append(node)
    scene = gltf["scenes"][gltf.get("scene", 0)]
    scene.setdefault("nodes", []).append(len(gltf["nodes"]) - 1)
    return replace_glb_json(data, gltf)


def build_glb(
    layout: UVLayout,
    normals: np.ndarray,
    textures: BakedTextures,
    camera: Camera | None = None,
    official_orientation: bool = False,
    double_sided: bool = True,
) -> tuple[bytes, str]:
    """GLB bytes of a textured mesh in the voxel frame; returns ``(glb, alpha_mode)``.

    Args:
        layout: vertices (unit cube, voxel frame), faces and glTF UVs.
        normals: ``[V', 3]`` unit vertex normals (voxel frame).
        textures: baked textures.
        camera: input camera to store as a camera node, or ``None``.
    """
    orientation = ORIENTATION_OFFICIAL if official_orientation else ORIENTATION_DEFAULT
    alpha_mode, cutoff = choose_alpha_mode(textures.alpha_values)
    material = trimesh.visual.material.PBRMaterial(
        name="pixal3d",
        baseColorFactor=[255, 255, 255, 255],
        baseColorTexture=texture_image(textures.base_color),
        metallicFactor=1.0,
        roughnessFactor=1.0,
        metallicRoughnessTexture=texture_image(textures.metallic_roughness),
        alphaMode=alpha_mode,
        alphaCutoff=cutoff,
        doubleSided=bool(double_sided),
    )
    uv = layout.uvs.astype(np.float64).copy()
    uv[:, 1] = 1.0 - uv[:, 1]  # trimesh stores v up and flips it back when writing glTF
    mesh = trimesh.Trimesh(
        vertices=layout.vertices.astype(np.float64) @ orientation.T,
        faces=layout.faces,
        vertex_normals=normals @ orientation.T,
        visual=trimesh.visual.TextureVisuals(uv=uv, material=material),
        process=False,
    )
    scene = trimesh.Scene()
    scene.add_geometry(mesh, geom_name="pixal3d", node_name="pixal3d")
    data = trimesh.exchange.gltf.export_glb(scene, include_normals=True)
    if camera is not None:
        data = patch_glb_camera(data, *camera_node(camera, orientation))
    return data, alpha_mode


def asset_to_glb(asset: VoxelAsset, path: str | Path, options: ExportOptions | None = None,
                 progress: bool | Callable[[str, int, int], None] = True) -> ExportResult:
    """Export a decoded asset as a GLB at ``path`` (written atomically).

    Stages (each timed in ``ExportResult.timings``, seconds): ``mesh`` (stored mesh or dual-grid
    extraction), ``cleanup`` (holes < ``max_hole_perimeter`` filled; this surface is what texels are
    snapped to), ``remesh`` (if on), ``simplify``, ``unwrap``, ``bake`` (rasterise, snap, voxel lookup),
    ``inpaint``, ``write``. ``progress``: ``True`` for a tqdm bar, or a callable ``("export", done, total)``
    called before the first stage and after each one.
    """
    options = options or ExportOptions()
    options.validate()
    options = options.for_resolution(asset.resolution)
    timings: dict[str, float] = {}
    stages = ["mesh", "cleanup"] + (["remesh"] if options.remesh else []) + ["simplify", "unwrap", "bake", "write"]
    bar = tqdm(stages, desc="export", disable=progress is not True, leave=False)
    report = (lambda done: progress("export", done, len(stages))) if callable(progress) else None
    try:  # the bar is cleared even when a stage fails, so an error starts its own line
        return _export_stages(asset, path, options, timings, bar, report)
    finally:
        bar.close()


def _export_stages(asset: VoxelAsset, path: str | Path, options: ExportOptions, timings: dict[str, float],
                   bar, report: Callable[[int], None] | None = None) -> ExportResult:
    """The stages of :func:`asset_to_glb`, advancing ``bar`` (and calling ``report(stages done)``)."""
    done = 0

    def stage(name: str):
        bar.set_postfix_str(name)
        if report is not None and done == 0:
            report(0)
        return time.perf_counter()

    def finished():
        nonlocal done
        done += 1
        bar.update()
        if report is not None:
            report(done)

    t = stage("mesh")
    vertices, faces = asset_surface(asset)
    timings["mesh"] = time.perf_counter() - t
    finished()
    t = stage("cleanup")
    vertices, faces = clean_mesh(vertices, faces, max_hole_perimeter=options.max_hole_perimeter,
                                 min_component_area=options.min_component_area)
    if len(faces) == 0:
        raise UserError("the asset's surface is empty: nothing to export")
    surface_vertices, surface_faces = vertices, faces
    timings["cleanup"] = time.perf_counter() - t
    finished()
    if options.remesh:
        t = stage("remesh")
        vertices, faces = remesh_narrow_band(vertices, faces, asset.resolution)
        timings["remesh"] = time.perf_counter() - t
        finished()
    t = stage("simplify")
    vertices, faces = simplify_mesh(vertices, faces, options.decimation_target)
    normals = unit_vertex_normals(vertices, faces)
    timings["simplify"] = time.perf_counter() - t
    finished()
    t = stage("unwrap")
    layout = unwrap(vertices, faces, texture_size=options.texture_size)
    timings["unwrap"] = time.perf_counter() - t
    finished()
    t = stage("bake")
    textures = bake(layout, surface_vertices, surface_faces, asset.coords, asset.attrs, asset.resolution,
                    options.texture_size)
    timings["bake"] = time.perf_counter() - t - textures.timings["inpaint"]
    timings["inpaint"] = textures.timings["inpaint"]
    finished()
    t = stage("write")
    data, alpha_mode = build_glb(layout, normals[layout.vmap], textures, asset.camera,
                                 options.official_orientation, double_sided=not options.remesh)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    timings["write"] = time.perf_counter() - t
    finished()
    return ExportResult(Path(path), len(layout.faces), len(layout.vertices), alpha_mode, timings)
