"""Ground truth of the fidelity benchmark: a mesh, its evaluation cameras and its renders.

Frames and cameras follow the training convention of :mod:`pixal3d.data.build` exactly:

* the mesh is loaded into its canonical frame (:func:`pixal3d.mesh.io.load_mesh`, up axis per file),
  normalised into the unit cube;
* view ``k`` is drawn with :func:`pixal3d.data.build.draw_views` (azimuth U(0°, 360°), elevation
  U(−20°, 50°), horizontal FOV U(0.2, 1.0) rad, distance factor U(1.0, 1.2)) from
  ``numpy.random.default_rng([seed, int(sha256(file bytes)[:8], 16)])`` — the file's content, not
  its name, picks the cameras;
* the mesh is rotated into the view frame (x image right, y up, z toward the camera) and re-normalised
  (:func:`~pixal3d.data.build.view_mesh`, longest side 0.98); the input camera sits at ``(0, 0, d)``
  looking at the origin with ``mesh_scale`` 1 (:func:`~pixal3d.data.build.view_distance`), which is
  the :class:`pixal3d.core.camera.Camera` the model is given and the frame its output lives in.

Held-out cameras turn the input camera about the object's up axis (the canonical +y expressed in the
view frame) through the cube centre by ``360°·j/(H+1)``, ``j = 1..H``, with the same FOV and distance.

Renders use the project's one renderer (:func:`pixal3d.core.render.render_passes`) and the same
camera-fixed light rig for ground truth and predictions. The input view is 2× supersampled like the
training images: shaded RGBA (straight alpha; the input image), albedo, mask (alpha ≥ 0.5),
camera-frame geometric normals and depth; held-out views render the same passes without supersampling
(for predictions only the scored mask and normals). Textured meshes keep their materials; geometry-only meshes get :data:`NEUTRAL_MATERIAL`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pixal3d.core.camera import Camera
from pixal3d.core.render import RenderMesh, render_passes, scene_render_meshes
from pixal3d.data.build import FILL, ViewParams, draw_views, view_distance, view_mesh, view_rotation
from pixal3d.data.overlap import file_sha256
from pixal3d.errors import UserError

#: base colour RGBA, metallic, roughness of geometry-only meshes (and of predictions without colour)
NEUTRAL_MATERIAL = (np.array([0.75, 0.75, 0.75, 1.0], dtype=np.float32), 0.0, 1.0)
#: supersampling of the input-view renders (the training images use the same, data.build.SUPERSAMPLE)
SUPERSAMPLE = 2
#: passes of the input view
PASSES = ("shaded", "albedo", "mask", "normal", "depth")
#: passes of the predictions' held-out views (only masks and normals are scored there; the ground truth
#: renders every pass) and the held-out supersampling
HELD_OUT_PASSES = ("mask", "normal")
HELD_OUT_SUPERSAMPLE = 1
#: a base-colour texture with at most this many texels is a loader placeholder (trimesh gives UV-only
#: OBJs a 2×2 one), not a texture
PLACEHOLDER_TEXELS = 4


def held_out_yaws(count: int) -> tuple[float, ...]:
    """Yaw offsets in degrees of ``count`` held-out cameras: ``360·j/(count+1)``, ``j = 1..count``
    (3 → 90°, 180°, 270°; 4 → 72°, 144°, 216°, 288°)."""
    return tuple(360.0 * j / (count + 1) for j in range(1, count + 1))


def eval_views(sha256: str, seed: int, count: int) -> list[ViewParams]:
    """The ``count`` evaluation views of a file with content hash ``sha256`` (prefix-stable in count)."""
    return draw_views(np.random.default_rng([int(seed), int(sha256[:8], 16)]), count)


# --------------------------------------------------------------------------------------------------
# cameras


def input_camera(fov_x: float, distance: float) -> Camera:
    """The training front camera ``input``: at ``(0, 0, distance)`` of the view frame, looking at the origin."""
    c2w = np.eye(4)
    c2w[2, 3] = float(distance)
    return Camera(c2w, float(fov_x), name="input")


def orbit_camera(camera: Camera, axis: np.ndarray, yaw_deg: float, name: str | None = None) -> Camera:
    """``camera`` turned by ``yaw_deg`` about ``axis`` through the origin (right-handed)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    t = math.radians(yaw_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(4)
    rot[:3, :3] = np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * (k @ k)
    return dataclasses.replace(camera, cam_to_world=rot @ camera.cam_to_world, name=name or f"yaw_{yaw_deg:05.1f}")


def render_camera(meshes: list[RenderMesh], camera: Camera, size: int,
                  passes: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The evaluation renders of ``meshes`` through ``camera`` (straight alpha): held-out cameras
    :data:`HELD_OUT_PASSES` at :data:`HELD_OUT_SUPERSAMPLE`, the others ``passes`` (default :data:`PASSES`)
    at :data:`SUPERSAMPLE`."""
    held = camera.name.startswith("heldout")
    passes = passes or (HELD_OUT_PASSES if held else PASSES)
    if not meshes or not any(len(m.faces) for m in meshes):
        empty = {"mask": np.zeros((size, size), bool), "depth": np.full((size, size), np.inf, np.float32)}
        return {p: empty.get(p, np.zeros((size, size, 4), np.float32)) for p in passes}
    return render_passes(meshes, camera, size, passes, background=None,
                         supersample=HELD_OUT_SUPERSAMPLE if held else SUPERSAMPLE)


# --------------------------------------------------------------------------------------------------
# meshes


def has_colour(mesh: RenderMesh) -> bool:
    """True when a primitive carries a base colour of its own: a real texture (more than
    :data:`PLACEHOLDER_TEXELS` texels), vertex colours, or (untextured) a non-white factor."""
    if mesh.vertex_colors is not None:
        return True
    if mesh.base_color is not None:
        return mesh.base_color.shape[0] * mesh.base_color.shape[1] > PLACEHOLDER_TEXELS
    return not np.allclose(np.asarray(mesh.factor)[:3], 1.0)


def neutral(mesh: RenderMesh) -> RenderMesh:
    """``mesh`` with :data:`NEUTRAL_MATERIAL` (no texture, opaque)."""
    factor, metallic, roughness = NEUTRAL_MATERIAL
    return dataclasses.replace(mesh, uv=None, base_color=None, factor=factor.copy(), alpha_mode="OPAQUE",
                               metallic=metallic, roughness=roughness, metallic_roughness=None,
                               vertex_colors=None, vertex_metallic_roughness=None)


def transformed(mesh: RenderMesh, transform: np.ndarray) -> RenderMesh:
    """``mesh`` moved by the similarity ``transform [4,4]`` (normals rotated and renormalised)."""
    v = mesh.vertices @ transform[:3, :3].T + transform[:3, 3]
    normals = None
    if mesh.normals is not None:
        normals = mesh.normals @ transform[:3, :3].T
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return dataclasses.replace(mesh, vertices=v, normals=normals)


def up_axes(folder: str | Path) -> dict[str, str]:
    """File name → up axis (``+y``, ``+z``, …) from a ``manifest.json`` in ``folder`` or its parent that lists
    ``{"meshes": [{"file": ..., "up_axis": "+Z"}]}`` (the layout of ``shared/evalsets``); ``(any)`` is +y."""
    folder = Path(folder)
    for candidate in (folder / "manifest.json", folder.parent / "manifest.json"):
        if not candidate.is_file():
            continue
        try:
            data = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        entries = data.get("meshes") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            continue
        out = {}
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                up = str(entry.get("up_axis", "+y")).strip().lower()
                out[Path(entry["file"]).name] = up if up in ("+x", "-x", "+y", "-y", "+z", "-z") else "+y"
        return out
    return {}


@dataclass
class MeshSource:
    """One evaluation mesh, loaded once for all its views.

    ``mesh``: the canonical :class:`~pixal3d.mesh.io.LoadedMesh` (unit cube); ``render_meshes``: its
    primitives in file coordinates with their materials (or the neutral one); ``textured``: the file
    carries base colour (then RGB and albedo metrics are reported).
    """

    id: str
    path: Path
    sha256: str
    up: str
    mesh: object
    render_meshes: list[RenderMesh]
    textured: bool

    def info(self) -> dict:
        return {"id": self.id, "file": self.path.name, "sha256": self.sha256, "up": self.up, "textured": self.textured}


def load_source(path: str | Path, mesh_id: str, up: str = "+y") -> MeshSource:
    """Load a mesh file for evaluation; :class:`UserError` when it is unreadable or empty."""
    import trimesh

    from pixal3d.mesh.io import load_mesh

    path = Path(path)
    mesh = load_mesh(path, up=up, fill=FILL)
    try:
        scene = trimesh.load(str(path), force="scene", process=False)
        primitives = scene_render_meshes(scene)
    except Exception as exc:  # trimesh raises many exception types for malformed files
        raise UserError(f"cannot read {path.name} for rendering: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if not primitives:
        raise UserError(f"{path.name} contains no triangles to render")
    textured = any(has_colour(m) for m in primitives)
    if not textured:
        primitives = [neutral(m) for m in primitives]
    return MeshSource(mesh_id, path, file_sha256(path), up, mesh, primitives, textured)


# --------------------------------------------------------------------------------------------------
# one view


@dataclass
class GroundTruthView:
    """Ground truth of one evaluation view (everything in the view frame, unit cube).

    ``vertices``/``faces``: the view-frame mesh (3-D metrics); ``render_meshes``: its textured primitives;
    ``cameras``: ``input`` first, then the held-out ones; ``renders``: camera name → passes
    (:data:`PASSES`); ``image``: the RGBA input image (uint8, straight alpha).
    """

    source: MeshSource
    index: int
    params: ViewParams
    distance: float
    file_to_view: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    render_meshes: list[RenderMesh]
    cameras: list[Camera]
    renders: dict[str, dict[str, np.ndarray]]
    size: int
    up_axis: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0, 0.0]))
    #: renders of the multi-view protocol's extra input cameras, by yaw in degrees (:func:`render_extra_inputs`)
    extra_renders: dict[float, dict[str, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def input(self) -> Camera:
        return self.cameras[0]

    @property
    def held_out(self) -> list[Camera]:
        return self.cameras[1:]

    @property
    def image(self) -> np.ndarray:
        """The RGBA input image ``[S,S,4]`` uint8 (straight alpha, transparent background)."""
        return np.round(self.renders["input"]["shaded"] * 255).astype(np.uint8)

    def camera(self):
        """The conditioning camera of the input view: :attr:`input` in the official Blender world (``mesh_scale`` 1,
        the training convention)."""
        return Camera.front(self.params.fov_x, self.distance, 1.0)

    def camera_info(self) -> dict:
        p = self.params
        return {"azimuth_deg": p.azimuth_deg, "elevation_deg": p.elevation_deg, "fov_x": p.fov_x,
                "distance": self.distance, "mesh_scale": 1.0,
                "held_out": [c.name for c in self.held_out]}

    def extra_input_cameras(self, count: int) -> list[Camera]:
        """The cameras of a ``count``-view input (multi-view protocol): the input camera turned about the
        up axis by ``360°·k/count``, ``k = 0..count-1``."""
        return [self.input] + [orbit_camera(self.input, self.up_axis, 360.0 * k / count, f"input_{k}")
                               for k in range(1, count)]


def ground_truth_view(source: MeshSource, index: int, params: ViewParams, size: int = 512,
                      held_out: int = 4) -> GroundTruthView:
    """Build and render the ground truth of view ``index`` (``params``) of ``source``."""
    rotation = view_rotation(params.azimuth_deg, params.elevation_deg)
    vm = view_mesh(source.mesh, rotation)
    used = vm.vertices[np.unique(vm.faces)]
    distance = view_distance(used, params)
    file_to_view = vm.transform
    primitives = [transformed(m, file_to_view) for m in source.render_meshes]
    up = rotation @ np.array([0.0, 1.0, 0.0])
    cam = input_camera(params.fov_x, distance)
    cameras = [cam] + [orbit_camera(cam, up, yaw, f"heldout_{yaw:05.1f}") for yaw in held_out_yaws(held_out)]
    renders = {c.name: render_camera(primitives, c, size, PASSES) for c in cameras}  # every pass, held-out too
    if not renders["input"]["mask"].any():
        raise UserError(f"{source.path.name}: view {index} rendered empty")
    return GroundTruthView(source, index, params, distance, file_to_view, np.asarray(vm.vertices, dtype=np.float64),
                           np.asarray(vm.faces, dtype=np.int64), primitives, cameras, renders, size, up)


def on_black(rgba: np.ndarray) -> Image.Image:
    """A shaded render ``[S, S, 4]`` (straight alpha, [0, 1]) as the model's oracle input: the full uncropped canvas
    composited over black, RGB."""
    rgba = np.asarray(rgba, dtype=np.float64)
    return Image.fromarray(np.round(rgba[..., :3] * rgba[..., 3:] * 255).astype(np.uint8), "RGB")


def render_extra_inputs(gt: GroundTruthView, count: int) -> tuple[list[Camera], list[dict[str, np.ndarray]]]:
    """Cameras and renders of a ``count``-view input (view 0 is the input view itself). Each extra camera's
    render is kept on ``gt`` by its yaw, so the methods scored on one view and view counts sharing a camera
    (180° is in 2, 4 and 6 views) render it once."""
    cameras = gt.extra_input_cameras(count)
    renders = [gt.renders["input"]]
    for k, camera in enumerate(cameras[1:], 1):
        yaw = round(360.0 * k / count, 9)
        if yaw not in gt.extra_renders:
            gt.extra_renders[yaw] = render_camera(gt.render_meshes, camera, gt.size)
        renders.append(gt.extra_renders[yaw])
    return cameras, renders
