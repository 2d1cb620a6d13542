"""Object recipes: which parts an asset has, their shape nodes and which material slot each uses.

Every category sampler takes a :class:`numpy.random.Generator` and returns ``(kind, parts, n_materials)``
where each part is ``{"name", "geometry": shape node, "material": slot, "uv": projection,
"watertight": bool}`` (see :mod:`pixal3d.data.shapes` for shape nodes; projections are ``box``,
``cylindrical`` or ``spherical``). Parts are separate meshes of the GLB scene, so an assembly may use
several materials; the solid of one part is a single boolean result.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from pixal3d.data.shapes import (
    PRIMITIVE_UV,
    Node,
    affine,
    euler,
    random_rotation,
    sample_extrusion,
    sample_primitive,
    sample_revolution,
    sample_sheet,
)

Part = dict[str, Any]
Recipe = tuple[str, list[Part], int]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def part(name: str, geometry: Node, material: int = 0, uv: str | None = None) -> Part:
    """A part record; the UV projection defaults to the one suiting the root shape."""
    if uv is None:
        root = geometry if "shape" in geometry else geometry["children"][0]
        uv = {"revolution": "cylindrical", "extrusion": "box", "sheet": "box"}.get(root["shape"]) or PRIMITIVE_UV[root["shape"]]
    return {"name": name, "geometry": geometry, "material": material, "uv": uv, "watertight": geometry.get("shape") != "sheet"}


# --------------------------------------------------------------------------------------------------
# single-solid categories


def primitive(rng: np.random.Generator) -> Recipe:
    """One primitive with a random non-uniform scale."""
    node = sample_primitive(rng)
    node["matrix"] = affine(scale=rng.uniform(0.6, 1.6, size=3))
    return node["shape"], [part("body", node)], 1


def boolean(rng: np.random.Generator) -> Recipe:
    """A base primitive combined with 1–3 others by union, difference or intersection (exact, manifold3d)."""
    base = sample_primitive(rng, size=1.0)
    node: Node = base
    ops = []
    for _ in range(int(rng.integers(1, 4))):
        op = str(rng.choice(["union", "difference", "intersection"], p=[0.45, 0.45, 0.1]))
        if op == "intersection":
            other = sample_primitive(rng, size=1.1, matrix=affine(random_rotation(rng), translate=rng.uniform(-0.1, 0.1, 3)))
        else:
            other = sample_primitive(rng, size=_u(rng, 0.3, 0.7),
                                     matrix=affine(random_rotation(rng), scale=rng.uniform(0.6, 1.4, 3), translate=rng.uniform(-0.35, 0.35, 3)))
        node = {"op": op, "children": [node, other]}
        ops.append(op)
    return "+".join(ops), [part("body", node, uv=PRIMITIVE_UV[base["shape"]])], 1


def extrusion(rng: np.random.Generator) -> Recipe:
    """A 2-D profile (polygon, star, gear, blob, letter, arc) extruded, maybe twisted or tapered."""
    node = sample_extrusion(rng)
    node["matrix"] = affine(scale=[_u(rng, 0.7, 1.3), _u(rng, 0.7, 1.3), 1.0])
    return node["profile"], [part("body", node)], 1


def revolution(rng: np.random.Generator) -> Recipe:
    """A vase, bottle, bowl, cup (with wall thickness) or solid spindle; bottles may get a cap."""
    node = sample_revolution(rng)
    node["matrix"] = affine(scale=[_u(rng, 0.8, 1.2), 1.0, _u(rng, 0.8, 1.2)])
    parts = [part("body", node)]
    n_mat = 1
    if node["profile_kind"] == "bottle" and rng.random() < 0.7:
        top = max(p[1] for p in node["profile"])
        neck = [p[0] for p in node["profile"] if p[1] == top][0]
        cap = {"shape": "cylinder", "radius": neck * 1.25, "height": 0.08, "matrix": affine(translate=(0, top, 0))}
        parts.append(part("cap", cap, material=1))
        n_mat = 2
    return node["profile_kind"], parts, n_mat


def thin(rng: np.random.Generator) -> Recipe:
    """Thin parts: a plate with holes, a fin, a (twisted) blade, or an open sheet."""
    kind = str(rng.choice(["plate", "fin", "blade", "sheet"]))
    if kind == "plate":
        node = sample_extrusion(rng, profile=str(rng.choice(["polygon", "gear", "blob", "arc"])), thickness=_u(rng, 0.02, 0.06))
        node["matrix"] = affine(scale=[_u(rng, 0.8, 1.2), _u(rng, 0.8, 1.2), 1.0])
    elif kind == "fin":
        sweep = _u(rng, 0.1, 0.6)
        pts = [[-0.5, 0.0], [0.5, 0.0], [0.5 - sweep * 0.3, 0.15], [-0.5 + sweep, _u(rng, 0.5, 0.9)]]
        node = {"shape": "extrusion", "profile": "fin", "contours": [pts], "height": _u(rng, 0.02, 0.06), "matrix": affine()}
    elif kind == "blade":
        t = np.linspace(0, 1, 24)
        half = _u(rng, 0.06, 0.15) * np.sin(np.pi * t) ** _u(rng, 0.5, 1.0)
        y = t * _u(rng, 0.8, 1.2) - 0.5
        pts = np.concatenate([np.stack([half, y], 1), np.stack([-half, y], 1)[::-1][1:-1]])
        node = {"shape": "extrusion", "profile": "blade", "contours": [[[float(a), float(b)] for a, b in pts]],
                "height": _u(rng, 0.01, 0.04), "divisions": 12, "twist": _u(rng, -40, 40) if rng.random() < 0.5 else 0.0,
                "matrix": affine()}
    else:
        node = sample_sheet(rng)
    return kind, [part(kind, node)], 1


def holed(rng: np.random.Generator) -> Recipe:
    """Handles and holes: a mug, a ring, a picture frame, a nut or a tube."""
    kind = str(rng.choice(["mug", "ring", "frame", "nut", "tube"]))
    if kind == "mug":
        r, h, wall = _u(rng, 0.25, 0.4), _u(rng, 0.5, 0.9), _u(rng, 0.02, 0.05)
        body = {"shape": "cylinder", "radius": r, "height": h, "matrix": affine()}
        inner = {"shape": "cylinder", "radius": r - wall, "height": h, "matrix": affine(translate=(0, wall * 2, 0))}
        hr = h * _u(rng, 0.25, 0.4)
        handle = {"shape": "torus", "major": hr, "minor": _u(rng, 0.025, 0.05), "matrix": affine(euler(x=90), scale=[1, 1, 1], translate=(r, 0, 0))}
        node = {"op": "difference", "children": [{"op": "union", "children": [body, handle]}, inner]}
        return kind, [part("mug", node, uv="cylindrical")], 1
    if kind == "ring":
        band = {"shape": "torus", "major": 0.4, "minor": _u(rng, 0.04, 0.1), "matrix": affine(scale=[1, _u(rng, 0.5, 2.0), 1])}
        parts = [part("band", band)]
        if rng.random() < 0.5:
            parts.append(part("gem", {"shape": "sphere", "radius": _u(rng, 0.07, 0.14), "matrix": affine(scale=[1, 0.8, 1], translate=(0.47, 0, 0))}, material=1))
        return kind, parts, len(parts)
    if kind == "frame":
        w, h, d, border = _u(rng, 0.6, 1.0), _u(rng, 0.6, 1.0), _u(rng, 0.04, 0.12), _u(rng, 0.06, 0.15)
        outer_shape = str(rng.choice(["box", "rounded_box"]))
        outer = {"shape": outer_shape, "size": [w, h, d], "matrix": affine()}
        if outer_shape == "rounded_box":
            outer["radius"] = d * 0.45
        window = {"shape": "box", "size": [w - 2 * border, h - 2 * border, d * 3], "matrix": affine()}
        parts = [part("frame", {"op": "difference", "children": [outer, window]}, uv="box")]
        if rng.random() < 0.6:
            parts.append(part("picture", {"shape": "box", "size": [w - border, h - border, d * 0.2], "matrix": affine(translate=(0, 0, -d * 0.3))}, material=1))
        return kind, parts, len(parts)
    if kind == "nut":
        node = {"shape": "extrusion", "profile": "polygon", "height": _u(rng, 0.2, 0.5), "matrix": affine(),
                "contours": [[[0.5 * np.cos(a), 0.5 * np.sin(a)] for a in np.arange(6) * np.pi / 3],
                             [[0.22 * np.cos(a), -0.22 * np.sin(a)] for a in np.arange(32) * np.pi / 16]]}
        node["contours"] = [[[float(x), float(y)] for x, y in c] for c in node["contours"]]
        return kind, [part("nut", node)], 1
    r, length = _u(rng, 0.15, 0.3), _u(rng, 0.6, 1.2)
    node = {"op": "difference", "children": [
        {"shape": "cylinder", "radius": r, "height": length, "matrix": affine()},
        {"shape": "cylinder", "radius": r * _u(rng, 0.6, 0.9), "height": length * 1.1, "matrix": affine()},
    ]}
    return kind, [part("tube", node, uv="cylindrical")], 1


# --------------------------------------------------------------------------------------------------
# multi-part assemblies


def _leg(rng_kind: str, x: float, z: float, height: float, thick: float, top: float) -> Node:
    centre = (x, top - height / 2, z)
    if rng_kind == "box":
        return {"shape": "box", "size": [thick, height, thick], "matrix": affine(translate=centre)}
    return {"shape": "cylinder", "radius": thick / 2, "height": height, "matrix": affine(translate=centre)}


def assembly(rng: np.random.Generator) -> Recipe:
    """Multi-part objects: table, chair, lamp, toy car, snowman, rocket or shelf (one mesh per part)."""
    kind = str(rng.choice(["table", "chair", "lamp", "car", "snowman", "rocket", "shelf"]))
    parts: list[Part] = []
    if kind in ("table", "chair"):
        w, d = _u(rng, 0.6, 1.2), _u(rng, 0.5, 1.0)
        if kind == "chair":
            w = d = _u(rng, 0.45, 0.6)
        height, top_t, leg_t = _u(rng, 0.4, 0.8), _u(rng, 0.03, 0.08), _u(rng, 0.04, 0.09)
        round_top = kind == "table" and rng.random() < 0.3
        top = ({"shape": "cylinder", "radius": w / 2, "height": top_t, "matrix": affine(translate=(0, height, 0))} if round_top
               else {"shape": "rounded_box", "size": [w, top_t, d], "radius": top_t * 0.3, "matrix": affine(translate=(0, height, 0))})
        parts.append(part("top" if kind == "table" else "seat", top))
        leg_kind = str(rng.choice(["box", "cylinder"]))
        inset = leg_t * 0.8
        xs = (w / 2 - inset) * (0.65 if round_top else 1.0)
        zs = (d / 2 - inset) * (0.65 if round_top else 1.0) if not round_top else xs
        for i, (sx, sz) in enumerate([(-1, -1), (1, -1), (-1, 1), (1, 1)]):
            parts.append(part(f"leg{i}", _leg(leg_kind, sx * xs, sz * zs, height, leg_t, height), material=1))
        if kind == "chair":
            back_h = _u(rng, 0.4, 0.7)
            if rng.random() < 0.5:
                back = {"shape": "box", "size": [w, back_h, top_t], "matrix": affine(euler(x=-_u(rng, 0, 12)), translate=(0, height + back_h / 2, -d / 2 + top_t / 2))}
            else:
                back = {"op": "difference", "children": [
                    {"shape": "box", "size": [w, back_h, top_t], "matrix": affine(translate=(0, height + back_h / 2, -d / 2 + top_t / 2))},
                    {"shape": "box", "size": [w * 0.7, back_h * 0.6, top_t * 3], "matrix": affine(translate=(0, height + back_h * 0.45, -d / 2 + top_t / 2))}]}
            parts.append(part("back", back, material=int(rng.integers(0, 3)), uv="box"))
            return kind, parts, 3
        return kind, parts, 2
    if kind == "lamp":
        base_r, pole_h = _u(rng, 0.15, 0.3), _u(rng, 0.5, 1.0)
        parts.append(part("base", {"shape": str(rng.choice(["cylinder", "cone"])), "radius": base_r, "radius_low": base_r, "radius_high": base_r * 0.6,
                                   "height": 0.06, "matrix": affine(translate=(0, 0.03, 0))}))
        parts.append(part("pole", {"shape": "cylinder", "radius": _u(rng, 0.012, 0.03), "height": pole_h, "matrix": affine(translate=(0, pole_h / 2, 0))}, material=1))
        shade = sample_revolution(rng, "bowl")
        shade["matrix"] = affine(euler(x=180) if rng.random() < 0.7 else None, scale=_u(rng, 0.5, 0.9), translate=(0, pole_h + 0.05, 0))
        parts.append(part("shade", shade, material=2))
        return kind, parts, 3
    if kind == "car":
        length, width, height = _u(rng, 0.9, 1.3), _u(rng, 0.45, 0.6), _u(rng, 0.2, 0.3)
        wheel_r = height * _u(rng, 0.6, 0.9)
        parts.append(part("body", {"shape": "rounded_box", "size": [width, height, length], "radius": height * 0.3, "matrix": affine(translate=(0, wheel_r + height / 2 * 0.6, 0))}))
        parts.append(part("cabin", {"shape": "rounded_box", "size": [width * 0.85, height * 0.8, length * _u(rng, 0.35, 0.55)], "radius": height * 0.25,
                                    "matrix": affine(translate=(0, wheel_r + height * 1.1, -length * _u(rng, 0.0, 0.15)))}, material=1))
        wheel_kind = str(rng.choice(["cylinder", "torus"]))
        for i, (sx, sz) in enumerate([(-1, -1), (1, -1), (-1, 1), (1, 1)]):
            pos = (sx * width / 2, wheel_r, sz * length * 0.32)
            wheel = ({"shape": "cylinder", "radius": wheel_r, "height": width * 0.15, "matrix": affine(euler(z=90), translate=pos)} if wheel_kind == "cylinder"
                     else {"shape": "torus", "major": wheel_r * 0.7, "minor": wheel_r * 0.3, "matrix": affine(euler(z=90), translate=pos)})
            parts.append(part(f"wheel{i}", wheel, material=2))
        return kind, parts, 3
    if kind == "snowman":
        y, r = 0.0, _u(rng, 0.3, 0.4)
        for i in range(int(rng.integers(2, 4))):
            parts.append(part(f"ball{i}", {"shape": "sphere", "radius": r, "matrix": affine(translate=(0, y + r, 0))}))
            y += r * 1.7
            r *= _u(rng, 0.6, 0.8)
        head_y = y - r / _u(rng, 0.6, 0.8) * 0.7
        parts.append(part("nose", {"shape": "cone", "radius_low": 0.04, "radius_high": 0.0, "height": 0.2,
                                   "matrix": affine(euler(x=90), translate=(0, head_y, r * 1.3 + 0.1))}, material=1))
        parts.append(part("hat", {"shape": "cylinder", "radius": r * 0.9, "height": r * 1.2, "matrix": affine(translate=(0, y + r * 0.5, 0))}, material=2))
        return kind, parts, 3
    if kind == "rocket":
        body_r, body_h = _u(rng, 0.12, 0.2), _u(rng, 0.7, 1.1)
        parts.append(part("body", {"shape": "capsule" if rng.random() < 0.5 else "cylinder", "radius": body_r, "length": body_h - 2 * body_r,
                                   "height": body_h, "matrix": affine(translate=(0, body_h / 2, 0))}))
        parts.append(part("nose", {"shape": "cone", "radius_low": body_r, "radius_high": 0.0, "height": body_r * 2.5,
                                   "matrix": affine(translate=(0, body_h + body_r * 1.2, 0))}, material=1))
        n_fins = int(rng.integers(3, 5))
        fin_h = _u(rng, 0.2, 0.35)
        pts = [[0.0, 0.0], [fin_h, -0.05], [fin_h * 0.6, fin_h * 0.6], [0.0, fin_h]]
        for i in range(n_fins):
            rot = euler(y=360.0 * i / n_fins)
            parts.append(part(f"fin{i}", {"shape": "extrusion", "profile": "fin", "contours": [pts], "height": 0.025,
                                          "matrix": affine(rot, translate=rot @ np.array([body_r * 0.9, 0.05, 0.0]))}, material=1, uv="box"))
        return kind, parts, 2
    # shelf
    w, h, d, t = _u(rng, 0.6, 1.0), _u(rng, 0.8, 1.4), _u(rng, 0.25, 0.45), _u(rng, 0.02, 0.05)
    for i, sx in enumerate((-1, 1)):
        parts.append(part(f"side{i}", {"shape": "box", "size": [t, h, d], "matrix": affine(translate=(sx * (w / 2 - t / 2), h / 2, 0))}))
    n = int(rng.integers(2, 6))
    for i in range(n):
        y = t / 2 + (h - t) * i / (n - 1)
        parts.append(part(f"shelf{i}", {"shape": "box", "size": [w - 2 * t, t, d], "matrix": affine(translate=(0, y, 0))}, material=1))
    if rng.random() < 0.5:
        parts.append(part("back", {"shape": "box", "size": [w, h, t * 0.5], "matrix": affine(translate=(0, h / 2, -d / 2))}, material=2))
        return kind, parts, 3
    return kind, parts, 2


#: category → (sampler, probability)
CATEGORIES: dict[str, tuple[Callable[[np.random.Generator], Recipe], float]] = {
    "primitive": (primitive, 0.12),
    "boolean": (boolean, 0.18),
    "extrusion": (extrusion, 0.15),
    "revolution": (revolution, 0.15),
    "thin": (thin, 0.1),
    "holed": (holed, 0.12),
    "assembly": (assembly, 0.18),
}
