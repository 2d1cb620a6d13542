"""Previews of textured PBR scenes for the data tools: contact sheets, the ``front`` / ``three_quarter`` cameras of
``pixal3d render`` and the conditioning views of ``pixal3d data build``.

Rendering is :func:`pixal3d.core.render.render` (the one CPU renderer: smooth normals, metallic /
roughness preview shading, MASK and order-independent BLEND transparency, supersampling); this module
makes the data tools' views (:class:`~pixal3d.core.camera.Camera`) and turns their renders into
straight-alpha RGBA ``uint8`` images.

Frames: scenes are glTF (+Y up). The ``front`` camera looks along −Z from ``(0, 0, d)`` with the
official default horizontal field of view and ``d = 1 / (2 tan(fov/2))``; ``three_quarter`` is an
orthographic view from the front-right, above. Images: row 0 at the top, pixel centres at +0.5.
"""

from __future__ import annotations

import math

import numpy as np
import trimesh
from PIL import Image, ImageDraw

from pixal3d.core.camera import DEFAULT_FOV_X, Camera, look_at
from pixal3d.core.environment import Environment
from pixal3d.core.render import render, scene_render_meshes


def front_camera(fov_x: float = DEFAULT_FOV_X) -> Camera:
    """The official default view of the unit cube: from +Z at ``d = 1/(2 tan(fov_x/2))``, looking along −Z."""
    d = 1.0 / (2.0 * math.tan(fov_x / 2.0))
    return Camera(look_at((0.0, 0.0, d)), float(fov_x))


def three_quarter_camera(azimuth_deg: float = 35.0, elevation_deg: float = 25.0) -> Camera:
    """Orthographic view from the front-right and above, framing the whole unit cube."""
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    direction = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    return Camera.orthographic(look_at(direction * 3.0), 0.82)


def render_scene(scene: trimesh.Scene | trimesh.Trimesh, size: int, view: str = "front", camera: Camera | None = None,
                 supersample: int = 1, environment: Environment | None = None) -> np.ndarray:
    """Render ``scene`` to an RGBA image ``[size, size, 4]`` uint8 (straight alpha, transparent background).

    ``view`` is ``front`` (:func:`front_camera`) or ``three_quarter`` (:func:`three_quarter_camera`)
    unless ``camera`` is given; ``supersample`` renders at that factor and box-filters down; ``environment``
    (in the scene's coordinates) replaces the camera-fixed preview lights.
    """
    cam = camera or {"front": front_camera, "three_quarter": three_quarter_camera}[view]()
    meshes = scene_render_meshes(scene)
    if not meshes:
        return np.zeros((size, size, 4), dtype=np.uint8)
    image = render(meshes, cam, size, background=None, supersample=supersample, environment=environment)
    return np.round(image * 255).astype(np.uint8)


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
