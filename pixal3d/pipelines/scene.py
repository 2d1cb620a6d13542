"""Scenes: one picture of several objects → one GLB with a node per object, each pixel-aligned.

Frames. The picture is padded to a square canvas (its camera unchanged: same focal length, principal point at the
picture's centre). *Scene camera coordinates* follow OpenCV (x right, y down, z forward); the GLB's scene frame is
the glTF camera frame (x right, y up, camera at the origin looking down −Z), i.e. ``P = diag(1, −1, −1)`` of it.

Per object (:func:`object_view`):

1. **Virtual camera.** The camera is turned about its centre (no roll) until its axis passes through the centre of
   the object's mask box; the rotation ``R`` maps virtual to scene camera coordinates. Turning a camera about its
   centre is a homography of the picture, so the virtual view is the picture warped by ``K·R·K_v⁻¹`` — every pixel
   keeps its ray, nothing is re-centred by a crop. The virtual focal length makes the mask span ``1/margin`` of a
   square ``size²`` view, so the view's FOV is ``2·atan(margin·θ)`` for the mask's half-extent angle ``θ``.
2. **Generation.** The object (its masked pixels only, on black) is generated like one image, through the model's
   own camera for that FOV (:meth:`Camera.from_fov`: the unit cube at distance ``d_v`` fills the view).
3. **Placement** (:func:`ground_depth`, :func:`placement_matrix`). Without a depth model the **ground-plane rule**
   fixes the scale: all objects rest on one plane, ``camera_height`` below the camera, the camera pitched down by
   ``pitch``; the ray through the lowest row of the mask (its bottom-centre pixel) meets that plane at the
   object's contact depth ``Z``. The generated object (cube centre at ``d_v`` on the virtual axis) is scaled by
   ``D/d_v`` about the camera centre, with ``D`` the distance along the virtual axis at depth ``Z`` — a scaling
   about the centre of projection leaves its picture unchanged, so alignment is kept.

   With a **depth map** (camera z per pixel: ``pixal3d scene --depth``, or MoGe-2's metric depth when it is
   installed) the scale comes from the map instead (:func:`mask_depth`, :func:`depth_map_centre_depth`): the
   generated object is rendered through its virtual camera, and the scaling about the camera centre is the one that
   puts the median camera z of its visible surface at the median of the depth map over its mask.

The composed GLB has one named node per object (its mesh and material under it) and the scene camera node.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import trimesh
from PIL import Image

from pixal3d.core.camera import Camera
from pixal3d.errors import UserError
from pixal3d.utils.files import atomic_output

#: OpenCV camera coordinates ↔ glTF camera coordinates
FLIP_YZ = np.diag([1.0, -1.0, -1.0])
#: default camera above the ground (scene units) and downward pitch (degrees) of the ground-plane rule
DEFAULT_CAMERA_HEIGHT = 1.0
DEFAULT_PITCH_DEG = 15.0


@dataclass
class ObjectView:
    """One object seen by its virtual camera.

    ``image``: ``size²`` RGB, the object's pixels composited on black; ``fov_x``: the virtual camera's FOV
    (radians); ``rotation [3,3]``: virtual → scene camera coordinates (OpenCV); ``mask``: the object's mask in
    the canvas; ``name``; ``silhouette``: ``size²`` bool, where the object may be in the virtual view (its mask and
    the objects that may hide part of it), which the generation is held to (:mod:`pixal3d.core.silhouette`).
    """

    name: str
    mask: np.ndarray
    image: Image.Image
    fov_x: float
    rotation: np.ndarray
    silhouette: np.ndarray | None = None


def square_canvas(rgba: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """``rgba [H, W, 4]`` padded with transparent black to ``S×S``, ``S = max(W, H)``, centred; returns the canvas and
    the (left, top) offset of the picture in it."""
    h, w = rgba.shape[:2]
    s = max(h, w)
    left, top = (s - w) // 2, (s - h) // 2
    canvas = np.zeros((s, s, rgba.shape[2]), dtype=rgba.dtype)
    canvas[top:top + h, left:left + w] = rgba
    return canvas, (left, top)


def focal_for(fov_x: float, width: int) -> float:
    """Focal length in pixels of a picture ``width`` wide seen with horizontal FOV ``fov_x``."""
    return width / (2.0 * math.tan(fov_x / 2.0))


def _rays(u: np.ndarray, v: np.ndarray, f: float, cx: float, cy: float) -> np.ndarray:
    """Unnormalised OpenCV rays ``[M, 3]`` through pixel positions (continuous coordinates, centres at k + 0.5)."""
    return np.stack([(u - cx) / f, (v - cy) / f, np.ones_like(u, dtype=np.float64)], -1)


def axis_rotation(direction: np.ndarray) -> np.ndarray:
    """Rotation ``[3,3]`` (columns = virtual x, y, z in camera coordinates) turning the optical axis onto
    ``direction`` with no roll (the virtual x axis stays horizontal in the camera's image plane)."""
    z = direction / np.linalg.norm(direction)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], 1)


def object_view(canvas: np.ndarray, mask: np.ndarray, f: float, cx: float, cy: float, name: str,
                size: int = 512, margin: float = 1.1, occluders: np.ndarray | None = None) -> ObjectView:
    """The object's virtual view (module docstring, step 1) from the square ``canvas [S, S, 4]`` float RGBA
    (straight alpha, [0, 1]) and its ``mask [S, S]`` bool; ``occluders [S, S]`` bool: the other objects' pixels,
    behind which this one may go on (part of its silhouette)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise UserError(f"{name}: empty mask")
    box_centre = np.array([(xs.min() + xs.max() + 1) / 2.0, (ys.min() + ys.max() + 1) / 2.0])
    rotation = axis_rotation(_rays(box_centre[:1], box_centre[1:], f, cx, cy)[0])
    edge = np.concatenate([np.stack([xs, ys], 1) + d for d in ([0, 0], [1, 0], [0, 1], [1, 1])]).astype(np.float64)
    local = _rays(edge[:, 0], edge[:, 1], f, cx, cy) @ rotation  # rays in virtual coordinates
    theta = float(np.abs(local[:, :2] / local[:, 2:]).max())
    fov = 2.0 * math.atan(margin * theta)
    if not 0 < fov < math.radians(170):
        raise UserError(f"{name}: the object spans too wide a view ({math.degrees(fov):.0f}°) to be generated")
    fv = size / (2.0 * math.tan(fov / 2.0))
    grid = (np.arange(size) + 0.5)
    gu, gv = np.meshgrid(grid, grid)
    rays = _rays(gu.ravel(), gv.ravel(), fv, size / 2.0, size / 2.0) @ rotation.T  # virtual → scene camera rays
    u = f * rays[:, 0] / rays[:, 2] + cx - 0.5
    v = f * rays[:, 1] / rays[:, 2] + cy - 0.5
    masked = canvas.astype(np.float32) * mask[..., None]
    premultiplied = np.concatenate([masked[..., :3] * masked[..., 3:], masked[..., 3:]], -1)
    map_u, map_v = u.reshape(size, size).astype(np.float32), v.reshape(size, size).astype(np.float32)
    warped = cv2.remap(premultiplied, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    rgb = (np.clip(warped[..., :3], 0, 1) * 255).round().astype(np.uint8)
    region = (mask | occluders) if occluders is not None else mask
    silhouette = cv2.remap(region.astype(np.float32), map_u, map_v, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 0.5
    return ObjectView(name, mask, Image.fromarray(rgb, "RGB"), fov, rotation, silhouette)


def ground_depth(mask: np.ndarray, f: float, cx: float, cy: float, camera_height: float, pitch_deg: float,
                 name: str = "object") -> float:
    """Depth ``Z`` (camera z, OpenCV) where the ray through the mask's bottom-centre pixel meets the ground plane
    ``camera_height`` below a camera pitched down by ``pitch_deg``; :class:`UserError` above the horizon."""
    ys, xs = np.nonzero(mask)
    bottom = ys.max()
    u = float(np.median(xs[ys >= bottom - max(1, round(0.02 * mask.shape[0]))])) + 0.5
    ray = _rays(np.array([u]), np.array([bottom + 1.0]), f, cx, cy)[0]
    p = math.radians(pitch_deg)
    down = np.array([0.0, math.cos(p), math.sin(p)])  # world down in camera coordinates
    along = float(down @ ray)
    if along <= 1e-9:
        raise UserError(f"{name}: its lowest point is above the horizon for a camera pitched {pitch_deg:g}° down; "
                        "give a larger --pitch")
    return float(camera_height / along * ray[2])


def mask_depth(mask: np.ndarray, depth: np.ndarray, name: str = "object") -> float:
    """Median camera z of the ``depth [S, S]`` map (float, NaN/inf/≤ 0 = unknown) over the ``mask [S, S]`` bool,
    its one-pixel-eroded interior when that keeps any known depth (edges mix object and background)."""
    known = np.isfinite(depth) & (depth > 0)
    interior = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    for region in (interior & known, mask & known):
        if region.any():
            return float(np.median(depth[region]))
    raise UserError(f"{name}: the depth map has no valid depth inside its mask")


def depth_map_centre_depth(view: ObjectView, glb: bytes, model_distance: float, surface_depth: float,
                           size: int = 128) -> float:
    """Camera z of the cube centre (for :func:`placement_matrix`) that puts the generated object's visible surface
    at ``surface_depth``, the depth map's median over its mask (module docstring, step 3).

    ``glb``: the object in its GLB frame, virtual camera at ``(0, 0, model_distance)`` looking down −Z. Its front
    surface, rendered ``size²`` through that camera, gives points ``p`` (virtual OpenCV coordinates) whose scene
    camera z is ``(R p)_z``; scaling by ``s`` about the camera centre multiplies them all, so
    ``s = surface_depth / median((R p)_z)``. An object that shows nothing through its camera (an empty generation)
    has its cube centre put at ``surface_depth``."""
    from pixal3d.core.render import render, scene_render_meshes

    scene = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene", process=False)
    pose = np.eye(4)
    pose[2, 3] = model_distance
    depth = render(scene_render_meshes(scene), Camera(pose, view.fov_x), size, mode="depth")
    rows, cols = np.nonzero(np.isfinite(depth))
    if len(rows) == 0:  # nothing generated in view: its cube centre goes to the map's depth
        return surface_depth
    rays = _rays(cols + 0.5, rows + 0.5, focal_for(view.fov_x, size), size / 2.0, size / 2.0)
    scene_z = depth[rows, cols] * (rays @ view.rotation.T)[:, 2]
    scale = surface_depth / float(np.median(scene_z))
    return scale * model_distance * float(view.rotation[2, 2])


def placement_matrix(view: ObjectView, depth: float, model_distance: float) -> np.ndarray:
    """``[4,4]`` from the object's GLB frame (its virtual camera at ``(0, 0, model_distance)``, glTF axes) to the
    scene's glTF frame, placing the cube centre at camera depth ``depth`` on the virtual axis."""
    axis = view.rotation[:, 2]
    scale = depth / axis[2] / model_distance
    to_camera = np.eye(4)
    to_camera[2, 3] = -model_distance
    m = np.eye(4)
    m[:3, :3] = FLIP_YZ @ view.rotation @ FLIP_YZ * scale
    return m @ to_camera


def compose_glb(parts: list[tuple[str, bytes, np.ndarray]], yfov: float, path: str | Path | None = None) -> bytes:
    """One GLB of ``parts = [(name, glb bytes, matrix [4,4])]``: a node ``name`` per part holding its meshes,
    placed by ``matrix``, plus a perspective camera node at the origin (square, vertical FOV ``yfov``).
    Written atomically to ``path`` when given; returns the bytes."""
    from pixal3d.export.glb import patch_glb_camera

    scene = trimesh.Scene()
    for name, data, matrix in parts:
        part = trimesh.load(io.BytesIO(data), file_type="glb", force="scene", process=False)
        scene.graph.update(frame_from=scene.graph.base_frame, frame_to=name, matrix=matrix)
        for k, node in enumerate(part.graph.nodes_geometry):
            transform, geom_name = part.graph[node]
            scene.add_geometry(part.geometry[geom_name].copy(), geom_name=f"{name}_mesh{k}", node_name=f"{name}_mesh{k}",
                               parent_node_name=name, transform=transform)
    data = scene.export(file_type="glb")
    camera = {"type": "perspective", "perspective": {"yfov": float(yfov), "aspectRatio": 1.0, "znear": 1e-3, "zfar": 1e3}}
    data = patch_glb_camera(data, camera, {"name": "camera"})
    if path is not None:
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)
    return data


@dataclass
class SceneResult:
    """A composed scene: the GLB bytes, per-object names, placements, reference depths (camera z of the contact
    point by the ground-plane rule, of the median visible surface by a depth map), the ``placement`` used
    (``"ground plane"`` | ``"depth map"``), per-object and union silhouette IoU against the input masks (rendered
    through the scene camera), timings."""

    glb: bytes
    names: list[str]
    matrices: list[np.ndarray]
    depths: list[float]
    object_glbs: list[bytes]
    placement: str
    iou: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def scene_masks_iou(glb: bytes, masks: list[np.ndarray], names: list[str]) -> dict[str, float]:
    """Render ``glb`` through its camera node, one flat colour per object node, and compare each object's visible
    pixels with its mask (IoU), plus the union of all against the union of the masks (``"union"``)."""
    from pixal3d.core.render import RenderMesh, glb_camera, render, scene_render_meshes

    size = masks[0].shape[0]
    scene = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene", process=False)
    meshes = []
    for node in scene.graph.nodes_geometry:
        owner = next(i for i, n in enumerate(names) if node.startswith(f"{n}_mesh"))
        for m in scene_render_meshes(trimesh.Scene(scene.geometry[scene.graph[node][1]].copy().apply_transform(
                scene.graph[node][0]))):
            colour = np.array([(owner + 1) / (len(names) + 1), 0.0, 0.0, 1.0], dtype=np.float32)
            meshes.append(RenderMesh(m.vertices, m.faces, None, None, colour))
    image = render(meshes, glb_camera(glb), size, mode="albedo", background=None)
    drawn = image[..., 3] > 0.5
    ids = np.where(drawn, np.rint(image[..., 0] * (len(names) + 1)).astype(int) - 1, -1)
    out = {}
    for i, (name, mask) in enumerate(zip(names, masks)):
        mine = ids == i
        out[name] = float((mine & mask).sum() / max((mine | mask).sum(), 1))
    union = np.any(masks, axis=0)
    out["union"] = float((drawn & union).sum() / max((drawn | union).sum(), 1))
    return out


def generate_scene(image: Image.Image, masks: list[tuple[str, np.ndarray]], fov_x: float,
                   generate_object: Callable[[ObjectView], tuple[bytes, float]],
                   camera_height: float = DEFAULT_CAMERA_HEIGHT, pitch_deg: float = DEFAULT_PITCH_DEG,
                   size: int = 512, progress: Callable[[str], None] | None = None,
                   depth: np.ndarray | None = None) -> SceneResult:
    """Compose a scene from ``image`` (PIL, RGBA or RGB) and its object ``masks`` (at the image's size).

    ``generate_object(view) -> (GLB bytes in the object's frame, model distance d_v)`` makes each object (the
    pipeline, or any generator with the same contract). ``fov_x`` is the picture's horizontal FOV. ``depth``:
    an optional ``[H, W]`` camera-z map at the image's size (scene units; NaN = unknown) that places the objects
    instead of the ground-plane rule (``camera_height`` and ``pitch_deg`` are then unused).
    """
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    canvas, (left, top) = square_canvas(rgba)
    side = canvas.shape[0]
    f = focal_for(fov_x, rgba.shape[1])
    cx, cy = left + rgba.shape[1] / 2.0, top + rgba.shape[0] / 2.0
    names, padded = [], []
    for name, mask in masks:
        full = np.zeros((side, side), dtype=bool)
        full[top:top + mask.shape[0], left:left + mask.shape[1]] = mask
        names.append(name)
        padded.append(full)
    if depth is not None:
        depth = np.asarray(depth, dtype=np.float64)
        if depth.shape != rgba.shape[:2]:
            raise UserError(f"the depth map is {depth.shape[1]}x{depth.shape[0]}, the picture "
                            f"{rgba.shape[1]}x{rgba.shape[0]}")
        depth_canvas = np.full((side, side), np.nan)
        depth_canvas[top:top + depth.shape[0], left:left + depth.shape[1]] = depth
    timings: dict[str, float] = {}
    matrices, depths, glbs = [], [], []
    for name, mask in zip(names, padded):
        started = time.perf_counter()
        if progress:
            progress(name)
        others = np.any([m for m in padded if m is not mask], axis=0) if len(padded) > 1 else None
        view = object_view(canvas, mask, f, cx, cy, name, size, occluders=others)
        reference = (ground_depth(mask, f, cx, cy, camera_height, pitch_deg, name) if depth is None
                     else mask_depth(mask, depth_canvas, name))
        data, distance = generate_object(view)
        centre = reference if depth is None else depth_map_centre_depth(view, data, distance, reference)
        matrices.append(placement_matrix(view, centre, distance))
        depths.append(reference)
        glbs.append(data)
        timings[name] = time.perf_counter() - started
    yfov = 2.0 * math.atan(side / (2.0 * f))
    started = time.perf_counter()
    glb = compose_glb(list(zip(names, glbs, matrices)), yfov)
    timings["compose"] = time.perf_counter() - started
    result = SceneResult(glb, names, matrices, depths, glbs, "ground plane" if depth is None else "depth map",
                         timings=timings)
    result.iou = scene_masks_iou(glb, padded, names)
    return result


def scene_masks(image: Image.Image, labels: str | Path | None = None, masks_dir: str | Path | None = None,
                min_area: float = 0.002) -> tuple[Image.Image, list[tuple[str, np.ndarray]], str]:
    """The picture to compose and its object masks (``pixal3d scene`` and the app's scene tab): a label image
    (one integer or colour per object), a folder of masks, or by default the connected components of the cut-out
    (the image's alpha, else background removal). Returns ``(picture, [(name, mask)], how)`` with ``how`` the
    segmentation that ran (``labels``, ``masks folder`` or ``components of <background path>``)."""
    from pixal3d.image.masks import masks_from_alpha, masks_from_folder, masks_from_label_image
    from pixal3d.image.preprocess import cut_out

    if labels is not None:
        return image, masks_from_label_image(labels, image.size), "labels"
    if masks_dir is not None:
        return image, masks_from_folder(masks_dir, image.size), "masks folder"
    cutout, used = cut_out(image)
    return cutout, masks_from_alpha(np.asarray(cutout.convert("RGBA"))[..., 3], min_area), f"components of {used}"


def load_depth_map(path: str | Path) -> np.ndarray:
    """A depth map file as ``[H, W]`` float64 camera z: ``.npy`` (float, scene units; NaN or ≤ 0 = unknown) or a
    16-bit PNG in millimetres (depth-sensor convention, 0 = unknown), returned in metres."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"depth map not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise UserError(f"{path}: not a NumPy array file ({error})") from None
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
            raise UserError(f"{path}: a depth map must be a 2-D numeric array, got {depth.dtype} {depth.shape}")
        return depth.astype(np.float64)
    if path.suffix.lower() == ".png":
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.ndim != 2 or raw.dtype != np.uint16:
            raise UserError(f"{path}: a PNG depth map must be single-channel 16-bit (millimetres)")
        return np.where(raw > 0, raw / 1000.0, np.nan)
    raise UserError(f"{path}: a depth map must be .npy (camera z) or a 16-bit .png (millimetres)")


def scene_depth(image: Image.Image, depth_file: str | Path | None = None, use_depth_model: bool = True,
                device=None) -> tuple[np.ndarray | None, float | None, str]:
    """The depth map that places a scene's objects, and where it came from: the user's ``depth_file``, else
    MoGe-2's metric estimate of ``image`` when it is installed and ``use_depth_model``, else none (the
    ground-plane rule). Returns ``(depth [H, W] or None, the estimated horizontal FOV or None, source)``."""
    if depth_file is not None:
        return load_depth_map(depth_file), None, f"depth map {Path(depth_file).name}"
    if use_depth_model:
        from pixal3d.conditioning.camera_estimation import estimate_depth

        estimate = estimate_depth(image, device)
        if estimate is not None:
            return estimate.depth, estimate.fov_x, "MoGe-2 depth"
    return None, None, "ground-plane rule"


def pipeline_object_generator(pipeline, seed: int = 42, export_options=None, generation_overrides: dict | None = None,
                              progress=True) -> Callable[[ObjectView], tuple[bytes, float]]:
    """A ``generate_object`` for :func:`generate_scene` running a :class:`~pixal3d.pipelines.pixal3d.Pixal3DPipeline`
    on each virtual view (no crop: the view is already framed) and exporting it as GLB bytes.

    ``progress``: as for :meth:`~pixal3d.pipelines.pixal3d.Pixal3DPipeline.generate` (a callable also gets the
    ``export`` stage); the stages of each object are reported in turn."""
    import tempfile

    from pixal3d.pipelines.pixal3d import GenerationOptions, PreparedImage

    def generate(view: ObjectView) -> tuple[bytes, float]:
        camera = Camera.front(view.fov_x)
        options = GenerationOptions(seed=seed, camera=camera, preprocess=False, **(generation_overrides or {}))
        result = pipeline.generate(PreparedImage(view.image, {}, view.silhouette), options, progress=progress)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{view.name}.glb"
            result.save_glb(path, export_options, progress=progress if callable(progress) else False)
            data = path.read_bytes()
        return data, camera.distance * camera.mesh_scale

    return generate
