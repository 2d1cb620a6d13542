"""Procedural shape recipes and the meshes they describe.

A *shape node* is a JSON-serialisable dict, either a leaf ``{"shape": kind, ...params, "matrix": 3x4}``
or a constructive-solid-geometry node ``{"op": "union" | "difference" | "intersection", "children": [...]}``.
Leaves are built as closed 2-manifold solids with `manifold3d <https://github.com/elalish/manifold>`_
(primitives, extrusions of 2-D profiles, surfaces of revolution, hulls) and combined with its exact
booleans, so every solid part is watertight. The only open surface is the ``sheet`` leaf (a thin bent
flag / leaf / cloth patch), which may only be the root of a part.

Frame: +Y up (glTF), the "front" of an object faces +Z. Sizes are in arbitrary units around 1; the
generator normalises whole assets into the unit cube afterwards.

The ``sample_*`` functions draw recipes from a :class:`numpy.random.Generator`; :func:`build_node`
turns a recipe into ``(vertices [V,3] float64, faces [F,3] int64)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from pixal3d.errors import UserError

try:
    import manifold3d as m3
except ImportError as exc:  # the package is a declared dependency; say what to install instead of a traceback
    raise UserError("procedural shapes need the manifold3d package for exact booleans: pip install manifold3d") from exc

#: segments around a full circle for round primitives
SEGMENTS = 40

Node = dict[str, Any]


class EmptySolid(ValueError):
    """A recipe whose solid came out empty (e.g. a difference that removed everything)."""

Mesh = tuple[np.ndarray, np.ndarray]

#: primitive kinds and the UV projection that suits each
PRIMITIVE_UV = {
    "box": "box", "rounded_box": "box", "sphere": "spherical", "cylinder": "cylindrical",
    "cone": "cylindrical", "capsule": "cylindrical", "torus": "cylindrical",
}


# --------------------------------------------------------------------------------------------------
# matrices


def affine(rotation: np.ndarray | None = None, scale: Any = 1.0, translate: Any = (0.0, 0.0, 0.0)) -> list[list[float]]:
    """The 3x4 affine ``[R · diag(scale) | t]`` as nested float lists (applied to column vectors)."""
    r = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), (3,))
    m = np.concatenate([r * s[None, :], np.asarray(translate, dtype=np.float64).reshape(3, 1)], axis=1)
    return [[float(v) for v in row] for row in m]


def euler(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    """Rotation matrix ``[3,3]`` from extrinsic x, y, z angles in degrees."""
    return Rotation.from_euler("xyz", [x, y, z], degrees=True).as_matrix()


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix ``[3,3]``."""
    q = rng.normal(size=4)
    return Rotation.from_quat(q / np.linalg.norm(q)).as_matrix()


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# --------------------------------------------------------------------------------------------------
# building


def _y_axis(m: "m3.Manifold") -> "m3.Manifold":
    """Turn a solid built along +Z (extrusions, revolutions, cylinders) to run along +Y."""
    return m.rotate((-90.0, 0.0, 0.0))


def _corner_hull(size: np.ndarray, radius: float) -> "m3.Manifold":
    half = np.maximum(np.asarray(size) / 2 - radius, 1e-4)
    ball = m3.Manifold.sphere(radius, SEGMENTS // 2)
    signs = np.array(list(np.ndindex(2, 2, 2))) * 2 - 1
    corners = [ball.translate(tuple(float(v) for v in half * s)) for s in signs]
    return m3.Manifold.batch_hull(corners)


def _leaf(node: Node) -> "m3.Manifold":
    kind = node["shape"]
    if kind == "box":
        m = m3.Manifold.cube(tuple(node["size"]), True)
    elif kind == "rounded_box":
        m = _corner_hull(np.array(node["size"]), node["radius"])
    elif kind == "sphere":
        m = m3.Manifold.sphere(node["radius"], SEGMENTS)
    elif kind == "cylinder":
        m = _y_axis(m3.Manifold.cylinder(node["height"], node["radius"], node["radius"], SEGMENTS, True))
    elif kind == "cone":
        m = _y_axis(m3.Manifold.cylinder(node["height"], node["radius_low"], node["radius_high"], SEGMENTS, True))
    elif kind == "capsule":
        ball = m3.Manifold.sphere(node["radius"], SEGMENTS)
        half = node["length"] / 2
        m = m3.Manifold.batch_hull([ball.translate((0.0, -half, 0.0)), ball.translate((0.0, half, 0.0))])
    elif kind == "torus":
        ring = m3.CrossSection.circle(node["minor"], SEGMENTS // 2).translate((node["major"], 0.0))
        m = _y_axis(ring.revolve(SEGMENTS))
    elif kind == "extrusion":
        section = m3.CrossSection(node["contours"], m3.FillRule.EvenOdd)
        m = section.extrude(node["height"], node.get("divisions", 0), node.get("twist", 0.0), tuple(node.get("scale_top", (1.0, 1.0))))
        m = m.translate((0.0, 0.0, -node["height"] / 2))
    elif kind == "revolution":
        m = _y_axis(m3.CrossSection([node["profile"]]).revolve(SEGMENTS))
    else:
        raise ValueError(f"unknown solid shape {kind!r}")
    return m.transform(node["matrix"])


def _solid(node: Node) -> "m3.Manifold":
    if "op" not in node:
        return _leaf(node)
    children = [_solid(c) for c in node["children"]]
    op = {"union": m3.OpType.Add, "difference": m3.OpType.Subtract, "intersection": m3.OpType.Intersect}[node["op"]]
    return m3.Manifold.batch_boolean(children, op)


def _sheet(node: Node) -> Mesh:
    """An open, bent surface: a grid over an outline in the XY plane, displaced along Z, then placed by ``matrix``."""
    nu, nv = node["segments"]
    u, v = np.meshgrid(np.linspace(-0.5, 0.5, nu + 1), np.linspace(-0.5, 0.5, nv + 1), indexing="xy")
    taper = node["taper"]  # 0 = rectangle (flag), 1 = pointed at both ends along y (leaf/blade)
    width = node["width"] * (1 - taper * (2 * np.abs(v)) ** 2)
    x = u * width
    y = v * node["height"]
    z = node["bend"] * (x / node["width"]) ** 2 + node["wave"] * np.sin(2 * np.pi * (y / node["height"] * node["wave_freq"]))
    verts = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nv + 1, nu + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    mat = np.asarray(node["matrix"], dtype=np.float64)
    return verts @ mat[:, :3].T + mat[:, 3], faces.astype(np.int64)


def build_node(node: Node) -> Mesh:
    """Mesh of a shape recipe: ``(vertices [V,3] float64, faces [F,3] int64)``, counter-clockwise outward.

    Raises :class:`EmptySolid` when the solid comes out empty (e.g. a difference that removed everything).
    """
    if node.get("shape") == "sheet":
        return _sheet(node)
    mesh = _solid(node).to_mesh()
    verts = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3]
    faces = np.asarray(mesh.tri_verts, dtype=np.int64)
    if len(faces) == 0:
        raise EmptySolid("the solid is empty")
    return verts, faces


def node_kinds(node: Node) -> list[str]:
    """The leaf shape kinds used by a recipe node, in order."""
    if "op" in node:
        return [k for c in node["children"] for k in node_kinds(c)]
    return [node["shape"]]


# --------------------------------------------------------------------------------------------------
# primitive and profile samplers


def sample_primitive(rng: np.random.Generator, kind: str | None = None, size: float = 1.0, matrix: list | None = None) -> Node:
    """A random primitive leaf of overall size ~``size`` (placed by ``matrix``, identity by default)."""
    kind = kind or str(rng.choice(list(PRIMITIVE_UV)))
    s = size
    node: Node = {"shape": kind}
    if kind == "box":
        node["size"] = [s * _u(rng, 0.3, 1.0) for _ in range(3)]
    elif kind == "rounded_box":
        dims = [s * _u(rng, 0.35, 1.0) for _ in range(3)]
        node["size"] = dims
        node["radius"] = min(dims) * _u(rng, 0.08, 0.45)
    elif kind == "sphere":
        node["radius"] = s * _u(rng, 0.3, 0.5)
    elif kind == "cylinder":
        node["radius"] = s * _u(rng, 0.15, 0.5)
        node["height"] = s * _u(rng, 0.3, 1.0)
    elif kind == "cone":
        r = s * _u(rng, 0.2, 0.5)
        node["radius_low"] = r
        node["radius_high"] = r * (0.0 if rng.random() < 0.5 else _u(rng, 0.2, 0.8))
        node["height"] = s * _u(rng, 0.4, 1.0)
    elif kind == "capsule":
        node["radius"] = s * _u(rng, 0.12, 0.3)
        node["length"] = s * _u(rng, 0.2, 0.7)
    elif kind == "torus":
        major = s * _u(rng, 0.25, 0.45)
        node["major"] = major
        node["minor"] = major * _u(rng, 0.12, 0.5)
    node["matrix"] = matrix or affine()
    return node


def _circle(n: int, radius: float = 1.0, phase: float = 0.0, center: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)], axis=1)


def _contour(points: np.ndarray, reverse: bool = False) -> list[list[float]]:
    pts = points[::-1] if reverse else points
    return [[float(x), float(y)] for x, y in pts]


def sample_profile(rng: np.random.Generator, kind: str | None = None) -> tuple[str, list[list[list[float]]]]:
    """A random 2-D profile of size ~1 (centred) as contours (even-odd fill): ``(kind, contours)``.

    Kinds: ``polygon`` (regular, 3–8 sides), ``star``, ``gear``, ``blob`` (smooth random radius),
    ``letter`` (union of strokes on a 3x5 grid, like a block glyph), ``arc`` (a thick partial ring).
    """
    kind = kind or str(rng.choice(["polygon", "star", "gear", "blob", "letter", "arc"]))
    holes: list[np.ndarray] = []
    if kind == "polygon":
        outer = _circle(int(rng.integers(3, 9)), 0.5, _u(rng, 0, np.pi))
    elif kind == "star":
        n = int(rng.integers(4, 10))
        r = np.where(np.arange(2 * n) % 2 == 0, 0.5, 0.5 * _u(rng, 0.3, 0.7))
        outer = _circle(2 * n, 1.0, _u(rng, 0, np.pi)) * r[:, None]
    elif kind == "gear":
        teeth = int(rng.integers(6, 16))
        t = np.arange(teeth * 4)
        r = np.where((t % 4) < 2, 0.5, 0.5 * _u(rng, 0.72, 0.88))
        outer = _circle(teeth * 4, 1.0) * r[:, None]
    elif kind == "blob":
        n = 64
        t = 2 * np.pi * np.arange(n) / n
        r = 0.38 + sum(_u(rng, -0.08, 0.08) * np.cos(k * t + _u(rng, 0, 2 * np.pi)) for k in range(1, 5))
        outer = np.stack([np.cos(t), np.sin(t)], axis=1) * r[:, None]
    elif kind == "arc":
        span = _u(rng, 0.9, 1.7) * np.pi
        t = np.linspace(-span / 2, span / 2, 33) + np.pi / 2
        ro, ri = 0.5, 0.5 * _u(rng, 0.45, 0.8)
        outer = np.concatenate([np.stack([np.cos(t), np.sin(t)], 1) * ro, np.stack([np.cos(t[::-1]), np.sin(t[::-1])], 1) * ri])
    elif kind == "letter":
        return kind, _letter(rng)
    else:
        raise ValueError(f"unknown profile {kind!r}")
    if kind in ("polygon", "gear", "blob") and rng.random() < 0.5:
        holes.append(_circle(SEGMENTS, 0.5 * _u(rng, 0.15, 0.4)) if rng.random() < 0.7 else _circle(int(rng.integers(3, 7)), 0.18))
    return kind, [_contour(outer)] + [_contour(h, reverse=True) for h in holes]


def _letter(rng: np.random.Generator) -> list[list[list[float]]]:
    """A block glyph: random horizontal/vertical strokes on a 3x5 grid joined into one outline."""
    cols, rows, w = 3, 5, 0.2
    strokes = [("v", 0, 0, rows - 1)]  # a spine keeps the glyph connected
    for _ in range(int(rng.integers(2, 5))):
        if rng.random() < 0.5:
            r = int(rng.integers(0, rows))
            strokes.append(("h", r, 0, int(rng.integers(1, cols))))
        else:
            c = int(rng.integers(1, cols))
            r0 = int(rng.integers(0, rows - 1))
            strokes.append(("v", c, r0, int(rng.integers(r0 + 1, rows))))
    sections = []
    for kind, a, b0, b1 in strokes:
        if kind == "v":
            x0, x1, y0, y1 = a * w, a * w + w, b0 * w, b1 * w + w
        else:
            x0, x1, y0, y1 = b0 * w, b1 * w + w, a * w, a * w + w
        sections.append(m3.CrossSection.square((x1 - x0, y1 - y0)).translate((x0 - cols * w / 2, y0 - rows * w / 2)))
    glyph = m3.CrossSection.batch_boolean(sections, m3.OpType.Add)
    if rng.random() < 0.5:  # rounded stroke ends
        glyph = glyph.offset(-0.04, m3.JoinType.Round).offset(0.04, m3.JoinType.Round)
    return [[[float(x), float(y)] for x, y in poly] for poly in glyph.to_polygons()]


def sample_extrusion(rng: np.random.Generator, profile: str | None = None, thickness: float | None = None) -> Node:
    """A random profile extruded along Z (optionally twisted and tapered)."""
    kind, contours = sample_profile(rng, profile)
    height = thickness if thickness is not None else _u(rng, 0.15, 1.2)
    node: Node = {"shape": "extrusion", "profile": kind, "contours": contours, "height": height}
    if thickness is None and rng.random() < 0.3:
        node["twist"] = _u(rng, -120, 120)
        node["divisions"] = 16
    if thickness is None and rng.random() < 0.3:
        t = _u(rng, 0.3, 1.0)
        node["scale_top"] = [t, t * _u(rng, 0.8, 1.2)]
    node["matrix"] = affine()
    return node


def sample_revolution(rng: np.random.Generator, kind: str | None = None) -> Node:
    """A surface of revolution about +Y: hollow ``vase``/``bottle``/``bowl``/``cup`` (with wall thickness) or solid ``spindle``."""
    kind = kind or str(rng.choice(["vase", "bottle", "bowl", "cup", "spindle"]))
    n = 48
    y = np.linspace(0.0, 1.0, n)
    if kind == "bowl":
        height = _u(rng, 0.3, 0.6)
        r = 0.15 + 0.35 * np.sqrt(np.clip(y, 0, 1)) ** _u(rng, 0.6, 1.4)
    elif kind == "cup":
        height = _u(rng, 0.6, 1.1)
        r = _u(rng, 0.2, 0.3) + _u(rng, 0.0, 0.15) * y
    elif kind == "bottle":
        height = _u(rng, 1.0, 1.6)
        body, neck, shoulder = _u(rng, 0.22, 0.35), _u(rng, 0.06, 0.1), _u(rng, 0.45, 0.7)
        blend = 1 / (1 + np.exp(-(y - shoulder - 0.08) * 30))
        r = body * (1 - blend) + neck * blend
    else:  # vase and spindle: a smooth random radius curve
        height = _u(rng, 0.7, 1.5)
        ctrl = rng.uniform(0.12, 0.45, size=int(rng.integers(3, 6)))
        r = np.interp(y, np.linspace(0, 1, len(ctrl)), ctrl)
        r = np.convolve(np.pad(r, 6, mode="edge"), np.ones(13) / 13, mode="valid")
    y = y * height
    if kind == "spindle":
        pts = np.concatenate([[[0.0, 0.0]], np.stack([r, y], 1), [[0.0, height]]])
    else:
        wall = _u(rng, 0.015, 0.05)
        base = wall * _u(rng, 1.0, 3.0)
        r = np.maximum(r, wall + 0.03)
        inner = y > base
        pts = np.concatenate([
            [[0.0, 0.0]], np.stack([r, y], 1),                                   # outside, bottom to rim
            np.stack([r[inner] - wall, y[inner]], 1)[::-1],                      # inside, rim to floor
            [[0.0, base]],
        ])
    return {"shape": "revolution", "profile_kind": kind, "profile": _contour(pts), "matrix": affine()}


def sample_sheet(rng: np.random.Generator) -> Node:
    """An open thin surface (flag, leaf, bent panel): not watertight, meant for double-sided materials."""
    return {
        "shape": "sheet", "width": _u(rng, 0.4, 1.0), "height": _u(rng, 0.6, 1.2), "taper": float(rng.choice([0.0, _u(rng, 0.6, 1.0)])),
        "bend": _u(rng, -0.3, 0.3), "wave": _u(rng, 0.0, 0.08), "wave_freq": _u(rng, 0.5, 2.0), "segments": [16, 24],
        "matrix": affine(),
    }
