"""The CPU renderer of textured PBR meshes: a vectorised NumPy triangle rasteriser and preview shader.

No OpenGL, EGL or GPU is needed, so renders look the same on headless Linux, macOS and Windows. It
serves ``pixal3d render`` and GLB previews, the camera / silhouette-IoU / PSNR tests, and (through
:mod:`pixal3d.data.preview`) contact sheets and dataset views; its
:func:`rasterize` is also the UV rasteriser of the texture baker.

* :func:`rasterize_fragments` scan-converts triangles in chunks (pixel rows, then the span of pixel
  centres between the edges on each row) and computes barycentrics with edge functions at pixel centres
  (every covered pixel-triangle pair is a fragment, perspective-correct); :func:`rasterize` keeps one
  fragment per pixel (z-buffer).
* :func:`render` drops fragments behind the nearest OPAQUE fragment of their pixel, shades the rest
  (base colour × factor × texture, metallic/roughness factor × texture, smooth vertex normals when the
  mesh has them; MASK materials cut holes) and composites them front to back per pixel, so BLEND
  materials are order-independent; ``supersample`` renders larger and box-filters down.
* :func:`render_passes` gives several passes of one rasterisation: shaded, albedo, mask, camera-frame
  geometric normals and depth (the evaluation renders ground truth and predictions with it).
* Shading is a preview model, not physically exact: a hemisphere ambient term, two directional lights
  fixed to the camera (Lambert + Blinn-Phong with a roughness-dependent exponent) and a sky-gradient
  reflection weighted by the Fresnel base reflectance (so metals show their colour); or, given an
  :class:`~pixal3d.core.environment.Environment`, image-based lighting from an HDR map.

Cameras are :class:`~pixal3d.core.camera.Camera` (glTF convention: a camera looks down its local −Z with +Y up;
perspective, or orthographic with ``ortho_half`` world units from the image centre to its edge), in float64;
images are square. Pixel ``(col, row)`` has its centre at ``(col + 0.5, row + 0.5)``, rows grow downward.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from pixal3d.core.camera import Camera, look_at
from pixal3d.core.environment import Environment
from pixal3d.core.glb import read_glb_json
from pixal3d.errors import UserError


def _fragment_chunks(
    xy: np.ndarray,
    faces: np.ndarray,
    width: int,
    height: int,
    depth: np.ndarray | None,
    perspective: bool,
    max_candidates: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
    """Fragments ``(pixel [m], face [m], bary [m,3] float64, z [m] or None)`` chunk by chunk (see
    :func:`rasterize_fragments`)."""
    xy = np.asarray(xy, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        return
    tri = xy[faces]  # [F,3,2]
    valid = np.ones(len(faces), dtype=bool)
    inv_w = z_corner = None
    if depth is not None:
        depth = np.asarray(depth, dtype=np.float64)
        if perspective:
            inv_w = 1.0 / depth[faces]  # [F,3]
            valid &= (inv_w > 0).all(1)
        else:
            z_corner = depth[faces]
            valid &= np.isfinite(z_corner).all(1)
    # scanline: each triangle is expanded into the pixel rows whose centres it spans, each row into the
    # span of pixel centres between its edges, so long thin triangles cost no more than their area
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    valid &= (np.abs(area) > 1e-20) & np.isfinite(area)
    y0 = np.clip(np.ceil(tri[..., 1].min(1) - 0.5), 0, height)
    y1 = np.clip(np.floor(tri[..., 1].max(1) - 0.5), -1, height - 1)
    x_ext = np.clip(np.floor(tri[..., 0].max(1) - 0.5), -1, width - 1) - np.clip(np.ceil(tri[..., 0].min(1) - 0.5), 0, width)
    valid &= (y1 >= y0) & (x_ext >= 0)
    ids = np.nonzero(valid)[0]
    y0 = y0[ids].astype(np.int64)
    rows = y1[ids].astype(np.int64) - y0 + 1
    # chunks of triangles with at most ~max_candidates candidate pixels (at least one triangle)
    bound = np.cumsum(rows * (x_ext[ids].astype(np.int64) + 1))
    start = 0
    while start < len(ids):
        base = bound[start - 1] if start else 0
        stop = max(int(np.searchsorted(bound, base + max_candidates, side="right")), start + 1)
        r = rows[start:stop]
        t = np.repeat(ids[start:stop], r)
        iy = np.repeat(y0[start:stop], r) + np.arange(len(t)) - np.repeat(np.cumsum(r) - r, r)
        first, last = _spans(tri, t, iy, width)
        start = stop
        n = np.maximum(last - first + 1, 0)
        t, iy = np.repeat(t, n), np.repeat(iy, n)
        ix = np.repeat(first, n) + np.arange(len(t)) - np.repeat(np.cumsum(n) - n, n)
        px = ix + 0.5 - tri[t, 0, 0]
        py = iy + 0.5 - tri[t, 0, 1]
        inv_area = 1.0 / area[t]
        b1 = (px * e2[t, 1] - py * e2[t, 0]) * inv_area
        b2 = (e1[t, 0] * py - e1[t, 1] * px) * inv_area
        b0 = 1.0 - b1 - b2
        eps = -1e-9
        hit = (b0 >= eps) & (b1 >= eps) & (b2 >= eps)
        if not hit.any():
            continue
        faces_hit, pix = t[hit], iy[hit] * width + ix[hit]
        w = np.stack([b0[hit], b1[hit], b2[hit]], 1)
        if inv_w is not None:
            w *= inv_w[faces_hit]
            z = 1.0 / w.sum(1)
            w *= z[:, None]
        elif z_corner is not None:
            z = (w * z_corner[faces_hit]).sum(1)
        else:
            z = None
        yield pix, faces_hit, w, z


def _spans(tri: np.ndarray, t: np.ndarray, iy: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last pixel column whose centre lies inside triangle ``tri[t]`` on pixel row ``iy``
    (edges inclusive up to 1e-9 px)."""
    y = iy + 0.5
    xl = np.full(len(t), np.inf)
    xr = np.full(len(t), -np.inf)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        a, b = tri[t, i], tri[t, j]
        dy = b[:, 1] - a[:, 1]
        crosses = (np.minimum(a[:, 1], b[:, 1]) <= y) & (y <= np.maximum(a[:, 1], b[:, 1])) & (dy != 0)
        x = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / np.where(dy != 0, dy, 1.0)
        xl = np.where(crosses, np.minimum(xl, x), xl)
        xr = np.where(crosses, np.maximum(xr, x), xr)
    first = np.clip(np.ceil(xl - 0.5 - 1e-9), 0, width).astype(np.int64)
    last = np.clip(np.floor(xr - 0.5 + 1e-9), -1, width - 1).astype(np.int64)
    return first, last


def rasterize_fragments(
    xy: np.ndarray,
    faces: np.ndarray,
    width: int,
    height: int,
    depth: np.ndarray | None = None,
    perspective: bool = True,
    max_candidates: int = 1 << 22,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Every covered (pixel, triangle) pair, tested at pixel centres (edges inclusive).

    Args:
        xy: ``[V, 2]`` float vertex positions in pixels (x right, y down; pixel ``(c, r)`` has its
            centre at ``(c + 0.5, r + 0.5)``).
        faces: ``[F, 3]`` integer indices.
        width, height: image size.
        depth: ``[V]`` view depth per vertex, or ``None``. ``perspective``: barycentrics are
            perspective-correct and faces with a corner at depth ≤ 0 are skipped; otherwise
            (orthographic) barycentrics and depth are affine.
        max_candidates: bounding-box pixels of the triangles scan-converted per chunk (memory bound).
    Returns:
        ``pixel [M]`` int64 (``row·width + col``), ``face [M]`` int64, ``bary [M, 3]`` float64 weights of
        the face's corners and ``z [M]`` float64 depth (``None`` without ``depth``).
    """
    chunks = list(_fragment_chunks(xy, faces, width, height, depth, perspective, max_candidates))
    if not chunks:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), None if depth is None else np.zeros(0)
    pixel, face, bary, z = (np.concatenate(part) if part[0] is not None else None for part in zip(*chunks))
    return pixel, face, bary, z


def rasterize(
    xy: np.ndarray,
    faces: np.ndarray,
    width: int,
    height: int,
    depth: np.ndarray | None = None,
    max_candidates: int = 1 << 22,
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise triangles at pixel centres, one triangle per pixel.

    Args as :func:`rasterize_fragments` (perspective). With ``depth`` the nearest triangle wins;
    without it, where triangles overlap the one rasterised last wins (UV layouts do not overlap).
    Returns:
        ``face_id [H, W]`` int64 (−1 where empty) and ``bary [H, W, 3]`` float32 weights of the face's
        three corners.
    """
    face_id = np.full(height * width, -1, dtype=np.int64)
    bary = np.zeros((height * width, 3), dtype=np.float32)
    zbuf = np.full(height * width, np.inf)
    for pix, faces_hit, w, z in _fragment_chunks(xy, faces, width, height, depth, True, max_candidates):
        if z is None:
            face_id[pix] = faces_hit
            bary[pix] = w
            continue
        order = np.lexsort((z, pix))
        first = order[np.unique(pix[order], return_index=True)[1]]
        p, zf = pix[first], z[first]
        closer = zf < zbuf[p]
        p, first = p[closer], first[closer]
        zbuf[p] = zf[closer]
        face_id[p] = faces_hit[first]
        bary[p] = w[first]
    return face_id.reshape(height, width), bary.reshape(height, width, 3)


@dataclass
class RenderMesh:
    """One textured primitive in world coordinates, ready to render.

    ``vertices [V,3]`` float64, ``faces [F,3]`` int64, ``uv [V,2]`` glTF texture coordinates (v down)
    or ``None``, ``base_color [H,W,4]`` float32 texture in [0,1] or ``None``, ``factor [4]`` float32
    base-colour factor, ``alpha_mode`` ("OPAQUE" | "MASK" | "BLEND"), ``alpha_cutoff``;
    ``normals [V,3]`` unit vertex normals (world) or ``None`` (flat shading with face normals);
    ``metallic`` / ``roughness`` factors and ``metallic_roughness [H,W,3]`` texture (G roughness,
    B metallic) or ``None``; ``vertex_colors [V,4]`` (RGBA in [0,1], multiplies the base colour, as glTF
    ``COLOR_0``) and ``vertex_metallic_roughness [V,2]`` (multiply the factors) or ``None``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None
    base_color: np.ndarray | None
    factor: np.ndarray
    alpha_mode: str = "OPAQUE"
    alpha_cutoff: float = 0.5
    normals: np.ndarray | None = None
    metallic: float = 0.0
    roughness: float = 1.0
    metallic_roughness: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    vertex_metallic_roughness: np.ndarray | None = None


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


def scene_render_meshes(scene: trimesh.Scene | trimesh.Trimesh) -> list[RenderMesh]:
    """The triangle primitives of a trimesh scene (or mesh) in world coordinates: node transforms
    applied to positions and (inverse-transpose) to the stored vertex normals; glTF materials (a
    primitive without a material is a plain dielectric: metallic 0, roughness 1)."""
    if isinstance(scene, trimesh.Trimesh):
        placed = [(np.eye(4), scene)]
    else:
        placed = [(scene.graph[node][0], scene.geometry[scene.graph[node][1]]) for node in scene.graph.nodes_geometry]
    meshes = []
    for transform, geom in placed:
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        v = trimesh.transform_points(np.asarray(geom.vertices, dtype=np.float64), transform)
        normals = np.asarray(geom.vertex_normals, dtype=np.float64) @ np.linalg.inv(transform[:3, :3])
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        uv, tex, mr_tex, factor, mode, cutoff = None, None, None, np.ones(4, dtype=np.float32), "OPAQUE", 0.5
        metallic, roughness = 0.0, 1.0
        visual = geom.visual
        material = getattr(visual, "material", None)
        if material is not None:
            pbr = material.to_pbr() if hasattr(material, "to_pbr") else material
            if getattr(pbr, "baseColorFactor", None) is not None:
                factor = np.asarray(pbr.baseColorFactor, dtype=np.float32).reshape(-1)
                factor = factor / 255.0 if factor.max() > 1.0 else factor
            tex = _to_array(getattr(pbr, "baseColorTexture", None))
            mr_tex = _to_array(getattr(pbr, "metallicRoughnessTexture", None), 3)
            # glTF defaults: metallic 1, roughness 1
            metallic = float(1.0 if getattr(pbr, "metallicFactor", None) is None else pbr.metallicFactor)
            roughness = float(1.0 if getattr(pbr, "roughnessFactor", None) is None else pbr.roughnessFactor)
            mode = getattr(pbr, "alphaMode", None) or "OPAQUE"
            cutoff = float(getattr(pbr, "alphaCutoff", None) or 0.5)
            if getattr(visual, "uv", None) is not None and len(visual.uv) == len(geom.vertices):
                uv = np.asarray(visual.uv, dtype=np.float64)[:, :2].copy()
                uv[:, 1] = 1.0 - uv[:, 1]  # trimesh stores v up; back to glTF's v down
        if uv is None:
            tex = mr_tex = None
        colors = getattr(visual, "vertex_colors", None) if getattr(visual, "kind", None) == "vertex" else None
        if colors is not None and tex is None:
            factor = np.asarray(colors, dtype=np.float32).mean(0) / 255.0
        meshes.append(RenderMesh(v, np.asarray(geom.faces, dtype=np.int64), uv, tex, factor, mode, cutoff,
                                 normals, metallic, roughness, mr_tex))
    return meshes


def load_render_meshes(path: str | Path) -> list[RenderMesh]:
    """The triangle primitives of a GLB/glTF file in world coordinates (see :func:`scene_render_meshes`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        scene = trimesh.load(str(path), force="scene", process=False)
    except Exception as exc:  # trimesh raises many exception types for malformed files
        raise UserError(f"cannot read {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    meshes = scene_render_meshes(scene)
    if not meshes:
        raise UserError(f"{path} contains no triangles")
    return meshes


def glb_camera(path: str | Path | bytes) -> Camera:
    """The first perspective camera node of a GLB file or GLB bytes (world transform from the node hierarchy)."""
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
        yfov, aspect = float(persp["yfov"]), float(persp.get("aspectRatio", 1.0))
        fov_x = yfov if aspect == 1.0 else 2.0 * math.atan(math.tan(yfov / 2.0) * aspect)
        return Camera(matrix, fov_x, yfov, znear=float(persp.get("znear", 1e-3)))
    where = "the GLB data" if isinstance(path, bytes) else path
    raise UserError(f"{where} has no perspective camera node (use --camera turntable)")


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


#: what :func:`render_passes` can produce
PASSES = ("shaded", "albedo", "mask", "normal", "depth")


def render(
    meshes: list[RenderMesh],
    camera: Camera,
    size: int = 512,
    mode: str = "shaded",
    background: tuple[float, float, float] | None = (1.0, 1.0, 1.0),
    supersample: int = 1,
    environment: Environment | None = None,
) -> np.ndarray:
    """Render primitives through ``camera``: one pass of :func:`render_passes`.

    Args:
        mode: ``"shaded"`` (the preview shading of the module docstring), ``"albedo"`` (unlit base
            colour), ``"mask"``, ``"normal"`` (camera-frame geometric normals) or ``"depth"``.
        background: RGB the image is composited over, or ``None`` for straight (unpremultiplied)
            alpha on a transparent background.
        supersample: render at ``supersample × size`` and box-filter down (anti-aliasing).
        environment: light ``shaded`` with this environment map instead of the camera-fixed preview lights.
    Returns:
        ``[size, size, 4]`` float32 RGBA in [0, 1] for ``shaded``/``albedo``/``normal`` (alpha = coverage ×
        material alpha, composited front to back); ``[size, size]`` bool for ``mask`` (alpha ≥ 0.5);
        ``[size, size]`` float32 for ``depth``.
    """
    if mode not in PASSES:
        raise ValueError(f"unknown render mode {mode!r}")
    return render_passes(meshes, camera, size, (mode,), background, supersample, environment)[mode]


def render_passes(
    meshes: list[RenderMesh],
    camera: Camera,
    size: int = 512,
    passes: tuple[str, ...] = ("shaded",),
    background: tuple[float, float, float] | None = (1.0, 1.0, 1.0),
    supersample: int = 1,
    environment: Environment | None = None,
) -> dict[str, np.ndarray]:
    """Several passes of one rasterisation through ``camera`` (same fragments, same coverage).

    Passes (any of :data:`PASSES`):

    * ``shaded``, ``albedo``: as :func:`render`; ``[size, size, 4]`` float32 RGBA.
    * ``normal``: the unit **geometric** (face) normal of each fragment, turned toward the eye, in the
      camera frame (x right, y up, z toward the camera), stored as ``(n + 1) / 2`` in RGB and
      composited like a colour (decode with ``2·rgb − 1`` and renormalise); ``[size, size, 4]``.
    * ``mask``: ``[size, size]`` bool, alpha ≥ 0.5.
    * ``depth``: ``[size, size]`` float32 distance along the viewing axis of the nearest fragment
      (after MASK cut-outs), ``inf`` where nothing is hit; with supersampling the nearest sub-pixel.

    ``background`` applies to the RGBA passes (``None``: straight alpha); ``environment`` lights ``shaded``
    (:mod:`pixal3d.core.environment`) in place of the camera-fixed preview lights.
    """
    unknown = [p for p in passes if p not in PASSES]
    if unknown:
        raise ValueError(f"unknown render pass {unknown[0]!r}")
    if int(supersample) < 1:
        raise ValueError(f"supersample must be at least 1, got {supersample}")
    res = size * int(supersample)
    world_to_cam = np.linalg.inv(camera.cam_to_world)
    vertices = np.concatenate([m.vertices for m in meshes])
    faces = np.concatenate([m.faces + o for m, o in zip(meshes, np.cumsum([0] + [len(m.vertices) for m in meshes]))])
    face_start = np.cumsum([0] + [len(m.faces) for m in meshes])
    owner = np.repeat(np.arange(len(meshes)), [len(m.faces) for m in meshes])
    pc = vertices @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    depth = -pc[:, 2]
    K = camera.pixel_intrinsics(res)
    if camera.ortho_half is None:
        in_front = depth > camera.znear
        safe = np.where(in_front, depth, np.nan)
        xy = np.stack([K[0, 0] * pc[:, 0] / safe + K[0, 2], -K[1, 1] * pc[:, 1] / safe + K[1, 2]], 1)
        # faces behind the near plane or with non-finite projections are skipped by the rasteriser
        xy, depth = np.nan_to_num(xy, nan=-1e9), np.where(in_front, depth, -1.0)
    else:
        xy = np.stack([K[0, 0] * pc[:, 0] + K[0, 2], -K[1, 1] * pc[:, 1] + K[1, 2]], 1)
    pixel, face, bary, z = rasterize_fragments(xy, faces, res, res, depth, perspective=camera.ortho_half is None)

    # depth pre-pass: per pixel, only the nearest OPAQUE fragment and the others in front of it remain
    opaque = np.array([m.alpha_mode == "OPAQUE" for m in meshes])[owner[face]]
    order = np.nonzero(opaque)[0]
    order = order[np.lexsort((z[order], pixel[order]))]
    head = order[np.r_[True, pixel[order][1:] != pixel[order][:-1]][: len(order)]]
    nearest = np.full(res * res, np.inf)
    nearest[pixel[head]] = z[head]
    keep = ~opaque & (z <= nearest[pixel] + 1e-9 * np.abs(nearest[pixel]))
    keep[head] = True
    pixel, face, bary, z = pixel[keep], face[keep], bary[keep], z[keep]

    shaded = "shaded" in passes
    base = np.zeros((len(face), 4))
    metal = np.zeros(len(face))
    rough = np.ones(len(face))
    normal = np.zeros((len(face), 3))
    geometric = np.zeros((len(face), 3)) if "normal" in passes else None
    keep = np.ones(len(face), dtype=bool)
    mesh_of = owner[face]
    for k, m in enumerate(meshes):
        sel = np.nonzero(mesh_of == k)[0]
        if len(sel) == 0:
            continue
        corners = m.faces[face[sel] - face_start[k]]
        color = np.broadcast_to(m.factor, (len(sel), 4)).astype(np.float64)
        metallic, roughness = np.full(len(sel), m.metallic), np.full(len(sel), m.roughness)
        if m.uv is not None and (m.base_color is not None or m.metallic_roughness is not None):
            uv = np.einsum("mk,mkc->mc", bary[sel], m.uv[corners])
            if m.base_color is not None:
                color = color * _sample(m.base_color, uv)
            if m.metallic_roughness is not None:
                mr = _sample(m.metallic_roughness, uv)
                roughness, metallic = roughness * mr[:, 1], metallic * mr[:, 2]
        if m.vertex_colors is not None:
            color = color * np.einsum("mk,mkc->mc", bary[sel], np.asarray(m.vertex_colors, dtype=np.float64)[corners])
        if m.vertex_metallic_roughness is not None:
            mr = np.einsum("mk,mkc->mc", bary[sel], np.asarray(m.vertex_metallic_roughness, dtype=np.float64)[corners])
            metallic, roughness = metallic * mr[:, 0], roughness * mr[:, 1]
        if m.alpha_mode == "OPAQUE":
            color[:, 3] = 1.0
        elif m.alpha_mode == "MASK":
            keep[sel] = color[:, 3] >= m.alpha_cutoff
            color[:, 3] = 1.0
        base[sel], metal[sel], rough[sel] = color, metallic, roughness
        if shaded or geometric is not None:
            tri = m.vertices[corners]
            face_normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            if geometric is not None:
                geometric[sel] = face_normal
            if shaded:
                normal[sel] = face_normal if m.normals is None else np.einsum("mk,mkc->mc", bary[sel], m.normals[corners])
    pixel, face, bary, z, base, metal, rough, normal = (
        a[keep] for a in (pixel, face, bary, z, base, metal, rough, normal))
    if geometric is not None:
        geometric = geometric[keep]

    colors: dict[str, np.ndarray] = {}
    rotation = camera.cam_to_world[:3, :3]  # columns: camera right, up, back
    if shaded or geometric is not None:
        if camera.ortho_half is None:
            point = np.einsum("mk,mkc->mc", bary, vertices[faces[face]])
            to_eye = camera.cam_to_world[:3, 3] - point
            to_eye /= np.maximum(np.linalg.norm(to_eye, axis=1, keepdims=True), 1e-20)
        else:
            to_eye = np.broadcast_to(rotation[:, 2], normal.shape)
    if shaded:
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-20)
        normal = np.where(((normal * to_eye).sum(1) < 0)[:, None], -normal, normal)  # shade the side that is seen
        args = (base[:, :3], np.clip(metal, 0, 1), np.clip(rough, 0.03, 1), normal, to_eye)
        colors["shaded"] = _shade(*args, rotation) if environment is None else environment.shade(*args)
    if "albedo" in passes:
        colors["albedo"] = base[:, :3]
    if geometric is not None:
        geometric /= np.maximum(np.linalg.norm(geometric, axis=1, keepdims=True), 1e-20)
        geometric = np.where(((geometric * to_eye).sum(1) < 0)[:, None], -geometric, geometric)
        colors["normal"] = (geometric @ rotation + 1.0) / 2.0  # world → camera frame: R^T n, as row vectors
    alpha = np.clip(base[:, 3], 0, 1)

    # front-to-back compositing: transmittance in front of each fragment within its pixel
    order = np.lexsort((z, pixel))
    pixel, alpha, z = pixel[order], alpha[order], z[order]
    la = np.log(np.clip(1.0 - alpha, 1e-6, 1.0))
    excl = np.cumsum(la) - la
    first = np.r_[True, pixel[1:] != pixel[:-1]][: len(pixel)]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(pixel)), 0))
    weight = np.exp(excl - excl[group_start]) * alpha
    coverage = np.bincount(pixel, weights=weight, minlength=res * res).reshape(res, res)
    if supersample > 1:
        coverage = coverage.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    coverage = np.clip(coverage, 0.0, 1.0)
    out: dict[str, np.ndarray] = {}
    for name, rgb in colors.items():
        rgb = rgb[order]
        acc = np.stack([np.bincount(pixel, weights=weight * rgb[:, c], minlength=res * res) for c in range(3)],
                       axis=1).reshape(res, res, 3)
        if supersample > 1:
            acc = acc.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
        acc = np.clip(acc, 0.0, 1.0)
        image = np.empty((size, size, 4), dtype=np.float32)
        image[..., 3] = coverage
        if background is None:
            image[..., :3] = acc / np.maximum(coverage[..., None], 1e-8)
        else:
            image[..., :3] = acc + np.asarray(background, dtype=np.float64) * (1.0 - coverage[..., None])
        out[name] = np.clip(image, 0.0, 1.0)
    if "mask" in passes:
        out["mask"] = coverage >= 0.5
    if "depth" in passes:
        zbuf = np.full(res * res, np.inf)
        np.minimum.at(zbuf, pixel, z)
        zbuf = zbuf.reshape(res, res)
        if supersample > 1:
            zbuf = zbuf.reshape(size, supersample, size, supersample).min(axis=(1, 3))
        out["depth"] = zbuf.astype(np.float32)
    return {name: out[name] for name in passes}


def _shade(base: np.ndarray, metal: np.ndarray, rough: np.ndarray, n: np.ndarray, v: np.ndarray,
           rotation: np.ndarray) -> np.ndarray:
    """Preview shading of fragments: base colour ``[M,3]``, metallic / roughness ``[M]``, unit normals and
    unit directions to the eye ``[M,3]`` (world); lights are fixed to the camera (``rotation``:
    camera-to-world 3×3). Returns ``[M,3]`` colours in [0, 1]."""
    lights = [(np.array([-0.5, 0.8, 0.7]), 0.85), (np.array([0.7, 0.1, 0.6]), 0.3)]  # camera-frame directions
    diffuse = base * (1 - metal[:, None])
    f0 = 0.04 * (1 - metal[:, None]) + base * metal[:, None]
    up = np.array([0.0, 1.0, 0.0])
    out = diffuse * (0.28 + 0.12 * (n @ up))[:, None]
    shininess = 2.0 / np.maximum(rough**2, 1e-3)
    for d_cam, intensity in lights:
        d = rotation @ (d_cam / np.linalg.norm(d_cam))
        ndl = np.clip(n @ d, 0, None)
        h = d[None, :] + v
        h /= np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
        spec = (shininess + 2) / 8 * np.clip((n * h).sum(1), 0, None) ** shininess * ndl
        out += intensity * (diffuse * ndl[:, None] + f0 * np.minimum(spec, 20.0)[:, None] * 0.25)
    refl = 2 * (n * v).sum(1, keepdims=True) * n - v
    sky = 0.25 + 0.65 * np.clip(0.5 + 0.5 * refl[:, 1], 0, 1)
    env = sky * (1 - rough) + 0.5 * rough
    return np.clip(out + f0 * env[:, None] * 0.9, 0, 1)


def turntable_cameras(meshes: list[RenderMesh], views: int, yfov: float = math.radians(40.0),
                      elevation: float = math.radians(20.0)) -> list[Camera]:
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
        cams.append(Camera(look_at(centre + dist * direction, centre), yfov))
    return cams


def render_glb(path: str | Path, camera: str = "input", size: int = 512, views: int = 8,
               mode: str = "shaded", supersample: int = 1,
               background: tuple[float, float, float] | None = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Preview a GLB: through its stored camera (``camera="input"``) → ``[size, size, 4]``, or a
    ``turntable`` sheet of ``views`` images around +Y (2 rows) → ``[2·size, ceil(views/2)·size, 4]``.
    ``mode="mask"`` returns bool silhouettes of the same layout; ``background`` as in :func:`render`
    (``None``: straight alpha on a transparent background)."""
    meshes = load_render_meshes(path)
    if camera == "input":
        return render(meshes, glb_camera(path), size, mode, background, supersample)
    if camera != "turntable":
        raise UserError(f"unknown camera {camera!r} (use input or turntable)")
    if views < 1:
        raise UserError(f"views must be at least 1, got {views}")
    images = [render(meshes, cam, size, mode, background, supersample) for cam in turntable_cameras(meshes, views)]
    rows = 1 if views < 4 else 2
    cols = math.ceil(views / rows)
    blank = np.ones_like(images[0]) if mode != "mask" and background is not None else np.zeros_like(images[0])
    images += [blank] * (rows * cols - views)
    return np.concatenate([np.concatenate(images[r * cols:(r + 1) * cols], axis=1) for r in range(rows)], axis=0)


def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write a render (float ``[H, W, C]`` in [0, 1], or a bool mask) as an 8-bit PNG, atomically."""
    from PIL import Image

    from pixal3d.utils.files import atomic_output

    pixels = (image * 255).astype(np.uint8) if image.dtype == bool else np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    with atomic_output(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
