"""The camera model of pixal3d (:class:`Camera`) and the official conventions of the back-projection.

One :class:`Camera` (a pose and a size-free lens) serves the conditioning, the multi-view capture readers, the
renderer, the evaluation and the GLB export. :meth:`Camera.front` is the official input camera.

Frames of the conditioning
------
* **World** (Blender): Z up. The input ("front") camera sits at ``(0, -d, 0)`` looking along +Y, with
  image right = +X and image up = +Z. Its camera-to-world matrix is
  ``[[1,0,0,0],[0,0,-1,-d],[0,1,0,0],[0,0,0,1]]`` (a Blender camera looks down its own -Z axis, +Y up).
* **Voxel grid** ``(x, y, z)``: x to the right of the input image, y up, z toward the input camera.
  The official projection grid of resolution ``G`` places grid index ``i`` (per axis) at
  ``l_i = linspace(-1, 1, G)[i]`` (endpoints included) and maps ``(l_x, l_y, l_z)`` to world
  ``(l_x, -l_z, l_y) / (2 * mesh_scale)``, i.e. the unit cube ``[-0.5, 0.5]^3 / mesh_scale``.
* **Image pixels** ``(u, v)``: u to the right, v down, in an image of ``width x height`` pixels.
  Projection puts the principal point at ``(W/2, H/2)`` and sampling reads pixel ``k``'s centre at
  ``u = k`` (normalised coordinate ``(u + 0.5) / W * 2 - 1``, ``align_corners=False``); this
  half-pixel convention is the official one and is kept on purpose.

Intrinsics follow Blender's 32 mm sensor: ``focal_mm = 16 / tan(fov_x / 2)`` and
``f_px = focal_mm * S / 32``, computed in float32 as the official code does.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pixal3d.errors import UserError

#: Official default horizontal field of view (radians): 2·atan(16/35), a 35 mm lens on a 32 mm sensor.
DEFAULT_FOV_X = 0.8575560450553894
#: Blender sensor width in millimetres.
SENSOR_WIDTH_MM = 32.0
#: Image resolution used by the official ``distance_from_fov`` (``WILD_IMAGE_RESOLUTION``).
WILD_IMAGE_RESOLUTION = 512

#: Rotation from the voxel/grid frame (x right, y up, z toward camera) to world (Z up): world = R @ grid.
GRID_TO_WORLD_ROTATION = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))


def _check_fov(fov_x: float) -> float:
    fov_x = float(fov_x)
    if not (0.0 < fov_x < math.pi) or not math.isfinite(fov_x):
        raise UserError(f"horizontal field of view must be in (0, pi) radians, got {fov_x}")
    return fov_x


def _check_scale(mesh_scale: float) -> float:
    mesh_scale = float(mesh_scale)
    if not (mesh_scale > 0.0) or not math.isfinite(mesh_scale):
        raise UserError(f"mesh_scale must be a positive number, got {mesh_scale}")
    return mesh_scale


def tan_float32(angle: torch.Tensor) -> torch.Tensor:
    """``tan`` of a float32 tensor, correctly rounded to float32 on every machine.

    The official code calls ``torch.tan`` in float32, whose last bit depends on the CPU's vector library (AVX2 and
    AVX-512 kernels, glibc, CUDA round differently); evaluating in float64 and rounding once gives the same float32
    on every platform, within one unit in the last place of any of them.
    """
    return torch.tan(angle.double()).float()


def focal_pixels(fov_x: float, image_size: int) -> float:
    """Focal length in pixels ``16 / tan(fov_x/2) * image_size / 32``, evaluated in float32 (official arithmetic,
    with :func:`tan_float32`)."""
    fov = torch.tensor(_check_fov(fov_x), dtype=torch.float32)
    focal_mm = 16.0 / tan_float32(fov / 2.0)
    return float(focal_mm * image_size / SENSOR_WIDTH_MM)


def distance_from_fov(fov_x: float, mesh_scale: float = 1.0, extend_pixel: float = 0.0,
                      image_resolution: int = WILD_IMAGE_RESOLUTION) -> float:
    """Camera distance that makes the unit cube's half-width (at the y=0 plane) reach the image edge.

    Reproduces the official ``distance_from_fov`` bit for bit: the grid point ``(-1,0,0)`` is rotated
    and scaled in float32 (world ``x_w = -0.5/s``), ``f_px`` uses a float32 ``tan``, and
    ``d = f_px * x_w / (x_t - S/2) - y_w`` with target column ``x_t = -extend_pixel``. With
    ``extend_pixel = 0`` this is ``1 / (2 s tan(fov_x/2))`` up to float32 rounding, e.g.
    ``distance_from_fov(0.2) == 4.9833221435546875``.
    """
    mesh_scale = _check_scale(mesh_scale)
    point = torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float32) @ torch.tensor(GRID_TO_WORLD_ROTATION).T
    point = point / mesh_scale / 2
    x_w, y_w = point[0].item(), point[1].item()
    f_px = focal_pixels(fov_x, image_resolution)
    x_ndc = float(-extend_pixel) - image_resolution / 2.0
    if x_ndc == 0.0:
        raise UserError("extend_pixel must not place the target column at the image centre")
    return float(f_px * x_w / x_ndc - y_w)


def front_pose(distance: float) -> np.ndarray:
    """Camera-to-world ``[4,4]`` float64 of the official front camera at ``(0, -distance, 0)`` (Blender frame)."""
    pose = np.eye(4)
    pose[:3, :3] = np.array(GRID_TO_WORLD_ROTATION)
    pose[1, 3] = -float(distance)
    return pose


def front_view_matrix(distance: float) -> torch.Tensor:
    """:func:`front_pose` in float32, as the official code builds it."""
    return torch.from_numpy(front_pose(distance).astype(np.float32))


def voxel_to_world_matrix(grid_resolution: int, mesh_scale: float = 1.0) -> torch.Tensor:
    """Affine ``[4,4]`` float64 mapping homogeneous voxel index ``(i, j, k, 1)`` of the projection grid to world.

    Index ``i`` per axis sits at ``l_i = -1 + 2 i / (G-1)`` (the official ``linspace(-1, 1, G)``), and
    world = ``(l_i, -l_k, l_j) / (2 * mesh_scale)``. Note these are the grid *points* used by the
    official projection (endpoints included), not voxel centres ``(i + 0.5)/G - 0.5``.
    """
    G = int(grid_resolution)
    if G < 2:
        raise UserError(f"projection grid resolution must be at least 2, got {grid_resolution}")
    s = _check_scale(mesh_scale)
    a, b = 1.0 / ((G - 1) * s), -1.0 / (2.0 * s)
    return torch.tensor([[a, 0.0, 0.0, b],
                         [0.0, 0.0, -a, -b],
                         [0.0, a, 0.0, b],
                         [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)


def look_at(eye: Sequence[float], target: Sequence[float] = (0.0, 0.0, 0.0),
            up: Sequence[float] = (0.0, 1.0, 0.0)) -> np.ndarray:
    """Camera-to-world ``[4,4]`` float64 of a camera at ``eye`` looking at ``target`` with no roll about ``up``
    (the camera looks down its own −Z, +Y up). ``up`` is the world's up axis: ``+Y`` for glTF and the renderer,
    ``+Z`` for Blender/NeRF captures; ``look_at((0, -d, 0), up=(0, 0, 1))`` is :func:`front_view_matrix`."""
    eye_v, target_v, up_v = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    back = eye_v - target_v
    if not np.linalg.norm(back) > 0:
        raise UserError("camera position equals its target")
    back = back / np.linalg.norm(back)
    right = np.cross(up_v, back)
    if not np.linalg.norm(right) > 1e-9:
        raise UserError("camera looks straight along the up axis (elevation ±90°)")
    right = right / np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, eye_v
    return m


def vertical_fov(fov_x: float, width: int, height: int) -> float:
    """Vertical field of view (radians) of a ``width x height`` image with square pixels and horizontal FOV ``fov_x``."""
    return 2.0 * math.atan(math.tan(_check_fov(fov_x) / 2.0) * int(height) / int(width))


@dataclass(frozen=True, eq=False)
class Camera:
    """The one camera model of pixal3d: a pinhole (or orthographic) camera independent of the image size.

    Args:
        cam_to_world: ``[4,4]`` pose, stored as a read-only float64 array. The camera looks down its own −Z
            with +Y up (Blender, NeRF and glTF agree); the world frame is the caller's: the back-projection
            conditioning works in the official Blender world (Z up, object in the unit cube, see the module
            docstring), the renderer and the evaluation in Y-up glTF frames.
        fov_x, fov_y: horizontal and vertical field of view in radians (``fov_y`` None: equal to ``fov_x``,
            a square image with square pixels). Fields of view do not change when an image is resized, so
            one camera serves every image size.
        principal: principal point as a fraction of the image width and height (``(0.5, 0.5)``: the centre).
        mesh_scale: scale of the projection grid (object in ``[-0.5, 0.5]^3 / mesh_scale``).
        znear: near clipping distance of the renderer.
        ortho_half: orthographic camera, world units from the image centre to its edge (fields of view unused).
        name: a label (``input``, ``heldout_090`` … in evaluation).

    Two arithmetic paths read it. The conditioning uses :meth:`intrinsics` and :meth:`world_to_cam`, in float32 with
    the official Blender-sensor focal length (:func:`focal_pixels`), so official fixtures are reproduced bit for bit.
    The renderer and the metrics use :meth:`pixel_intrinsics`, :meth:`project` and :meth:`rays` in float64.
    """

    cam_to_world: np.ndarray
    fov_x: float = DEFAULT_FOV_X
    fov_y: float | None = None
    principal: tuple[float, float] = (0.5, 0.5)
    mesh_scale: float = 1.0
    znear: float = 1e-3
    ortho_half: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        c2w = np.array(self.cam_to_world, dtype=np.float64)
        if c2w.shape != (4, 4):
            raise UserError(f"cam_to_world must be a 4x4 matrix, got shape {c2w.shape}")
        if not np.isfinite(c2w).all():
            raise UserError("camera matrices contain non-finite values")
        c2w.setflags(write=False)
        object.__setattr__(self, "cam_to_world", c2w)
        if self.ortho_half is None:
            object.__setattr__(self, "fov_x", _check_fov(self.fov_x))
            object.__setattr__(self, "fov_y", _check_fov(self.fov_x if self.fov_y is None else self.fov_y))
        else:
            if not (float(self.ortho_half) > 0 and math.isfinite(float(self.ortho_half))):
                raise UserError(f"orthographic half extent must be a positive number, got {self.ortho_half}")
            object.__setattr__(self, "fov_y", float(self.fov_x if self.fov_y is None else self.fov_y))
        px, py = (float(p) for p in self.principal)
        if not (math.isfinite(px) and math.isfinite(py)):
            raise UserError(f"principal point must be finite, got {self.principal}")
        object.__setattr__(self, "principal", (px, py))
        object.__setattr__(self, "mesh_scale", _check_scale(self.mesh_scale))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Camera):
            return NotImplemented
        return (np.array_equal(self.cam_to_world, other.cam_to_world)
                and (self.fov_x, self.fov_y, self.principal, self.mesh_scale, self.znear, self.ortho_half, self.name)
                == (other.fov_x, other.fov_y, other.principal, other.mesh_scale, other.znear, other.ortho_half,
                    other.name))

    __hash__ = None  # mutable-looking array field: not hashable

    # ---------------------------------------------------------------------------------------- constructors
    @classmethod
    def front(cls, fov_x: float = DEFAULT_FOV_X, distance: float | None = None, mesh_scale: float = 1.0,
              name: str = "") -> "Camera":
        """The official input camera: at ``(0, -distance, 0)`` of the Blender world looking at the origin
        (:func:`front_view_matrix`), horizontal FOV ``fov_x``. ``distance`` None: :func:`distance_from_fov` (the
        unit cube's half-width reaches the image edge)."""
        fov_x, mesh_scale = _check_fov(fov_x), _check_scale(mesh_scale)
        d = distance_from_fov(fov_x, mesh_scale) if distance is None else float(distance)
        if not (d > 0.0) or not math.isfinite(d):
            raise UserError(f"camera distance must be a positive number, got {distance}")
        return cls(front_pose(d), fov_x, mesh_scale=mesh_scale, name=name)

    @classmethod
    def from_intrinsics(cls, intrinsics: np.ndarray | torch.Tensor, cam_to_world: np.ndarray | torch.Tensor,
                        width: int, height: int, mesh_scale: float = 1.0) -> "Camera":
        """A camera from a pixel intrinsics matrix ``[[fx,0,cx],[0,fy,cy],[0,0,1]]`` of a ``width x height`` image."""
        K = np.asarray(intrinsics.detach().cpu() if isinstance(intrinsics, torch.Tensor) else intrinsics, dtype=np.float64)
        if K.shape != (3, 3):
            raise UserError(f"intrinsics must be a 3x3 matrix, got shape {K.shape}")
        if K[0, 1] != 0 or K[1, 0] != 0 or K[2, 0] != 0 or K[2, 1] != 0 or K[2, 2] != 1:
            raise UserError("intrinsics must be [[fx,0,cx],[0,fy,cy],[0,0,1]] (no skew)")
        if not (K[0, 0] > 0 and K[1, 1] > 0):
            raise UserError("intrinsics focal lengths must be positive")
        if int(width) < 1 or int(height) < 1:
            raise UserError(f"image size must be positive, got {width}x{height}")
        fov_x = 2.0 * math.atan(int(width) / (2.0 * K[0, 0]))
        fov_y = 2.0 * math.atan(int(height) / (2.0 * K[1, 1]))
        c2w = cam_to_world.detach().cpu().double().numpy() if isinstance(cam_to_world, torch.Tensor) else cam_to_world
        return cls(c2w, fov_x, fov_y, (K[0, 2] / int(width), K[1, 2] / int(height)), mesh_scale)

    @classmethod
    def orthographic(cls, cam_to_world: np.ndarray, half_extent: float, name: str = "") -> "Camera":
        """An orthographic camera showing ``half_extent`` world units from the image centre to its edge."""
        return cls(cam_to_world, 0.0, ortho_half=float(half_extent), name=name)

    def with_pose(self, cam_to_world: np.ndarray | torch.Tensor) -> "Camera":
        """The same lens with another pose."""
        if isinstance(cam_to_world, torch.Tensor):
            cam_to_world = cam_to_world.detach().cpu().double().numpy()
        return dataclasses.replace(self, cam_to_world=cam_to_world)

    # ---------------------------------------------------------------------------------------- properties
    @property
    def position(self) -> np.ndarray:
        """Camera centre ``[3]`` float64 in world coordinates."""
        return self.cam_to_world[:3, 3].copy()

    @property
    def distance(self) -> float:
        """Distance of the camera centre from the world origin (the object centre)."""
        return float(np.linalg.norm(self.cam_to_world[:3, 3]))

    @property
    def is_front(self) -> bool:
        """Whether this is a :meth:`front` camera (official front pose, centred square-pixel lens)."""
        return (self.ortho_half is None and self.fov_y == self.fov_x and self.principal == (0.5, 0.5)
                and np.array_equal(self.cam_to_world, front_pose(self.distance)))

    def front_fields(self) -> dict[str, float]:
        """``{"fov_x", "distance", "mesh_scale"}`` of a :meth:`front` camera: what asset headers and GLB files
        store (``Camera.front(**fields)`` restores it)."""
        if not self.is_front:
            raise ValueError("only a front camera is described by fov_x, distance and mesh_scale")
        return {"fov_x": self.fov_x, "distance": self.distance, "mesh_scale": self.mesh_scale}

    # ---------------------------------------------------------------------------------------- float32, official
    def focal_pixels(self, image_size: int) -> float:
        """Horizontal focal length in pixels for an image ``image_size`` wide (float32 math, official)."""
        return focal_pixels(self.fov_x, image_size)

    def intrinsics(self, width: int, height: int | None = None) -> torch.Tensor:
        """``[3,3]`` float32 pixel intrinsics for a ``width x height`` image (``height`` None: square), with the
        official float32 focal length of :func:`focal_pixels` per axis."""
        if self.ortho_half is not None:
            raise UserError("an orthographic camera has no pinhole intrinsics")
        width = int(width)
        height = width if height is None else int(height)
        if width < 1 or height < 1:
            raise UserError(f"image size must be positive, got {width}x{height}")
        fx = focal_pixels(self.fov_x, width)
        fy = fx if (self.fov_y == self.fov_x and height == width) else focal_pixels(self.fov_y, height)
        cx, cy = self.principal[0] * width, self.principal[1] * height
        return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)

    def world_to_cam(self) -> torch.Tensor:
        """World-to-camera ``[4,4]`` float32: the general float32 inverse of the float32 pose (official)."""
        return torch.linalg.inv(torch.from_numpy(self.cam_to_world.astype(np.float32)))

    # ---------------------------------------------------------------------------------------- float64, renderer
    def pixel_intrinsics(self, width: int, height: int | None = None) -> np.ndarray:
        """``[3,3]`` float64 intrinsics for a ``width x height`` image: perspective ``f = size / (2 tan(fov/2))``;
        orthographic ``f = width / (2 ortho_half)`` pixels per world unit."""
        width = int(width)
        height = width if height is None else int(height)
        if self.ortho_half is None:
            fx = width / (2.0 * math.tan(self.fov_x / 2.0))
            fy = height / (2.0 * math.tan(self.fov_y / 2.0))
        else:
            fx = fy = width / (2.0 * self.ortho_half)
        return np.array([[fx, 0.0, self.principal[0] * width], [0.0, fy, self.principal[1] * height], [0.0, 0.0, 1.0]])

    def project(self, points: np.ndarray, size: int, height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """World ``points [M,3]`` → ``(xy [M,2]`` continuous pixel coordinates of a ``size`` square image, or one
        ``size`` wide and ``height`` high (pixel ``(c, r)`` has its centre at ``(c + 0.5, r + 0.5)``), ``depth [M]``
        along the viewing axis)``, float64; NaN pixels behind a perspective camera."""
        w2c = np.linalg.inv(self.cam_to_world)
        pc = np.asarray(points, dtype=np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
        depth = -pc[:, 2]
        K = self.pixel_intrinsics(size, height)
        if self.ortho_half is None:
            safe = np.where(depth > 1e-9, depth, np.nan)
            x, y = pc[:, 0] / safe, pc[:, 1] / safe
        else:
            x, y = pc[:, 0], pc[:, 1]
        return np.stack([K[0, 0] * x + K[0, 2], -K[1, 1] * y + K[1, 2]], 1), depth

    def rays(self, xy: np.ndarray, size: int, height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Perspective world ray origin ``[3]`` and directions ``[M,3]`` through pixel coordinates ``xy [M,2]`` of a
        ``size`` square image (or ``size`` × ``height``), scaled so that the ray parameter is the depth along the
        viewing axis (float64)."""
        if self.ortho_half is not None:
            raise UserError("rays() needs a perspective camera")
        K = self.pixel_intrinsics(size, height)
        xy = np.asarray(xy, dtype=np.float64)
        d_cam = np.stack([(xy[:, 0] - K[0, 2]) / K[0, 0], -(xy[:, 1] - K[1, 2]) / K[1, 1], -np.ones(len(xy))], 1)
        return self.position, d_cam @ self.cam_to_world[:3, :3].T


def canonicalize_views(cameras: Sequence[Camera]) -> list[Camera]:
    """Map the cameras of a multi-view capture (any world frame) into the official front frame of view 0.

    With ``d0`` the distance of view 0 from the world origin and ``F`` the front-view matrix at ``d0``, view ``v``
    gets the pose ``F @ inv(C_0) @ C_v`` (float64); view 0 gets exactly ``F``, so one view reproduces the
    single-view camera. The lenses are kept. The projection grid is then read in this frame (voxel x right /
    y up / z toward view 0).
    """
    if len(cameras) == 0:
        raise UserError("at least one camera view is needed")
    c0 = cameras[0].cam_to_world
    front = front_pose(np.linalg.norm(c0[:3, 3]))
    to_canonical = front @ np.linalg.inv(c0)
    return [cameras[0].with_pose(front)] + [cam.with_pose(to_canonical @ cam.cam_to_world) for cam in cameras[1:]]


def orbit_cameras(azimuths_deg: Sequence[float], elevation_deg: float, fov_x: float, distance: float,
                  width: int, height: int, mesh_scale: float = 1.0) -> list[Camera]:
    """World-frame cameras of photos taken around an object (turntable shorthand), ``width x height`` images.

    View ``v`` sits at distance ``distance`` from the origin at azimuth ``azimuths_deg[v]`` and elevation
    ``elevation_deg`` — position ``d·(sin a·cos e, −cos a·cos e, sin e)`` (Blender frame, Z up; azimuth 0 is the
    official front camera at ``(0, −d, 0)``, positive azimuths move the camera toward the right of that view) —
    looking at the origin, horizontal FOV ``fov_x``. Feed them to :func:`canonicalize_views`.
    """
    _check_fov(fov_x)
    if not (math.isfinite(elevation_deg) and abs(elevation_deg) < 90):
        raise UserError(f"elevation must be inside (-90, 90) degrees, got {elevation_deg}")
    if not (math.isfinite(distance) and distance > 0):
        raise UserError(f"camera distance must be a positive number, got {distance}")
    e = math.radians(elevation_deg)
    fov_y = vertical_fov(fov_x, width, height)
    cams = []
    for a_deg in azimuths_deg:
        if not math.isfinite(a_deg):
            raise UserError(f"azimuth must be a finite number of degrees, got {a_deg}")
        a = math.radians(a_deg)
        eye = (distance * math.sin(a) * math.cos(e), -distance * math.cos(a) * math.cos(e), distance * math.sin(e))
        cams.append(Camera(look_at(eye, up=(0.0, 0.0, 1.0)), fov_x, fov_y, mesh_scale=mesh_scale))
    return cams


def read_transforms(path: str | os.PathLike, sizes: Sequence[tuple[int, int]]) -> list[Camera]:
    """World-frame cameras from a NeRF/Blender ``transforms.json``, one per image (``sizes`` = their (W, H)).

    Format: ``{"camera_angle_x": fov, "mesh_scale"?: s, "frames": [{"transform_matrix": 4×4 c2w,
    "camera_angle_x" | "fov"?: per-frame horizontal FOV}, ...]}`` (radians; the toolkits' layout). Frame ``i``
    belongs to image ``i``. :class:`UserError` (one line) for a missing file, bad JSON, a frame count that
    differs from the image count, a matrix that is not 4×4, not finite or not invertible, or a missing FOV.
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise UserError(f"cameras file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read cameras file {path}: {exc}") from exc
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise UserError(f"cameras file {path} has no 'frames' list")
    if len(frames) != len(sizes):
        raise UserError(f"cameras file {path} has {len(frames)} frames for {len(sizes)} images (one frame per --image)")
    mesh_scale = float(data.get("mesh_scale", 1.0))
    cams = []
    for i, (frame, (w, h)) in enumerate(zip(frames, sizes)):
        fov = frame.get("camera_angle_x", frame.get("fov", data.get("camera_angle_x"))) if isinstance(frame, dict) else None
        if fov is None:
            raise UserError(f"cameras file {path}: frame {i} has no camera_angle_x/fov and there is no top-level one")
        try:
            c2w = np.array(frame["transform_matrix"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise UserError(f"cameras file {path}: frame {i} has no 4x4 transform_matrix") from None
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
            raise UserError(f"cameras file {path}: frame {i} transform_matrix must be a finite 4x4 matrix")
        if abs(float(np.linalg.det(c2w[:3, :3]))) < 1e-6 or not np.allclose(c2w[3], [0.0, 0, 0, 1]):
            raise UserError(f"cameras file {path}: frame {i} transform_matrix is not an invertible camera pose")
        fov = _check_fov(float(fov))
        cams.append(Camera(c2w, fov, vertical_fov(fov, w, h), mesh_scale=mesh_scale))
    return cams
