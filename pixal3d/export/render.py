"""Software previews of GLB files: a vectorised NumPy triangle rasteriser with a z-buffer.

No OpenGL, EGL or GPU is needed, so previews work the same on headless Linux, macOS and Windows.
:func:`rasterize` (also used by the texture baker) enumerates the pixels in each triangle's bounding
box in chunks, tests them with edge functions at pixel centres and resolves visibility per pixel by
depth. :func:`render_glb` loads a GLB with trimesh, textures it (base colour × factor, alpha from
the base colour's A channel according to the material's ``alphaMode``) and shades it with a
camera-attached headlight plus ambient light; ``mode="mask"`` gives the silhouette.

Cameras follow glTF: a camera looks down its local −Z with +Y up; ``yfov`` is the vertical field of
view; images are square (``aspectRatio`` 1). Pixel ``(col, row)`` has its centre at
``(col + 0.5, row + 0.5)``, rows grow downward.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from pixal3d.errors import UserError


def rasterize(
    xy: np.ndarray,
    faces: np.ndarray,
    width: int,
    height: int,
    depth: np.ndarray | None = None,
    max_candidates: int = 1 << 22,
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise triangles at pixel centres.

    Args:
        xy: ``[V, 2]`` float vertex positions in pixels (x right, y down; pixel ``(c, r)`` has its
            centre at ``(c + 0.5, r + 0.5)``).
        faces: ``[F, 3]`` integer indices.
        width, height: image size.
        depth: ``[V]`` positive view depth per vertex, or ``None``. With depth the nearest triangle
            wins and barycentrics are perspective-correct; without it a later face overwrites an
            earlier one (UV layouts do not overlap).
        max_candidates: pixel-triangle pairs tested per chunk (memory bound).
    Returns:
        ``face_id [H, W]`` int64 (−1 where empty) and ``bary [H, W, 3]`` float32 weights of the face's
        three corners.
    """
    xy = np.asarray(xy, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    face_id = np.full(height * width, -1, dtype=np.int64)
    bary = np.zeros((height * width, 3), dtype=np.float32)
    zbuf = np.full(height * width, np.inf)
    if len(faces) == 0:
        return face_id.reshape(height, width), bary.reshape(height, width, 3)
    tri = xy[faces]  # [F,3,2]
    if depth is not None:
        inv_w = 1.0 / np.asarray(depth, dtype=np.float64)[faces]  # [F,3]
        valid = (inv_w > 0).all(1)
    else:
        inv_w = None
        valid = np.ones(len(faces), dtype=bool)
    # candidate pixel range: columns c with c + 0.5 in [min x, max x]
    lo = np.ceil(tri.min(1) - 0.5).astype(np.int64)
    hi = np.floor(tri.max(1) - 0.5).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    ext = hi - lo + 1  # [F,2]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    valid &= (ext > 0).all(1) & (np.abs(area) > 1e-20) & np.isfinite(area)
    ids = np.nonzero(valid)[0]
    side = ext[ids].max(1)
    ids = ids[np.argsort(side, kind="stable")]
    side = ext[ids].max(1)
    start = 0
    while start < len(ids):
        s = int(side[min(start + max(max_candidates // max(int(side[start]) ** 2, 1), 1), len(ids)) - 1])
        count = max(max_candidates // (s * s), 1)
        chunk = ids[start:start + count]
        s = int(side[start:start + count].max())
        start += count
        off = np.arange(s)
        cols = lo[chunk, 0][:, None, None] + off[None, None, :]  # [n,1,s]
        rows = lo[chunk, 1][:, None, None] + off[None, :, None]  # [n,s,1]
        inside_box = (cols <= hi[chunk, 0][:, None, None]) & (rows <= hi[chunk, 1][:, None, None])
        px = cols + 0.5 - tri[chunk, 0, 0][:, None, None]
        py = rows + 0.5 - tri[chunk, 0, 1][:, None, None]
        inv_area = 1.0 / area[chunk][:, None, None]
        b1 = (px * e2[chunk, 1][:, None, None] - py * e2[chunk, 0][:, None, None]) * inv_area
        b2 = (e1[chunk, 0][:, None, None] * py - e1[chunk, 1][:, None, None] * px) * inv_area
        b0 = 1.0 - b1 - b2
        eps = -1e-9
        hit = inside_box & (b0 >= eps) & (b1 >= eps) & (b2 >= eps)
        fi, ri, ci = np.nonzero(hit)
        if len(fi) == 0:
            continue
        faces_hit = chunk[fi]
        pix = (lo[faces_hit, 1] + ri) * width + lo[faces_hit, 0] + ci
        w = np.stack([b0[fi, ri, ci], b1[fi, ri, ci], b2[fi, ri, ci]], 1)
        if inv_w is None:
            face_id[pix] = faces_hit
            bary[pix] = w
            continue
        wp = w * inv_w[faces_hit]
        z = 1.0 / wp.sum(1)
        wp *= z[:, None]
        order = np.lexsort((z, pix))
        first = order[np.unique(pix[order], return_index=True)[1]]
        p, zf = pix[first], z[first]
        closer = zf < zbuf[p]
        p, first = p[closer], first[closer]
        zbuf[p] = zf[closer]
        face_id[p] = faces_hit[first]
        bary[p] = wp[first]
    return face_id.reshape(height, width), bary.reshape(height, width, 3)


@dataclass
class ViewCamera:
    """A square perspective view: ``cam_to_world [4,4]`` (glTF convention: looks down −Z, +Y up) and
    vertical field of view ``yfov`` in radians."""

    cam_to_world: np.ndarray
    yfov: float
    znear: float = 1e-3


@dataclass
class RenderMesh:
    """One textured primitive in world coordinates, ready to render.

    ``vertices [V,3]`` float64, ``faces [F,3]`` int64, ``uv [V,2]`` glTF texture coordinates (v down)
    or ``None``, ``base_color [H,W,4]`` float32 texture in [0,1] or ``None``, ``factor [4]`` float32,
    ``alpha_mode`` ("OPAQUE" | "MASK" | "BLEND"), ``alpha_cutoff``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None
    base_color: np.ndarray | None
    factor: np.ndarray
    alpha_mode: str = "OPAQUE"
    alpha_cutoff: float = 0.5


def _to_array(image, channels: int = 4) -> np.ndarray | None:
    if image is None:
        return None
    arr = np.asarray(image.convert("RGBA") if hasattr(image, "convert") else image, dtype=np.float32)
    if arr.max() > 1.0:
        arr = arr / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 3:
        arr = np.concatenate([arr, np.ones_like(arr[..., :1])], axis=2)
    return arr[..., :channels]


def load_render_meshes(path: str | Path) -> list[RenderMesh]:
    """The triangle primitives of a GLB/glTF file in world coordinates (node transforms applied)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        scene = trimesh.load(str(path), force="scene", process=False)
    except Exception as exc:  # trimesh raises many exception types for malformed files
        raise UserError(f"cannot read {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    meshes = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geom = scene.geometry[name]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        v = trimesh.transform_points(np.asarray(geom.vertices, dtype=np.float64), transform)
        uv, tex, factor, mode, cutoff = None, None, np.ones(4, dtype=np.float32), "OPAQUE", 0.5
        visual = geom.visual
        material = getattr(visual, "material", None)
        if material is not None:
            pbr = material.to_pbr() if hasattr(material, "to_pbr") else material
            if getattr(pbr, "baseColorFactor", None) is not None:
                factor = np.asarray(pbr.baseColorFactor, dtype=np.float32).reshape(-1)
                factor = factor / 255.0 if factor.max() > 1.0 else factor
            tex = _to_array(getattr(pbr, "baseColorTexture", None))
            mode = getattr(pbr, "alphaMode", None) or "OPAQUE"
            cutoff = float(getattr(pbr, "alphaCutoff", None) or 0.5)
            if getattr(visual, "uv", None) is not None and len(visual.uv) == len(geom.vertices):
                uv = np.asarray(visual.uv, dtype=np.float64)[:, :2].copy()
                uv[:, 1] = 1.0 - uv[:, 1]  # trimesh stores v up; back to glTF's v down
        if uv is None:
            tex = None
        colors = getattr(visual, "vertex_colors", None) if getattr(visual, "kind", None) == "vertex" else None
        if colors is not None and tex is None:
            factor = np.asarray(colors, dtype=np.float32).mean(0) / 255.0
        meshes.append(RenderMesh(v, np.asarray(geom.faces, dtype=np.int64), uv, tex, factor, mode, cutoff))
    if not meshes:
        raise UserError(f"{path} contains no triangles")
    return meshes


def read_glb_json(path: str | Path) -> dict:
    """The JSON chunk of a binary glTF file; :class:`UserError` if it is not one."""
    data = Path(path).read_bytes()
    if len(data) < 20 or data[:4] != b"glTF":
        raise UserError(f"{path} is not a binary glTF (GLB) file")
    length, kind = struct.unpack_from("<I4s", data, 12)
    if kind != b"JSON":
        raise UserError(f"{path}: first GLB chunk is not JSON")
    return json.loads(data[20:20 + length].decode("utf-8"))


def glb_camera(path: str | Path) -> ViewCamera:
    """The first perspective camera node of a GLB (world transform from the node hierarchy)."""
    gltf = read_glb_json(path)
    cameras = gltf.get("cameras", [])
    nodes = gltf.get("nodes", [])
    parent = {c: i for i, n in enumerate(nodes) for c in n.get("children", [])}
    for i, node in enumerate(nodes):
        if "camera" not in node or cameras[node["camera"]].get("type") != "perspective":
            continue
        matrix = np.eye(4)
        j = i
        while j is not None:
            matrix = _node_matrix(nodes[j]) @ matrix
            j = parent.get(j)
        persp = cameras[node["camera"]]["perspective"]
        return ViewCamera(cam_to_world=matrix, yfov=float(persp["yfov"]), znear=float(persp.get("znear", 1e-3)))
    raise UserError(f"{path} has no perspective camera node (use --camera turntable)")


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T  # glTF is column-major
    t = np.asarray(node.get("translation", [0, 0, 0]), dtype=np.float64)
    x, y, z, w = node.get("rotation", [0, 0, 0, 1])
    s = np.asarray(node.get("scale", [1, 1, 1]), dtype=np.float64)
    rot = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    m = np.eye(4)
    m[:3, :3] = rot * s[None, :]
    m[:3, 3] = t
    return m


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0])) -> np.ndarray:
    """``cam_to_world [4,4]`` of a glTF camera at ``eye`` looking at ``target``."""
    eye, target = np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64)
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, eye
    return m


def _sample(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup with repeat wrapping: ``texture [H,W,C]``, glTF ``uv [M,2]`` → ``[M,C]``."""
    h, w = texture.shape[:2]
    x = np.mod(uv[:, 0], 1.0) * w - 0.5
    y = np.mod(uv[:, 1], 1.0) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0m, x1m, y0m, y1m = x0 % w, (x0 + 1) % w, y0 % h, (y0 + 1) % h
    top = texture[y0m, x0m] * (1 - fx) + texture[y0m, x1m] * fx
    bottom = texture[y1m, x0m] * (1 - fx) + texture[y1m, x1m] * fx
    return top * (1 - fy) + bottom * fy


def render(
    meshes: list[RenderMesh],
    camera: ViewCamera,
    size: int = 512,
    mode: str = "shaded",
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Render primitives through ``camera``.

    Args:
        mode: ``"shaded"`` (base colour × (0.35 ambient + 0.65 headlight Lambert), straight alpha
            composited over ``background``), ``"albedo"`` (unlit base colour) or ``"mask"``.
    Returns:
        ``[size, size, 4]`` float32 RGBA in [0, 1] for ``shaded``/``albedo`` (alpha = coverage × material
        alpha); ``[size, size]`` bool for ``mask``.
    """
    if mode not in ("shaded", "albedo", "mask"):
        raise ValueError(f"unknown render mode {mode!r}")
    world_to_cam = np.linalg.inv(camera.cam_to_world)
    focal = size / (2.0 * math.tan(camera.yfov / 2.0))
    all_xy, all_depth, all_faces, owner, offset = [], [], [], [], 0
    for k, m in enumerate(meshes):
        pc = m.vertices @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
        depth = -pc[:, 2]
        safe = np.where(depth > camera.znear, depth, np.nan)
        xy = np.stack([focal * pc[:, 0] / safe + size / 2, -focal * pc[:, 1] / safe + size / 2], 1)
        all_xy.append(xy)
        all_depth.append(np.where(depth > camera.znear, depth, -1.0))
        all_faces.append(m.faces + offset)
        owner.append(np.full(len(m.faces), k))
        offset += len(m.vertices)
    xy, depth, faces = np.concatenate(all_xy), np.concatenate(all_depth), np.concatenate(all_faces)
    owner = np.concatenate(owner)
    face_start = np.cumsum([0] + [len(m.faces) for m in meshes])
    # faces behind the near plane or with non-finite projections are skipped by the rasteriser
    xy = np.nan_to_num(xy, nan=-1e9)
    face_id, bary = rasterize(xy, faces, size, size, depth=depth)
    covered = face_id >= 0
    fid, w = face_id[covered], bary[covered]
    rgba = np.zeros((len(fid), 4), dtype=np.float32)
    positions = np.concatenate([m.vertices for m in meshes])
    for k, m in enumerate(meshes):
        sel = np.nonzero(owner[fid] == k)[0]
        if len(sel) == 0:
            continue
        corners = m.faces[fid[sel] - face_start[k]]
        color = np.broadcast_to(m.factor, (len(sel), 4)).astype(np.float32)
        if m.base_color is not None and m.uv is not None:
            uv = np.einsum("mk,mkc->mc", w[sel], m.uv[corners])
            color = color * _sample(m.base_color, uv)
        if m.alpha_mode == "OPAQUE":
            color[:, 3] = 1.0
        elif m.alpha_mode == "MASK":
            color[:, 3] = (color[:, 3] >= m.alpha_cutoff).astype(np.float32)
        rgba[sel] = color
    if mode == "mask":
        mask = np.zeros(size * size, dtype=bool)
        mask[covered.reshape(-1)] = rgba[:, 3] >= 0.5
        return mask.reshape(size, size)
    if mode == "shaded":
        tri = positions[faces[fid]]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-20)
        point = np.einsum("mk,mkc->mc", w.astype(np.float64), tri)
        to_eye = camera.cam_to_world[:3, 3] - point
        to_eye /= np.maximum(np.linalg.norm(to_eye, axis=1, keepdims=True), 1e-20)
        lambert = np.abs((normal * to_eye).sum(1))  # two-sided headlight
        rgba[:, :3] *= (0.35 + 0.65 * lambert)[:, None].astype(np.float32)
    out = np.zeros((size * size, 4), dtype=np.float32)
    out[covered.reshape(-1)] = rgba
    alpha = out[:, 3:4]
    out[:, :3] = out[:, :3] * alpha + np.asarray(background, dtype=np.float32) * (1 - alpha)
    return np.clip(out.reshape(size, size, 4), 0.0, 1.0)


def turntable_cameras(meshes: list[RenderMesh], views: int, yfov: float = math.radians(40.0),
                      elevation: float = math.radians(20.0)) -> list[ViewCamera]:
    """``views`` cameras evenly spaced around +Y, looking at the bounding-box centre and framing the
    bounding sphere; the first sits on +Z (the input view side in the default orientation)."""
    vertices = np.concatenate([m.vertices for m in meshes])
    centre = (vertices.min(0) + vertices.max(0)) / 2
    radius = float(np.linalg.norm(vertices - centre, axis=1).max())
    dist = radius / math.sin(yfov / 2) * 1.05
    cams = []
    for i in range(views):
        yaw = 2 * math.pi * i / views
        direction = np.array([math.sin(yaw) * math.cos(elevation), math.sin(elevation), math.cos(yaw) * math.cos(elevation)])
        cams.append(ViewCamera(look_at(centre + dist * direction, centre), yfov))
    return cams


def render_glb(path: str | Path, camera: str = "input", size: int = 512, views: int = 8,
               mode: str = "shaded") -> np.ndarray:
    """Preview a GLB: through its stored camera (``camera="input"``) → ``[size, size, 4]``, or a
    ``turntable`` sheet of ``views`` images around +Y (2 rows) → ``[2·size, ceil(views/2)·size, 4]``.
    ``mode="mask"`` returns bool silhouettes of the same layout."""
    meshes = load_render_meshes(path)
    if camera == "input":
        return render(meshes, glb_camera(path), size, mode)
    if camera != "turntable":
        raise UserError(f"unknown camera {camera!r} (use input or turntable)")
    if views < 1:
        raise UserError(f"views must be at least 1, got {views}")
    images = [render(meshes, cam, size, mode) for cam in turntable_cameras(meshes, views)]
    rows = 1 if views < 4 else 2
    cols = math.ceil(views / rows)
    blank = np.ones_like(images[0]) if mode != "mask" else np.zeros_like(images[0])
    images += [blank] * (rows * cols - views)
    return np.concatenate([np.concatenate(images[r * cols:(r + 1) * cols], axis=1) for r in range(rows)], axis=0)


def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write a render (float ``[H, W, C]`` in [0, 1], or a bool mask) as an 8-bit PNG, atomically."""
    from PIL import Image

    from pixal3d.utils.files import atomic_output

    pixels = (image * 255).astype(np.uint8) if image.dtype == bool else np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    with atomic_output(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
