"""Cameras of the pixel back-projection conditioning, in the official (Blender) convention.

Frames
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

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from pixal3d.errors import UserError

#: Official default horizontal field of view (radians): 2·atan(16/35), a 35 mm lens on a 32 mm sensor.
DEFAULT_FOV_X = 0.8575560450553894
#: Official default camera distance (used only when a caller gives no distance).
DEFAULT_DISTANCE = 2.0
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


def focal_pixels(fov_x: float, image_size: int) -> float:
    """Focal length in pixels ``16 / tan(fov_x/2) * image_size / 32``, evaluated in float32 (official)."""
    fov = torch.tensor(_check_fov(fov_x), dtype=torch.float32)
    focal_mm = 16.0 / torch.tan(fov / 2.0)
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


def front_view_matrix(distance: float) -> torch.Tensor:
    """Camera-to-world ``[4,4]`` float32 of the official front camera at ``(0, -distance, 0)`` (Blender frame)."""
    return torch.tensor([[1.0, 0.0, 0.0, 0.0],
                         [0.0, 0.0, -1.0, -float(distance)],
                         [0.0, 1.0, 0.0, 0.0],
                         [0.0, 0.0, 0.0, 1.0]], dtype=torch.float32)


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


@dataclass(frozen=True)
class Camera:
    """The official single-view camera: front view at distance ``distance`` with horizontal FOV ``fov_x``.

    ``fov_x`` in radians, ``distance`` in world units, ``mesh_scale`` divides the unit-cube grid
    (object occupies ``[-0.5, 0.5]^3 / mesh_scale``). The image is square (``S x S``); the focal
    length in pixels depends on ``S`` (see :func:`focal_pixels`).
    """

    fov_x: float = DEFAULT_FOV_X
    distance: float = DEFAULT_DISTANCE
    mesh_scale: float = 1.0

    def __post_init__(self) -> None:
        _check_fov(self.fov_x)
        _check_scale(self.mesh_scale)
        if not (float(self.distance) > 0.0) or not math.isfinite(float(self.distance)):
            raise UserError(f"camera distance must be a positive number, got {self.distance}")

    @classmethod
    def from_fov(cls, fov_x: float, mesh_scale: float = 1.0) -> "Camera":
        """Camera with the official distance for ``fov_x`` (:func:`distance_from_fov`)."""
        return cls(float(fov_x), distance_from_fov(fov_x, mesh_scale), float(mesh_scale))

    def cam_to_world(self) -> torch.Tensor:
        """Camera-to-world ``[4,4]`` float32 (Blender convention), see :func:`front_view_matrix`."""
        return front_view_matrix(self.distance)

    def focal_pixels(self, image_size: int) -> float:
        """Focal length in pixels for an ``image_size`` square image (float32 math, official)."""
        return focal_pixels(self.fov_x, image_size)

    def to_pinhole(self, image_size: int) -> "PinholeCamera":
        """The same camera as a :class:`PinholeCamera` for an ``image_size x image_size`` image."""
        f = self.focal_pixels(image_size)
        K = torch.tensor([[f, 0.0, image_size / 2.0], [0.0, f, image_size / 2.0], [0.0, 0.0, 1.0]],
                         dtype=torch.float32)
        return PinholeCamera(K, self.cam_to_world(), int(image_size), int(image_size), self.mesh_scale)


@dataclass(frozen=True)
class PinholeCamera:
    """A general pinhole camera (multi-view), Blender convention.

    Args:
        intrinsics: ``[3,3]`` in pixels for a ``width x height`` image: ``[[fx,0,cx],[0,fy,cy],[0,0,1]]``
            (zero skew). ``u = fx * x_c / (-z_c) + cx``, ``v = -fy * y_c / (-z_c) + cy`` where
            ``(x_c, y_c, z_c)`` are camera coordinates (camera looks down -Z, +Y up); pixel ``k``'s
            centre is at ``u = k`` when sampling (see the module docstring).
        cam_to_world: ``[4,4]`` camera-to-world (Blender/NeRF ``transform_matrix``), world Z up.
        width, height: image size the intrinsics refer to.
        mesh_scale: scale of the projection grid (object in ``[-0.5, 0.5]^3 / mesh_scale``).
    """

    intrinsics: torch.Tensor
    cam_to_world: torch.Tensor
    width: int
    height: int
    mesh_scale: float = 1.0

    def __post_init__(self) -> None:
        K = torch.as_tensor(self.intrinsics, dtype=torch.float32)
        c2w = torch.as_tensor(self.cam_to_world, dtype=torch.float32)
        if K.shape != (3, 3):
            raise UserError(f"intrinsics must be a 3x3 matrix, got shape {tuple(K.shape)}")
        if c2w.shape != (4, 4):
            raise UserError(f"cam_to_world must be a 4x4 matrix, got shape {tuple(c2w.shape)}")
        if not (torch.isfinite(K).all() and torch.isfinite(c2w).all()):
            raise UserError("camera matrices contain non-finite values")
        if K[0, 1] != 0 or K[1, 0] != 0 or K[2, 0] != 0 or K[2, 1] != 0 or K[2, 2] != 1:
            raise UserError("intrinsics must be [[fx,0,cx],[0,fy,cy],[0,0,1]] (no skew)")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise UserError("intrinsics focal lengths must be positive")
        if int(self.width) < 1 or int(self.height) < 1:
            raise UserError(f"image size must be positive, got {self.width}x{self.height}")
        _check_scale(self.mesh_scale)
        object.__setattr__(self, "intrinsics", K)
        object.__setattr__(self, "cam_to_world", c2w)

    @classmethod
    def from_fov(cls, fov_x: float, cam_to_world: torch.Tensor, width: int, height: int,
                 mesh_scale: float = 1.0) -> "PinholeCamera":
        """Camera with horizontal FOV ``fov_x`` (square pixels, principal point at the image centre)."""
        f = focal_pixels(fov_x, width)
        K = torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float32)
        return cls(K, cam_to_world, int(width), int(height), mesh_scale)

    @property
    def position(self) -> torch.Tensor:
        """Camera centre in world coordinates ``[3]`` float32."""
        return self.cam_to_world[:3, 3]

    def world_to_cam(self) -> torch.Tensor:
        """World-to-camera ``[4,4]`` float32 (general float32 inverse, as the official code)."""
        return torch.linalg.inv(self.cam_to_world)

    def rescaled(self, width: int, height: int) -> "PinholeCamera":
        """The camera for the image resized to ``width x height`` (intrinsics rows scaled)."""
        if (int(width), int(height)) == (self.width, self.height):
            return self
        scale = torch.tensor([[width / self.width], [height / self.height], [1.0]], dtype=torch.float32)
        return PinholeCamera(self.intrinsics * scale, self.cam_to_world, int(width), int(height), self.mesh_scale)

    def with_cam_to_world(self, cam_to_world: torch.Tensor) -> "PinholeCamera":
        """The same intrinsics with another pose."""
        return PinholeCamera(self.intrinsics, cam_to_world, self.width, self.height, self.mesh_scale)


AnyCamera = Camera | PinholeCamera


def as_pinhole(camera: AnyCamera, image_size: int | None) -> PinholeCamera:
    """``camera`` as a :class:`PinholeCamera` for an ``image_size`` square image.

    A :class:`Camera` is converted for ``image_size``; a :class:`PinholeCamera` is rescaled to
    ``image_size x image_size`` (the image is resized to the square feature-extractor input), or
    kept as is when ``image_size`` is None.
    """
    if isinstance(camera, Camera):
        if image_size is None:
            raise UserError("an image size is needed to project with a Camera")
        return camera.to_pinhole(int(image_size))
    if isinstance(camera, PinholeCamera):
        return camera if image_size is None else camera.rescaled(int(image_size), int(image_size))
    raise UserError(f"expected a Camera or PinholeCamera, got {type(camera).__name__}")


def canonicalize_views(cameras: Sequence[PinholeCamera]) -> list[PinholeCamera]:
    """Map world-frame cameras of a multi-view capture into the canonical front frame of view 0.

    View 0 must be the canonical front view. With ``d0 = |t_0|`` (distance of view 0 from the
    origin) and ``F`` the front-view matrix at ``d0``, view ``v`` becomes ``F @ inv(C_0) @ C_v``;
    view 0 becomes exactly ``F``, so one view reproduces the single-view camera. The projection
    grid is then read in this canonical frame (voxel x right / y up / z toward view 0).
    """
    if len(cameras) == 0:
        raise UserError("at least one camera view is needed")
    c0 = cameras[0].cam_to_world.double()
    front = front_view_matrix(float(torch.linalg.norm(c0[:3, 3]))).double()
    to_canonical = front @ torch.linalg.inv(c0)
    out = [cameras[0].with_cam_to_world(front.float())]
    for cam in cameras[1:]:
        out.append(cam.with_cam_to_world((to_canonical @ cam.cam_to_world.double()).float()))
    return out


def look_at_matrix(eye: Sequence[float], target: Sequence[float] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """Camera-to-world ``[4,4]`` float64 (Blender convention: looks down its −Z, +Y up) at ``eye`` looking at
    ``target`` with world +Z up (no roll). ``look_at_matrix((0, -d, 0))`` is :func:`front_view_matrix`."""
    eye_t = torch.tensor([float(x) for x in eye], dtype=torch.float64)
    forward = torch.tensor([float(x) for x in target], dtype=torch.float64) - eye_t
    if not float(torch.linalg.norm(forward)) > 0:
        raise UserError("camera position equals its target")
    forward = forward / torch.linalg.norm(forward)
    right = torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    if not float(torch.linalg.norm(right)) > 1e-9:
        raise UserError("camera looks straight up or down (elevation ±90°)")
    right = right / torch.linalg.norm(right)
    up = torch.linalg.cross(right, forward)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, eye_t
    return c2w


def orbit_cameras(azimuths_deg: Sequence[float], elevation_deg: float, fov_x: float, distance: float,
                  width: int, height: int, mesh_scale: float = 1.0) -> list[PinholeCamera]:
    """World-frame cameras of photos taken around an object (turntable shorthand).

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
    cams = []
    for a_deg in azimuths_deg:
        if not math.isfinite(a_deg):
            raise UserError(f"azimuth must be a finite number of degrees, got {a_deg}")
        a = math.radians(a_deg)
        eye = (distance * math.sin(a) * math.cos(e), -distance * math.cos(a) * math.cos(e), distance * math.sin(e))
        cams.append(PinholeCamera.from_fov(fov_x, look_at_matrix(eye).float(), width, height, mesh_scale))
    return cams


def read_transforms(path: str | os.PathLike, sizes: Sequence[tuple[int, int]]) -> list[PinholeCamera]:
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
            c2w = torch.tensor(frame["transform_matrix"], dtype=torch.float64)
        except (KeyError, TypeError, ValueError):
            raise UserError(f"cameras file {path}: frame {i} has no 4x4 transform_matrix") from None
        if c2w.shape != (4, 4) or not torch.isfinite(c2w).all():
            raise UserError(f"cameras file {path}: frame {i} transform_matrix must be a finite 4x4 matrix")
        if abs(float(torch.linalg.det(c2w[:3, :3]))) < 1e-6 or not torch.allclose(c2w[3], torch.tensor([0.0, 0, 0, 1], dtype=torch.float64)):
            raise UserError(f"cameras file {path}: frame {i} transform_matrix is not an invertible camera pose")
        cams.append(PinholeCamera.from_fov(_check_fov(float(fov)), c2w.float(), int(w), int(h), mesh_scale))
    return cams
