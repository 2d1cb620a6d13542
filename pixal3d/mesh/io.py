"""Load OBJ / PLY / GLB / glTF meshes with their PBR materials and normalise them into the unit cube.

Frames: the file's axes are mapped to the voxel frame (x right, y up, z toward the input camera) by
:func:`frame_rotation`. With the default ``up="+y"`` the mapping is the identity — a glTF file (+Y up
by specification) is seen from its +Z side, i.e. the model's +Z side faces the camera. Files authored
Z-up (many OBJ/PLY scans) need ``up="+z"``, which maps file ``(x, y, z)`` → voxel ``(x, z, −y)``
(the file's −Y side then faces the camera). ``yaw_degrees`` then turns the model about the up axis
(positive = counter-clockwise seen from above).

Materials follow glTF: base colour = ``baseColorFactor × baseColorTexture(uv)`` (× vertex colour),
metallic = ``metallicFactor × B``, roughness = ``roughnessFactor × G`` of ``metallicRoughnessTexture``,
alpha = base-colour alpha. Values stay in the texture's encoding (sRGB base colour, as the official
voxel attributes). OBJ/MTL materials are converted with trimesh's ``to_pbr``. Geometry without any
material gets :data:`DEFAULT_PBR`.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import trimesh

from pixal3d.core.glb import read_glb_json
from pixal3d.errors import UserError

#: base R, G, B, metallic, roughness, alpha for geometry without a material
DEFAULT_PBR = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 1.0], dtype=np.float32)
#: file suffixes :func:`load_mesh` accepts
MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".stl", ".off")
#: most triangles a mesh may have (a bound on memory and time); ``$PIXAL3D_MAX_MESH_FACES`` overrides it
MAX_MESH_FACES = 5_000_000
MAX_FACES_ENV = "PIXAL3D_MAX_MESH_FACES"
_UPS = {"+x": (0, 1.0), "-x": (0, -1.0), "+y": (1, 1.0), "-y": (1, -1.0), "+z": (2, 1.0), "-z": (2, -1.0)}


@dataclass
class Material:
    """One glTF-style PBR material. Textures are float32 ``[H, W, C]`` in [0, 1] (row 0 = image top)."""

    base_color_factor: np.ndarray = field(default_factory=lambda: np.ones(4, dtype=np.float32))
    metallic_factor: float = 1.0
    roughness_factor: float = 1.0
    base_color_texture: np.ndarray | None = None  # [H, W, 4]
    metallic_roughness_texture: np.ndarray | None = None  # [H, W, 3]: G roughness, B metallic


@dataclass
class LoadedMesh:
    """A triangle soup with materials, in the voxel frame and (after :func:`normalize`) the unit cube.

    Attributes:
        vertices: ``[V,3]`` float64; faces: ``[F,3]`` int64.
        face_material: ``[F]`` int64 index into ``materials``, ``-1`` = no material (:data:`DEFAULT_PBR`).
        uv: ``[V,2]`` float64 texture coordinates (trimesh convention, v up) or ``None``.
        vertex_colors: ``[V,4]`` float32 in [0,1] or ``None``.
        materials: the materials.
        transform: ``[4,4]`` float64 mapping file coordinates to these vertices.
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_material: np.ndarray
    uv: np.ndarray | None
    vertex_colors: np.ndarray | None
    materials: list[Material]
    transform: np.ndarray = field(default_factory=lambda: np.eye(4))

    def pbr_at(self, face_ids: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """PBR attributes ``[M,6]`` float32 (base RGB, metallic, roughness, alpha) at surface points
        given by face index ``[M]`` and barycentric weights ``[M,3]`` (w.r.t. the face's 3 corners)."""
        out = np.tile(DEFAULT_PBR, (len(face_ids), 1))
        corners = self.faces[face_ids]
        uv = None
        if self.uv is not None:
            uv = np.einsum("mk,mkc->mc", bary, self.uv[corners])
        mat_ids = self.face_material[face_ids]
        for mid in np.unique(mat_ids):
            if mid < 0:
                continue
            sel = np.nonzero(mat_ids == mid)[0]
            mat = self.materials[mid]
            rgba = np.broadcast_to(mat.base_color_factor, (len(sel), 4)).astype(np.float32)
            metallic = np.full(len(sel), mat.metallic_factor, dtype=np.float32)
            roughness = np.full(len(sel), mat.roughness_factor, dtype=np.float32)
            if uv is not None and mat.base_color_texture is not None:
                rgba = rgba * sample_texture(mat.base_color_texture, uv[sel])
            if uv is not None and mat.metallic_roughness_texture is not None:
                mr = sample_texture(mat.metallic_roughness_texture, uv[sel])
                roughness = roughness * mr[:, 1]
                metallic = metallic * mr[:, 2]
            out[sel, 0:3] = rgba[:, :3]
            out[sel, 3] = metallic
            out[sel, 4] = roughness
            out[sel, 5] = rgba[:, 3]
        if self.vertex_colors is not None:
            vc = np.einsum("mk,mkc->mc", bary, self.vertex_colors[corners])
            out[:, 0:3] *= vc[:, :3]
            out[:, 5] *= vc[:, 3]
        return np.clip(out, 0.0, 1.0).astype(np.float32)


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup with repeat wrapping. ``texture [H,W,C]`` float, ``uv [M,2]`` (trimesh
    convention: v = 0 at the image bottom; texel centres at ``(i + 0.5)/W``) → ``[M,C]`` float32."""
    h, w = texture.shape[:2]
    x = uv[:, 0] * w - 0.5
    y = (1.0 - uv[:, 1]) * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    x1, y1 = (x0 + 1) % w, (y0 + 1) % h
    x0, y0 = x0 % w, y0 % h
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _image_array(image, channels: int) -> np.ndarray | None:
    if image is None:
        return None
    mode = "RGBA" if channels == 4 else "RGB"
    return np.asarray(image.convert(mode), dtype=np.float32) / 255.0


def _factor(value, default: float) -> float:
    return default if value is None else float(value)


def _material(visual) -> Material | None:
    mat = getattr(visual, "material", None)
    if mat is None:
        return None
    if not isinstance(mat, trimesh.visual.material.PBRMaterial):
        mat = mat.to_pbr()
    factor = mat.baseColorFactor
    if factor is None:
        factor = np.ones(4, dtype=np.float32)
    else:
        factor = np.asarray(factor, dtype=np.float32)
        factor = factor / 255.0 if factor.max() > 1.0 or np.issubdtype(np.asarray(mat.baseColorFactor).dtype, np.integer) else factor
    return Material(
        base_color_factor=factor,
        metallic_factor=_factor(mat.metallicFactor, 1.0),
        roughness_factor=_factor(mat.roughnessFactor, 1.0),
        base_color_texture=_image_array(mat.baseColorTexture, 4),
        metallic_roughness_texture=_image_array(mat.metallicRoughnessTexture, 3),
    )


def frame_rotation(up: str = "+y", yaw_degrees: float = 0.0) -> np.ndarray:
    """``[3,3]`` rotation from file axes to the voxel frame: the file's ``up`` axis becomes +y (the
    file's +z side, or for Z-up files its −y side, faces the camera), then a turn of ``yaw_degrees``
    about +y."""
    if up not in _UPS:
        raise UserError(f"up axis must be one of {', '.join(_UPS)}, got {up!r}")
    axis, sign = _UPS[up]
    new_y = np.zeros(3)
    new_y[axis] = sign
    # the file axis that faces the camera: +z (or −z when up is −y) for x/y-up files, −y for z-up files
    new_z = np.array([0.0, -1.0, 0.0]) if axis == 2 else np.array([0.0, 0.0, sign if axis == 1 else 1.0])
    new_x = np.cross(new_y, new_z)
    rot = np.stack([new_x, new_y, new_z])  # rows: voxel axes expressed in file coordinates
    t = math.radians(yaw_degrees)
    yaw = np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])
    return yaw @ rot


def max_mesh_faces() -> int:
    """The triangle bound of :func:`load_mesh` (:data:`MAX_MESH_FACES` or ``$PIXAL3D_MAX_MESH_FACES``)."""
    try:
        return int(os.environ.get(MAX_FACES_ENV, MAX_MESH_FACES))
    except ValueError:
        raise UserError(f"${MAX_FACES_ENV} must be an integer, got {os.environ[MAX_FACES_ENV]!r}") from None


def declared_faces(path: str | Path) -> int | None:
    """The number of faces a mesh file's header declares, read without loading it (PLY, binary STL, OFF,
    GLB); ``None`` when the format has no such header or it cannot be read."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            if suffix == ".ply":
                m = re.search(rb"^element\s+face\s+(\d+)", head.split(b"end_header")[0], re.MULTILINE)
                return int(m.group(1)) if m else None
            if suffix == ".stl" and not head.lstrip().startswith(b"solid") and len(head) >= 84:
                return struct.unpack_from("<I", head, 80)[0]
            if suffix == ".off":
                lines = [ln.split(b"#")[0].strip() for ln in head.splitlines()]
                lines = [ln for ln in lines if ln]
                if lines and lines[0].endswith(b"OFF"):
                    counts = (lines[0][:-3].split() or (lines[1].split() if len(lines) > 1 else []))
                    return int(counts[1]) if len(counts) >= 2 else None
                return None
            if suffix == ".glb" and head[:4] == b"glTF" and len(head) >= 20:
                try:
                    tree = read_glb_json(path)
                except UserError:
                    return None
                accessors = tree.get("accessors", [])
                total = 0
                for mesh in tree.get("meshes", []):
                    for prim in mesh.get("primitives", []):
                        if prim.get("mode", 4) != 4:
                            continue
                        index = prim.get("indices", prim.get("attributes", {}).get("POSITION"))
                        if isinstance(index, int) and 0 <= index < len(accessors):
                            total += int(accessors[index].get("count", 0)) // 3
                return total
    except (OSError, ValueError, struct.error, IndexError, AttributeError):
        return None
    return None


def _check_face_count(count: int, path: Path) -> None:
    limit = max_mesh_faces()
    if count > limit:
        raise UserError(f"{path} has {count:,} triangles, more than the {limit:,} this tool handles; simplify it "
                        f"first (e.g. Blender's Decimate modifier) or raise ${MAX_FACES_ENV}")


def load_mesh(path: str | Path, up: str = "+y", yaw_degrees: float = 0.0, fill: float = 0.98) -> LoadedMesh:
    """Load a mesh file, rotate it into the voxel frame and :func:`normalize` it (``fill``).

    Scenes (GLB/glTF) are flattened with their node transforms. :class:`UserError` when the file is
    missing, empty, unreadable, refers to files that are not there, holds no triangles, has non-finite
    vertices, zero extent, or more than :func:`max_mesh_faces` triangles (checked from the header before
    loading where the format has one, and after loading otherwise).
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a mesh file")
    if not path.is_file():
        raise UserError(f"mesh file not found: {path}")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise UserError(f"unsupported mesh format {path.suffix!r} (use one of {', '.join(MESH_SUFFIXES)})")
    if path.stat().st_size == 0:
        raise UserError(f"mesh file is empty: {path} (0 bytes)")
    declared = declared_faces(path)
    if declared is not None:
        _check_face_count(declared, path)
    missing = missing_resources(path)
    if missing:
        raise UserError(f"{path} refers to {len(missing)} file(s) that are not there ({', '.join(missing[:3])}); "
                        f"copy them beside it or export a self-contained .glb")
    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # trimesh raises many exception types for malformed files
        raise UserError(f"cannot read mesh {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
    elif isinstance(loaded, trimesh.Trimesh):
        geoms = [loaded]
    else:
        geoms = []
    geoms = [g for g in geoms if len(g.faces) and len(g.vertices)]
    if not geoms:
        raise UserError(f"{path} contains no triangles")
    _check_face_count(sum(len(g.faces) for g in geoms), path)
    rot = frame_rotation(up, yaw_degrees)
    try:
        mesh = _merge(geoms)
        mesh.vertices = mesh.vertices @ rot.T
        mesh.transform = np.eye(4)
        mesh.transform[:3, :3] = rot
        normalize(mesh, fill)
        if not _has_area(mesh.vertices, mesh.faces):
            raise UserError("every triangle of the mesh is degenerate (zero area); there is no surface to use")
        return mesh
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def _has_area(vertices: np.ndarray, faces: np.ndarray, chunk: int = 1 << 20) -> bool:
    """Whether any triangle has a non-zero area (checked in chunks, stopping at the first)."""
    for start in range(0, len(faces), chunk):
        c = vertices[faces[start:start + chunk]]
        if (np.abs(np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])) > 0).any():
            return True
    return False


def missing_resources(path: str | Path) -> list[str]:
    """External files (buffers, images) a glTF/GLB names that do not exist, relative to the file's folder
    (``data:`` URIs are embedded and never missing)."""
    path = Path(path)
    suffix = path.suffix.lower()
    uris: list[str] = []
    try:
        if suffix == ".gltf":
            tree = json.loads(path.read_text())
        elif suffix == ".glb":
            tree = read_glb_json(path)
        else:
            return []
    except (OSError, ValueError, UnicodeDecodeError, UserError):
        return []  # unreadable: trimesh reports it
    if isinstance(tree, dict):
        for key in ("buffers", "images"):
            for item in tree.get(key, []) or []:
                uri = item.get("uri") if isinstance(item, dict) else None
                if isinstance(uri, str) and not uri.startswith("data:"):
                    uris.append(unquote(uri))
    return [uri for uri in uris if not (path.parent / uri).is_file()]


def _merge(geoms: list[trimesh.Trimesh]) -> LoadedMesh:
    verts, faces, face_mat, uvs, colors, materials = [], [], [], [], [], []
    any_uv = any(getattr(g.visual, "uv", None) is not None for g in geoms)
    any_vc = any(g.visual.kind == "vertex" for g in geoms)
    offset = 0
    for g in geoms:
        v = np.asarray(g.vertices, dtype=np.float64)
        f = np.asarray(g.faces, dtype=np.int64)
        if not np.isfinite(v).all():
            raise UserError("mesh has NaN or infinite vertex coordinates; repair or re-export it")
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
        mat = _material(g.visual) if isinstance(g.visual, trimesh.visual.TextureVisuals) else None
        if mat is None and g.visual.kind == "face":
            mat = Material(base_color_factor=np.asarray(g.visual.face_colors[0], dtype=np.float32) / 255.0, metallic_factor=0.0)
        face_mat.append(np.full(len(f), len(materials) if mat else -1, dtype=np.int64))
        if mat:
            materials.append(mat)
        uv = getattr(g.visual, "uv", None)
        uvs.append(np.asarray(uv, dtype=np.float64) if uv is not None and len(uv) == len(v) else np.zeros((len(v), 2)))
        if g.visual.kind == "vertex":
            colors.append(np.asarray(g.visual.vertex_colors, dtype=np.float32) / 255.0)
        else:
            colors.append(np.ones((len(v), 4), dtype=np.float32))
    faces_all = np.concatenate(faces)
    verts_all = np.concatenate(verts)
    if faces_all.min() < 0 or faces_all.max() >= len(verts_all):
        raise UserError("mesh faces reference missing vertices")
    return LoadedMesh(
        vertices=verts_all,
        faces=faces_all,
        face_material=np.concatenate(face_mat),
        uv=np.concatenate(uvs) if any_uv else None,
        vertex_colors=np.concatenate(colors) if any_vc else None,
        materials=materials,
    )


def normalize(mesh: LoadedMesh, fill: float = 0.98) -> LoadedMesh:
    """Centre the bounding box at the origin and scale its longest side to ``fill`` (≤ 1), in place.

    Updates ``mesh.transform``. :class:`UserError` for a mesh with zero extent.
    """
    if not 0.0 < fill <= 1.0:
        raise UserError(f"fill must be in (0, 1], got {fill}")
    used = np.unique(mesh.faces)
    lo, hi = mesh.vertices[used].min(0), mesh.vertices[used].max(0)
    extent = float((hi - lo).max())
    if not extent > 0.0:
        raise UserError("mesh has zero extent (all its vertices coincide, no area to voxelise); export the real model")
    centre = (lo + hi) / 2
    scale = fill / extent
    mesh.vertices = (mesh.vertices - centre) * scale
    step = np.eye(4)
    step[:3, :3] *= scale
    step[:3, 3] = -centre * scale
    mesh.transform = step @ mesh.transform
    return mesh
