"""A small CPU rasteriser for looking at textured PBR scenes (contact sheets, example images).

Vectorised numpy: triangles are scan-converted into fragments at pixel centres (rows, then spans),
shaded (base colour × texture, metallic/roughness, alpha modes) and composited
front to back per pixel, so BLEND materials are order-independent and MASK materials cut holes.
Shading is a preview model, not physically exact: a hemisphere ambient term, two directional lights
fixed to the camera (Lambert + Blinn-Phong with a roughness-dependent exponent) and a sky-gradient
reflection weighted by the Fresnel base reflectance (so metals show their colour).

Frames: scenes are glTF (+Y up). The ``front`` camera looks along −Z from ``(0, 0, d)`` with the
official default horizontal field of view and ``d = 1 / (2 tan(fov/2))``; ``three_quarter`` is an
orthographic view from the front-right, above. Images: row 0 at the top, pixel centres at +0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trimesh
from PIL import Image, ImageDraw

from pixal3d.mesh.io import sample_texture

#: official default horizontal field of view (radians), 2·atan(16/35)
DEFAULT_FOV_X = 0.8575560450553894
#: candidate fragments per rasterisation chunk (bounds memory at a few hundred MB)
CHUNK_FRAGMENTS = 2_000_000


@dataclass
class Camera:
    """A look-at camera. ``fov_x`` in radians (square images), or None for orthographic with
    ``ortho_half`` world units from the image centre to its edge."""

    eye: np.ndarray
    target: np.ndarray
    up: np.ndarray
    fov_x: float | None = None
    ortho_half: float = 0.5

    def basis(self) -> np.ndarray:
        """Rows: camera right, up and back (the camera looks along −back), ``[3,3]``."""
        back = self.eye - self.target
        back = back / np.linalg.norm(back)
        right = np.cross(self.up, back)
        right = right / np.linalg.norm(right)
        return np.stack([right, np.cross(back, right), back])


def front_camera(fov_x: float = DEFAULT_FOV_X) -> Camera:
    """The official default view of the unit cube: from +Z at ``d = 1/(2 tan(fov_x/2))``, looking along −Z."""
    d = 1.0 / (2.0 * math.tan(fov_x / 2.0))
    return Camera(np.array([0.0, 0.0, d]), np.zeros(3), np.array([0.0, 1.0, 0.0]), fov_x=fov_x)


def three_quarter_camera(azimuth_deg: float = 35.0, elevation_deg: float = 25.0) -> Camera:
    """Orthographic view from the front-right and above, framing the whole unit cube."""
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    direction = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    return Camera(direction * 3.0, np.zeros(3), np.array([0.0, 1.0, 0.0]), fov_x=None, ortho_half=0.82)


@dataclass
class _Surface:
    vertices: np.ndarray  # [V,3] world
    faces: np.ndarray  # [F,3]
    normals: np.ndarray  # [V,3]
    uv: np.ndarray | None  # [V,2], trimesh convention
    base_factor: np.ndarray  # [4] in [0,1]
    base_texture: np.ndarray | None  # [H,W,4] float32
    metallic: float
    roughness: float
    mr_texture: np.ndarray | None  # [H,W,3] float32
    alpha_mode: str
    alpha_cutoff: float


def _array(image, mode: str) -> np.ndarray | None:
    return None if image is None else np.asarray(image.convert(mode), dtype=np.float32) / 255.0


def _placed(scene: trimesh.Scene | trimesh.Trimesh) -> list[tuple[trimesh.Trimesh, np.ndarray, np.ndarray]]:
    """``(mesh, world vertices, world unit normals)`` per scene instance; the file's normals are kept
    (``Scene.dump`` would recompute them and show every UV seam)."""
    if isinstance(scene, trimesh.Trimesh):
        return [(scene, np.asarray(scene.vertices, dtype=np.float64), np.asarray(scene.vertex_normals, dtype=np.float64))]
    out = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        m = scene.geometry[name]
        if not isinstance(m, trimesh.Trimesh) or len(m.faces) == 0:
            continue
        linear = transform[:3, :3]
        normals = np.asarray(m.vertex_normals, dtype=np.float64) @ np.linalg.inv(linear)  # inverse transpose
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        out.append((m, np.asarray(m.vertices, dtype=np.float64) @ linear.T + transform[:3, 3], normals))
    return out


def _surfaces(scene: trimesh.Scene | trimesh.Trimesh) -> list[_Surface]:
    out = []
    for m, vertices, normals in _placed(scene):
        mat = getattr(m.visual, "material", None)
        if mat is not None and not isinstance(mat, trimesh.visual.material.PBRMaterial):
            mat = mat.to_pbr()
        uv = getattr(m.visual, "uv", None)
        factor = np.ones(4)
        if mat is not None and mat.baseColorFactor is not None:
            raw = np.asarray(mat.baseColorFactor)
            factor = raw / 255.0 if np.issubdtype(raw.dtype, np.integer) else raw.astype(np.float64)
        out.append(_Surface(
            vertices=vertices, faces=np.asarray(m.faces, dtype=np.int64), normals=normals, uv=None if uv is None else np.asarray(uv, dtype=np.float64),
            base_factor=factor,
            base_texture=_array(mat.baseColorTexture, "RGBA") if mat is not None and uv is not None else None,
            metallic=1.0 if mat is None or mat.metallicFactor is None else float(mat.metallicFactor),
            roughness=1.0 if mat is None or mat.roughnessFactor is None else float(mat.roughnessFactor),
            mr_texture=_array(mat.metallicRoughnessTexture, "RGB") if mat is not None and uv is not None else None,
            alpha_mode=(mat.alphaMode if mat is not None and mat.alphaMode else "OPAQUE"),
            alpha_cutoff=0.5 if mat is None or mat.alphaCutoff is None else float(mat.alphaCutoff),
        ))
    return out


def _spans(px: np.ndarray, t: np.ndarray, iy: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel columns ``[first, last]`` whose centres lie inside triangle ``t`` on pixel row ``iy`` (scanline)."""
    y = iy + 0.5
    xl = np.full(len(t), np.inf)
    xr = np.full(len(t), -np.inf)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        a, b = px[t, i], px[t, j]
        dy = b[:, 1] - a[:, 1]
        crosses = (np.minimum(a[:, 1], b[:, 1]) <= y) & (y <= np.maximum(a[:, 1], b[:, 1])) & (dy != 0)
        x = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / np.where(dy != 0, dy, 1.0)
        xl = np.where(crosses, np.minimum(xl, x), xl)
        xr = np.where(crosses, np.maximum(xr, x), xr)
    first = np.clip(np.ceil(xl - 0.5 - 1e-9), 0, size).astype(np.int64)
    last = np.clip(np.floor(xr - 0.5 + 1e-9), -1, size - 1).astype(np.int64)
    return first, last


def _rasterise(px: np.ndarray, depth: np.ndarray, size: int, perspective: bool) -> tuple[np.ndarray, ...]:
    """Fragments of triangles ``px [T,3,2]`` (pixel coords) with view depths ``[T,3]``:
    ``(pixel id [M], triangle [M], depth [M], perspective-correct barycentrics [M,3])``.

    Triangles are expanded into the pixel rows they span, each row into its covered pixel span
    (scanline, so long thin triangles cost no more than their area), then barycentrics come from
    edge functions at pixel centres."""
    e1, e2 = px[:, 1] - px[:, 0], px[:, 2] - px[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    y0 = np.clip(np.ceil(px[..., 1].min(1) - 0.5), 0, size).astype(np.int64)
    y1 = np.clip(np.floor(px[..., 1].max(1) - 0.5), -1, size - 1).astype(np.int64)
    rows = np.maximum(y1 - y0 + 1, 0)
    rows[(np.abs(area) < 1e-12) | (depth.min(1) <= 1e-6) | (px[..., 0].max(1) < 0) | (px[..., 0].min(1) > size)] = 0
    tris = np.nonzero(rows)[0]
    cum = np.cumsum(rows[tris])
    out = []
    start = 0
    while start < len(tris):
        base = cum[start - 1] if start else 0
        stop = max(int(np.searchsorted(cum, base + CHUNK_FRAGMENTS // 8, side="right")), start + 1)
        t_ids = tris[start:stop]
        r = rows[t_ids]
        t = np.repeat(t_ids, r)
        iy = y0[t] + np.arange(int(r.sum())) - np.repeat(np.cumsum(r) - r, r)
        first, last = _spans(px, t, iy, size)
        n = np.maximum(last - first + 1, 0)
        t, iy, first = np.repeat(t, n), np.repeat(iy, n), np.repeat(first, n)
        ix = first + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        p = np.stack([ix + 0.5, iy + 0.5], axis=1)
        a, b, c = px[t, 0], px[t, 1], px[t, 2]
        w0 = (b[:, 0] - p[:, 0]) * (c[:, 1] - p[:, 1]) - (b[:, 1] - p[:, 1]) * (c[:, 0] - p[:, 0])
        w1 = (c[:, 0] - p[:, 0]) * (a[:, 1] - p[:, 1]) - (c[:, 1] - p[:, 1]) * (a[:, 0] - p[:, 0])
        bary = np.stack([w0, w1], axis=1) / area[t, None]
        bary = np.clip(np.concatenate([bary, 1.0 - bary.sum(1, keepdims=True)], axis=1), 0.0, 1.0)
        bary /= bary.sum(1, keepdims=True)
        z = depth[t]
        if perspective:
            wz = bary / z
            dz = 1.0 / wz.sum(1)
            bary = wz * dz[:, None]
        else:
            dz = (bary * z).sum(1)
        out.append((iy * size + ix, t, dz, bary))
        start = stop
    if not out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3))
    return tuple(np.concatenate(parts) for parts in zip(*out))


def render_scene(scene: trimesh.Scene | trimesh.Trimesh, size: int, view: str = "front", camera: Camera | None = None,
                 supersample: int = 1) -> np.ndarray:
    """Render ``scene`` to an RGBA image ``[size, size, 4]`` uint8 (straight alpha, transparent background).

    ``view`` is ``front`` (:func:`front_camera`) or ``three_quarter`` (:func:`three_quarter_camera`)
    unless ``camera`` is given; ``supersample`` renders at that factor and box-filters down.
    """
    cam = camera or {"front": front_camera, "three_quarter": three_quarter_camera}[view]()
    surfaces = _surfaces(scene)
    res = size * supersample
    basis = cam.basis()
    verts = np.concatenate([s.vertices for s in surfaces])
    offsets = np.cumsum([0] + [len(s.vertices) for s in surfaces])
    faces = np.concatenate([s.faces + o for s, o in zip(surfaces, offsets)])
    surf_of_tri = np.repeat(np.arange(len(surfaces)), [len(s.faces) for s in surfaces])
    vc = (verts - cam.eye) @ basis.T  # camera frame: x right, y up, z back
    vdepth = -vc[:, 2]
    if cam.fov_x is not None:
        scale = 1.0 / (np.maximum(vdepth, 1e-9) * math.tan(cam.fov_x / 2.0))
        ndc = vc[:, :2] * scale[:, None]
    else:
        ndc = vc[:, :2] / cam.ortho_half
    pix = np.stack([(ndc[:, 0] + 1) * 0.5 * res, (1 - ndc[:, 1]) * 0.5 * res], axis=1)
    pixel, tri, dz, bary = _rasterise(pix[faces], vdepth[faces], res, cam.fov_x is not None)
    # depth pre-pass: drop fragments behind the nearest fragment of an OPAQUE surface
    opaque_surf = np.array([s.alpha_mode == "OPAQUE" for s in surfaces])
    opaque = opaque_surf[surf_of_tri[tri]]
    nearest = np.full(res * res, np.inf)
    order = np.lexsort((dz[opaque], pixel[opaque]))
    op_pixel, op_dz = pixel[opaque][order], dz[opaque][order]
    head = np.r_[True, op_pixel[1:] != op_pixel[:-1]][: len(op_pixel)]
    nearest[op_pixel[head]] = op_dz[head]
    visible = dz <= nearest[pixel] * (1 + 1e-9)
    pixel, tri, dz, bary = pixel[visible], tri[visible], dz[visible], bary[visible]

    # per-fragment attributes
    corners = faces[tri]
    pos = np.einsum("mk,mkc->mc", bary, verts[corners])
    all_normals = np.concatenate([s.normals for s in surfaces])
    n = np.einsum("mk,mkc->mc", bary, all_normals[corners])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    to_eye = (cam.eye - pos) if cam.fov_x is not None else np.broadcast_to(basis[2], pos.shape)
    to_eye = to_eye / np.maximum(np.linalg.norm(to_eye, axis=1, keepdims=True), 1e-12)
    n = np.where(((n * to_eye).sum(1) < 0)[:, None], -n, n)  # shade the side that is seen

    base = np.zeros((len(tri), 4))
    metal = np.zeros(len(tri))
    rough = np.ones(len(tri))
    keep = np.ones(len(tri), dtype=bool)
    sid = surf_of_tri[tri]
    for k, s in enumerate(surfaces):
        sel = np.nonzero(sid == k)[0]
        if len(sel) == 0:
            continue
        col = np.broadcast_to(s.base_factor, (len(sel), 4)).copy()
        m = np.full(len(sel), s.metallic)
        r = np.full(len(sel), s.roughness)
        if s.uv is not None and (s.base_texture is not None or s.mr_texture is not None):
            uv = np.einsum("mk,mkc->mc", bary[sel], s.uv[faces[tri[sel]] - offsets[k]])
            if s.base_texture is not None:
                col *= sample_texture(s.base_texture, uv)
            if s.mr_texture is not None:
                mr = sample_texture(s.mr_texture, uv)
                r, m = r * mr[:, 1], m * mr[:, 2]
        if s.alpha_mode == "OPAQUE":
            col[:, 3] = 1.0
        elif s.alpha_mode == "MASK":
            keep[sel] = col[:, 3] >= s.alpha_cutoff
            col[:, 3] = 1.0
        base[sel], metal[sel], rough[sel] = col, m, r
    pixel, dz, base, metal, rough, n, to_eye = (a[keep] for a in (pixel, dz, base, metal, rough, n, to_eye))

    rgb = _shade(base[:, :3], np.clip(metal, 0, 1), np.clip(rough, 0.03, 1), n, to_eye, basis)
    alpha = np.clip(base[:, 3], 0, 1)

    # front-to-back compositing: transmittance in front of each fragment within its pixel
    order = np.lexsort((dz, pixel))
    pixel, rgb, alpha = pixel[order], rgb[order], alpha[order]
    la = np.log(np.clip(1.0 - alpha, 1e-6, 1.0))
    excl = np.cumsum(la) - la
    first = np.r_[True, pixel[1:] != pixel[:-1]][: len(pixel)]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(pixel)), 0))
    weight = np.exp(excl - excl[group_start]) * alpha
    acc = np.stack([np.bincount(pixel, weights=weight * rgb[:, c], minlength=res * res) for c in range(3)]
                   + [np.bincount(pixel, weights=weight, minlength=res * res)], axis=1).reshape(res, res, 4)
    if supersample > 1:
        acc = acc.reshape(size, supersample, size, supersample, 4).mean(axis=(1, 3))
    out = np.zeros_like(acc)
    out[..., 3] = acc[..., 3]
    out[..., :3] = acc[..., :3] / np.maximum(acc[..., 3:], 1e-8)
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def _shade(base: np.ndarray, metal: np.ndarray, rough: np.ndarray, n: np.ndarray, v: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Preview shading of fragments (``[M,3]`` colours in [0, 1]); lights are fixed to the camera."""
    lights = [(np.array([-0.5, 0.8, 0.7]), 0.85), (np.array([0.7, 0.1, 0.6]), 0.3)]  # camera-frame directions
    diffuse = base * (1 - metal[:, None])
    f0 = 0.04 * (1 - metal[:, None]) + base * metal[:, None]
    up = np.array([0.0, 1.0, 0.0])
    out = diffuse * (0.28 + 0.12 * (n @ up))[:, None]
    shininess = 2.0 / np.maximum(rough**2, 1e-3)
    for d_cam, intensity in lights:
        d = basis.T @ (d_cam / np.linalg.norm(d_cam))
        ndl = np.clip(n @ d, 0, None)
        h = d[None, :] + v
        h /= np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
        spec = (shininess + 2) / 8 * np.clip((n * h).sum(1), 0, None) ** shininess * ndl
        out += intensity * (diffuse * ndl[:, None] + f0 * np.minimum(spec, 20.0)[:, None] * 0.25)
    refl = 2 * (n * v).sum(1, keepdims=True) * n - v
    sky = 0.25 + 0.65 * np.clip(0.5 + 0.5 * refl[:, 1], 0, 1)
    env = sky * (1 - rough) + 0.5 * rough
    return np.clip(out + f0 * env[:, None] * 0.9, 0, 1)


def contact_sheet(tiles: list[np.ndarray], labels: list[str], background: tuple[int, int, int] = (92, 92, 96)) -> Image.Image:
    """Lay RGBA tiles (equal sizes, ``[S,S,4]`` uint8) out on a square-ish grid over ``background``, labelled."""
    if not tiles:
        raise ValueError("no tiles for the contact sheet")
    s = tiles[0].shape[0]
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    sheet = Image.new("RGB", (cols * s, rows * s), background)
    draw = ImageDraw.Draw(sheet)
    for k, (tile, label) in enumerate(zip(tiles, labels)):
        x, y = (k % cols) * s, (k // cols) * s
        rgba = Image.fromarray(tile, "RGBA")
        sheet.paste(rgba, (x, y), rgba)
        draw.text((x + 3, y + 2), label, fill=(235, 235, 235))
    return sheet
