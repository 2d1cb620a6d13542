"""Procedural PBR materials: recipes, their textures and per-vertex UV projections.

A material recipe is a JSON-serialisable dict::

    {"pattern": "solid" | "stripes" | "checks" | "noise" | "gradient" | "dots" | "decals",
     "colors": [[r, g, b], ...] (floats in [0, 1], sRGB), "pattern_params": {...}, "texture_seed": int,
     "metallic": float, "roughness": float,
     "mr_texture": None | {"pattern": ..., "roughness": [lo, hi], "metallic": [lo, hi]},
     "alpha_mode": "OPAQUE" | "BLEND" | "MASK", "alpha": float, "alpha_texture": None | pattern name,
     "alpha_cutoff": float, "double_sided": bool}

Conventions follow the project's GLB files (docs/export.md): base colour texture RGBA (A = alpha),
metallic-roughness texture RGB with R = 0, G = roughness, B = metallic (factors then 1.0).
UVs use trimesh's convention (v up, the exporter flips to glTF's v down); projections map into
``[0, 1]²`` except that faces across the seam of a cylindrical/spherical projection run on past
u = 1 (glTF's default sampler repeats, and the periodic patterns tile seamlessly).
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np
from PIL import Image

Material = dict[str, Any]

PATTERNS = ("solid", "stripes", "checks", "noise", "gradient", "dots", "decals")
#: base-colour texture side, pixels
TEXTURE_SIZE = 256
#: metallic-roughness texture side, pixels
MR_TEXTURE_SIZE = 128


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _color(rng: np.random.Generator) -> list[float]:
    """A random sRGB colour: mostly saturated hues, sometimes greys, whites and near-blacks."""
    if rng.random() < 0.2:
        g = _u(rng, 0.05, 0.95)
        return [g, g, g]
    return [float(c) for c in colorsys.hsv_to_rgb(_u(rng, 0, 1), _u(rng, 0.25, 1.0), _u(rng, 0.25, 1.0))]


def _pattern_params(rng: np.random.Generator, pattern: str) -> dict[str, Any]:
    if pattern == "stripes":
        return {"frequency": int(rng.integers(2, 13)), "angle": float(rng.choice([0.0, 90.0, 45.0, _u(rng, 0, 180)])), "duty": _u(rng, 0.2, 0.8)}
    if pattern == "checks":
        return {"frequency": int(rng.integers(2, 11))}
    if pattern == "noise":
        return {"beta": _u(rng, 1.5, 3.5), "levels": int(rng.integers(0, 4))}
    if pattern == "gradient":
        return {"axis": str(rng.choice(["u", "v", "radial"])), "power": _u(rng, 0.5, 2.0)}
    if pattern == "dots":
        return {"frequency": int(rng.integers(3, 12)), "radius": _u(rng, 0.15, 0.45)}
    if pattern == "decals":
        return {"count": int(rng.integers(1, 6))}
    return {}


def sample_material(rng: np.random.Generator, double_sided: bool = False) -> Material:
    """A random PBR material recipe (see the module docstring for the fields)."""
    pattern = str(rng.choice(PATTERNS, p=[0.3, 0.15, 0.12, 0.15, 0.1, 0.1, 0.08]))
    n_colors = 1 if pattern == "solid" else int(rng.integers(2, 4))
    r = rng.random()  # metallic: about half dielectric, a quarter metal, a quarter anywhere
    metallic = _u(rng, 0.0, 0.05) if r < 0.5 else _u(rng, 0.85, 1.0) if r < 0.75 else _u(rng, 0.0, 1.0)
    material: Material = {
        "pattern": pattern,
        "colors": [_color(rng) for _ in range(n_colors)],
        "pattern_params": _pattern_params(rng, pattern),
        "texture_seed": int(rng.integers(0, 2**31 - 1)),
        "metallic": metallic,
        "roughness": _u(rng, 0.05, 1.0),
        "mr_texture": None,
        "alpha_mode": "OPAQUE",
        "alpha": 1.0,
        "alpha_texture": None,
        "alpha_cutoff": 0.5,
        "double_sided": double_sided,
    }
    if rng.random() < 0.25:
        lo = _u(rng, 0.05, 0.6)
        m_lo = float(rng.choice([0.0, 1.0, _u(rng, 0, 1)]))
        material["mr_texture"] = {
            "pattern": str(rng.choice(["noise", "stripes", "checks", "dots"])),
            "roughness": [lo, min(1.0, lo + _u(rng, 0.1, 0.6))],
            "metallic": [m_lo, m_lo if rng.random() < 0.6 else 1.0 - m_lo],
            "pattern_params": {},
        }
        material["mr_texture"]["pattern_params"] = _pattern_params(rng, material["mr_texture"]["pattern"])
    a = rng.random()
    if a < 0.09:
        material["alpha_mode"] = "BLEND"
        if rng.random() < 0.6:
            material["alpha"] = _u(rng, 0.25, 0.8)
        else:
            material["alpha_texture"] = "gradient"
        material["double_sided"] = True
    elif a < 0.16:
        material["alpha_mode"] = "MASK"
        material["alpha_texture"] = str(rng.choice(["stripes", "dots", "checks"]))
        material["alpha_cutoff"] = 0.5
        material["double_sided"] = True
    if material["alpha_texture"] and material["alpha_texture"] != "gradient":
        material["alpha_params"] = _pattern_params(rng, material["alpha_texture"])
    return material


# --------------------------------------------------------------------------------------------------
# textures


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Texel-centre coordinates ``(u, v)`` in [0, 1], each ``[size, size]``; row 0 is the image top (v = 1)."""
    c = (np.arange(size) + 0.5) / size
    return np.meshgrid(c, 1.0 - c, indexing="xy")


def pattern_field(pattern: str, params: dict[str, Any], size: int, rng: np.random.Generator) -> np.ndarray:
    """A scalar field ``[size, size]`` float32 in [0, 1] drawing ``pattern`` (0/1 for hard-edged patterns)."""
    u, v = _grid(size)
    if pattern == "solid":
        f = np.zeros_like(u)
    elif pattern == "stripes":
        a = np.deg2rad(params["angle"])
        t = (u * np.cos(a) + v * np.sin(a)) * params["frequency"]
        f = ((t % 1.0) < params["duty"]).astype(np.float64)
    elif pattern == "checks":
        k = params["frequency"]
        f = ((np.floor(u * k) + np.floor(v * k)) % 2).astype(np.float64)
    elif pattern == "noise":
        # 1/f^beta noise by spectral filtering of white noise (periodic, so it tiles seamlessly)
        freq = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
        spectrum = np.fft.fft2(rng.normal(size=(size, size))) / np.maximum(freq, 1.0 / size) ** (params["beta"] / 2)
        f = np.real(np.fft.ifft2(spectrum))
        f = (f - f.min()) / max(float(np.ptp(f)), 1e-12)
        if params["levels"]:
            f = np.floor(f * (params["levels"] + 1.999)) / (params["levels"] + 1)
    elif pattern == "gradient":
        t = u if params["axis"] == "u" else v if params["axis"] == "v" else np.clip(np.hypot(u - 0.5, v - 0.5) * 2, 0, 1)
        f = t ** params["power"]
    elif pattern == "dots":
        k = params["frequency"]
        du, dv = (u * k) % 1.0 - 0.5, (v * k) % 1.0 - 0.5
        f = (np.hypot(du, dv) < params["radius"]).astype(np.float64)
    elif pattern == "decals":
        f = np.zeros_like(u)
        for _ in range(params["count"]):
            cu, cv, r = rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85), rng.uniform(0.06, 0.2)
            if rng.random() < 0.5:  # disc
                inside = np.hypot(u - cu, v - cv) < r
            else:  # star
                ang = np.arctan2(v - cv, u - cu)
                inside = np.hypot(u - cu, v - cv) < r * (0.6 + 0.4 * np.cos(5 * ang))
            f = np.where(inside, 1.0, f)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return f.astype(np.float32)


def _colorize(field: np.ndarray, colors: list[list[float]]) -> np.ndarray:
    """Map a [0, 1] field onto a piecewise-linear ramp through ``colors`` → ``[H, W, 3]`` float32."""
    cols = np.asarray(colors, dtype=np.float32)
    if len(cols) == 1:
        return np.broadcast_to(cols[0], field.shape + (3,)).copy()
    x = field * (len(cols) - 1)
    i = np.clip(np.floor(x).astype(int), 0, len(cols) - 2)
    t = (x - i)[..., None]
    return cols[i] * (1 - t) + cols[i + 1] * t


def base_color_texture(material: Material) -> Image.Image | None:
    """The RGBA base-colour texture of ``material`` (``TEXTURE_SIZE``²), or None for solid opaque-factor materials."""
    if material["pattern"] == "solid" and material["alpha_texture"] is None:
        return None
    rng = np.random.default_rng(material["texture_seed"])
    field = pattern_field(material["pattern"], material["pattern_params"], TEXTURE_SIZE, rng)
    rgb = _colorize(field, material["colors"])
    alpha = np.ones(field.shape, dtype=np.float32)
    if material["alpha_texture"] == "gradient":
        alpha = 0.15 + 0.85 * pattern_field("gradient", {"axis": "v", "power": 1.0}, TEXTURE_SIZE, rng)
    elif material["alpha_texture"]:
        alpha = pattern_field(material["alpha_texture"], material["alpha_params"], TEXTURE_SIZE, rng)
        alpha = 1.0 - alpha if alpha.mean() < 0.3 else alpha  # keep most of the surface
    rgba = np.concatenate([rgb, alpha[..., None]], axis=-1)
    return Image.fromarray(np.round(np.clip(rgba, 0, 1) * 255).astype(np.uint8), "RGBA")


def metallic_roughness_texture(material: Material) -> Image.Image | None:
    """The RGB metallic-roughness texture (R = 0, G = roughness, B = metallic), or None for constant factors."""
    spec = material["mr_texture"]
    if spec is None:
        return None
    rng = np.random.default_rng(material["texture_seed"] + 1)
    field = pattern_field(spec["pattern"], spec["pattern_params"], MR_TEXTURE_SIZE, rng)
    rough = spec["roughness"][0] + (spec["roughness"][1] - spec["roughness"][0]) * field
    metal = spec["metallic"][0] + (spec["metallic"][1] - spec["metallic"][0]) * field
    rgb = np.stack([np.zeros_like(field), rough, metal], axis=-1)
    return Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")


def to_pbr(material: Material, name: str):
    """The :class:`trimesh.visual.material.PBRMaterial` for a recipe (textures generated here)."""
    from trimesh.visual.material import PBRMaterial

    base = base_color_texture(material)
    mr = metallic_roughness_texture(material)
    factor = [1.0, 1.0, 1.0] if base is not None else list(material["colors"][0])
    return PBRMaterial(
        name=name,
        baseColorFactor=np.array(factor + [material["alpha"]], dtype=np.float64),
        baseColorTexture=base,
        metallicFactor=1.0 if mr is not None else float(material["metallic"]),
        roughnessFactor=1.0 if mr is not None else float(material["roughness"]),
        metallicRoughnessTexture=mr,
        alphaMode=material["alpha_mode"],
        alphaCutoff=float(material["alpha_cutoff"]) if material["alpha_mode"] == "MASK" else None,
        doubleSided=bool(material["double_sided"]),
    )


# --------------------------------------------------------------------------------------------------
# UV projections


def corner_uvs(vertices: np.ndarray, faces: np.ndarray, mode: str) -> np.ndarray:
    """Per-corner UVs ``[F, 3, 2]`` float64 (in [0, 1], seam faces up to 1.5) for a mesh in its part frame (+Y = the part's axis).

    * ``box``: each face is projected along its dominant normal axis onto the part's bounding box.
    * ``cylindrical``: u = angle about +Y, v = height; faces across the seam get u unwrapped past 1
      and are shifted back so each face stays continuous.
    * ``spherical``: u = longitude about +Y, v = latitude, seam handled as above.
    """
    lo, hi = vertices.min(0), vertices.max(0)
    p = (vertices - lo) / np.maximum(hi - lo, 1e-9)  # [V, 3] in [0, 1]
    tri = p[faces]  # [F, 3, 3]
    if mode == "box":
        n = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
        axis = np.abs(n).argmax(1)
        plane = np.array([[2, 1], [0, 2], [0, 1]])[axis]  # x-facing → (z, y); y-facing → (x, z); z-facing → (x, y)
        uv = np.take_along_axis(tri, np.broadcast_to(plane[:, None, :], (len(faces), 3, 2)), axis=2)
        flip = np.sign(np.take_along_axis(n, axis[:, None], 1))[:, 0]
        mirror = ((axis == 0) & (flip > 0)) | ((axis == 2) & (flip < 0))  # read every side as seen from outside
        uv[..., 0] = np.where(mirror[:, None], 1 - uv[..., 0], uv[..., 0])
        return uv
    centre = (lo + hi) / 2
    d = vertices - centre
    u = (np.arctan2(d[:, 0], d[:, 2]) / (2 * np.pi)) % 1.0
    if mode == "cylindrical":
        v = p[:, 1]
    elif mode == "spherical":
        dn = d / np.maximum((hi - lo) / 2, 1e-9)  # the bounding box as a unit sphere
        v = 0.5 + np.arcsin(np.clip(dn[:, 1] / np.maximum(np.linalg.norm(dn, axis=1), 1e-9), -1, 1)) / np.pi
    else:
        raise ValueError(f"unknown UV projection {mode!r}")
    fu = u[faces]
    wrap = (fu.max(1) - fu.min(1)) > 0.5  # faces straddling the seam: continue them past u = 1
    fu = np.where(wrap[:, None] & (fu < 0.5), fu + 1.0, fu)
    return np.stack([fu, v[faces]], axis=-1)
