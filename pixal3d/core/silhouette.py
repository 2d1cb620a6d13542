"""The input views' silhouettes as a constraint on the generated voxels (the visual cone).

Every point of an object projects inside its silhouette in every photo of it: a voxel whose whole extent
projects outside an input mask cannot belong to the object, whatever the generator believes. Pixal3D generates
in the input camera's frame, so the masks it conditions on carve its output exactly (no alignment step).

Frames: voxel ``(i, j, k)`` at grid ``R`` occupies ``[i/R, (i+1)/R] − 0.5`` of the unit cube in the voxel frame
(x right, y up, z toward the input camera), the frame of :class:`~pixal3d.core.asset.VoxelAsset` meshes; the
cameras are :class:`~pixal3d.core.camera.Camera` poses in the Blender world, where voxel-frame ``(x, y, z)`` lies at
``(x, −z, y) / mesh_scale`` (:mod:`pixal3d.conditioning.backprojection`). Masks are ``[H, W]`` bool, pixel ``(c, r)``
centred at ``(c + 0.5, r + 0.5)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from scipy import ndimage

from pixal3d.core.asset import VoxelAsset
from pixal3d.core.camera import GRID_TO_WORLD_ROTATION, Camera
from pixal3d.errors import UserError

_ROTATION = np.array(GRID_TO_WORLD_ROTATION, dtype=np.float64)

#: pixels an input mask is trusted to within (matting and background removal blur edges by about this much)
DEFAULT_MARGIN_PX = 1.5

#: the finest grid :func:`constrain_subdivisions` completes on (a dense float32 grid of this size is built)
MAX_COMPLETION_GRID = 256

#: child ``s`` of a parent voxel lies at ``2·parent + CHILD_OFFSETS[s]`` (``s = sx + 2·sy + 4·sz``)
CHILD_OFFSETS = np.array([[s % 2, (s // 2) % 2, s // 4] for s in range(8)], dtype=np.int64)


def voxel_centres(coords: np.ndarray, resolution: int) -> np.ndarray:
    """Voxel-frame centres ``[N, 3]`` float64 of voxel indices ``coords [N, 3]`` (or ``[N, 4]`` with a batch column)
    on a ``resolution³`` grid of the unit cube."""
    xyz = np.asarray(coords)[:, -3:].astype(np.float64)
    return (xyz + 0.5) / float(resolution) - 0.5


def voxel_frame_to_world(points: np.ndarray, mesh_scale: float = 1.0) -> np.ndarray:
    """Voxel-frame points ``[N, 3]`` → Blender-world points ``[N, 3]`` float64: ``(x, −z, y) / mesh_scale``
    (:data:`~pixal3d.core.camera.GRID_TO_WORLD_ROTATION`)."""
    return np.asarray(points, dtype=np.float64) @ _ROTATION.T / float(mesh_scale)


def world_to_voxel_frame(points: np.ndarray, mesh_scale: float = 1.0) -> np.ndarray:
    """The inverse of :func:`voxel_frame_to_world`: ``(x, z, −y) · mesh_scale``."""
    return np.asarray(points, dtype=np.float64) @ _ROTATION * float(mesh_scale)


@dataclass(frozen=True)
class SilhouetteView:
    """One input view: its ``mask [H, W]`` bool and its ``camera``; :meth:`distance` is the distance transform."""

    mask: np.ndarray
    camera: Camera

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2 or mask.size == 0:
            raise UserError(f"a silhouette mask must be a 2-D array, got shape {mask.shape}")
        if not mask.any():
            raise UserError("a silhouette mask is empty (no object pixel)")
        object.__setattr__(self, "mask", mask.astype(bool))
        # pixels from each pixel to the nearest mask pixel (0 inside) and that pixel: one lookup per voxel or vertex
        distance, nearest = ndimage.distance_transform_edt(~self.mask, return_indices=True)
        object.__setattr__(self, "_distance", distance.astype(np.float32))
        object.__setattr__(self, "_nearest", nearest.astype(np.int32))

    def distance(self, xy: np.ndarray) -> np.ndarray:
        """Pixels from image points ``xy [N, 2]`` (continuous pixel coordinates) to the mask; points outside the
        image add their distance to it."""
        h, w = self.mask.shape
        row, col = self._pixel(xy)
        beyond = np.hypot(np.maximum(0.0, np.maximum(-xy[:, 0], xy[:, 0] - w)),
                          np.maximum(0.0, np.maximum(-xy[:, 1], xy[:, 1] - h)))
        return self._distance[row, col] + beyond

    def _pixel(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.mask.shape
        return (np.clip(np.floor(xy[:, 1]), 0, h - 1).astype(np.int64),
                np.clip(np.floor(xy[:, 0]), 0, w - 1).astype(np.int64))

    def nearest(self, xy: np.ndarray) -> np.ndarray:
        """The centre ``[N, 2]`` (x, y pixels) of the mask pixel nearest to each image point ``xy [N, 2]``."""
        row, col = self._pixel(xy)
        return np.stack([self._nearest[1, row, col], self._nearest[0, row, col]], 1) + 0.5

    def unproject(self, xy: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """World points ``[N, 3]`` at ``depth [N]`` on the rays through pixels ``xy [N, 2]`` of this mask."""
        h, w = self.mask.shape
        origin, dirs = self.camera.rays(xy, w, h)
        return origin + dirs * np.asarray(depth, dtype=np.float64)[:, None]

    def project(self, world: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """World points ``[N, 3]`` → ``(xy [N, 2]`` pixels, ``depth [N]``, focal length in pixels)`` for this mask's
        size (the camera's fields of view span the whole mask); NaN pixels behind the camera."""
        h, w = self.mask.shape
        xy, depth = self.camera.project(world, w, h)
        K = self.camera.pixel_intrinsics(w, h)
        return xy, depth, float(max(K[0, 0], K[1, 1]))


def outside_silhouettes(coords: np.ndarray, resolution: int, views: Sequence[SilhouetteView],
                        mesh_scale: float = 1.0, margin_px: float = DEFAULT_MARGIN_PX) -> np.ndarray:
    """``[N]`` bool: voxels ``coords [N, 3 or 4]`` on the ``resolution³`` grid whose whole extent (the sphere around
    the voxel) projects more than ``margin_px`` away from the mask of at least one view. Voxels behind a camera
    are never carved. Conservative: a voxel kept at one grid has every kept child at the next one inside it."""
    if not views:
        return np.zeros(len(coords), bool)
    world = voxel_frame_to_world(voxel_centres(coords, resolution), mesh_scale)
    radius = np.sqrt(3.0) / 2.0 / float(resolution) / float(mesh_scale)  # the voxel's circumscribed sphere
    outside = np.zeros(len(world), bool)
    for view in views:
        xy, depth, focal = view.project(world)
        front = depth > radius
        reach = margin_px + focal * radius / np.where(front, depth - radius, 1.0)
        dist = view.distance(np.nan_to_num(xy))
        outside |= front & (dist > reach)
    return outside


def snap_to_silhouettes(vertices: np.ndarray, views: Sequence[SilhouetteView], mesh_scale: float = 1.0,
                        tolerance_px: float = 0.5, passes: int = 2) -> np.ndarray:
    """Voxel-frame ``vertices [N, 3]`` with each vertex that projects more than ``tolerance_px`` outside a view's
    mask moved, at its depth, onto the ray through the nearest mask pixel (views in turn, ``passes`` times). The
    mesh keeps its connectivity; only the rim that spills past the silhouette moves (float64 ``[N, 3]``)."""
    out = np.asarray(vertices, dtype=np.float64).copy()
    for _ in range(passes if len(views) > 1 else 1):
        for view in views:
            world = voxel_frame_to_world(out, mesh_scale)
            xy, depth, _ = view.project(world)
            move = (depth > 0) & (view.distance(np.nan_to_num(xy)) > tolerance_px)
            if move.any():
                target = view.unproject(view.nearest(xy[move]), depth[move])
                out[move] = world_to_voxel_frame(target, mesh_scale)
    return out


def constrain_to_silhouettes(asset: VoxelAsset, views: Sequence[SilhouetteView],
                             margin_px: float = DEFAULT_MARGIN_PX) -> tuple[VoxelAsset, dict[str, int]]:
    """``asset`` held to the views' silhouettes: the voxels outside them carved (:func:`outside_silhouettes`), then
    the surface vertices (dual vertices, or a stored mesh) snapped onto them (:func:`snap_to_silhouettes`).
    Returns the new asset and ``{"carved": voxels removed, "snapped": vertices moved}``; :class:`UserError` when
    no voxel is left (the masks do not belong to these cameras)."""
    scale = asset.camera.mesh_scale if asset.camera is not None else 1.0
    carved = outside_silhouettes(asset.coords, asset.resolution, views, scale, margin_px)
    if carved.all():
        raise UserError("every generated voxel lies outside the input silhouette (do the masks fit the cameras?)")
    keep = ~carved
    kept = {name: getattr(asset, name)[keep] for name in ("coords", "attrs", "dual_vertices", "intersected",
                                                           "split_weight") if getattr(asset, name) is not None}
    out = replace(asset, **kept)
    if out.mesh_vertices is not None:
        vertices = np.asarray(out.mesh_vertices, dtype=np.float64)
        snapped = snap_to_silhouettes(vertices, views, scale)
        out = replace(out, mesh_vertices=snapped.astype(np.float32))
    elif out.dual_vertices is not None:
        voxel = 1.0 / out.resolution
        vertices = (out.coords + out.dual_vertices.astype(np.float64)) * voxel - 0.5
        snapped = snap_to_silhouettes(vertices, views, scale)
        out = replace(out, dual_vertices=((snapped + 0.5) / voxel - out.coords).astype(np.float32))
    else:
        return out, {"carved": int(carved.sum()), "snapped": 0}
    moved = int(np.any(np.abs(snapped - vertices) > 1e-12, axis=1).sum())
    return out, {"carved": int(carved.sum()), "snapped": moved}


def complete_occupancy(logits: np.ndarray, views: Sequence[SilhouetteView], mesh_scale: float = 1.0,
                       stride_px: float = 4.0, samples_per_cell: int = 2, chunk_rays: int = 2048) -> np.ndarray:
    """Occupancy ``[D, D, D]`` bool (``logits > 0`` of a structure decoder, voxel frame; −inf marks cells that may
    not be chosen) made to cover every view's mask: a mask pixel (sampled every ``stride_px`` pixels of a 512-pixel
    image, proportionally fewer on a larger mask) whose ray meets no occupied cell inside the visual hull gets the
    cell along that ray with the highest logit inside it. Rays are sampled ``samples_per_cell`` times per cell
    through the unit cube, ``chunk_rays`` at a time; a sample is inside the visual hull when it projects within
    :data:`DEFAULT_MARGIN_PX` of every view's mask (with several views, an occupied cell only where the other masks
    rule it out is carved later and leaves the pixel uncovered)."""
    logits = np.asarray(logits, dtype=np.float32)
    d = logits.shape[0]
    occupied = logits > 0
    steps = samples_per_cell * d * 2  # the cube's diagonal is under 2 along any ray through it (√3)
    for view in views:
        h, w = view.mask.shape
        stride = stride_px * max(1.0, max(h, w) / 512.0)
        ys, xs = np.mgrid[stride / 2:h:stride, stride / 2:w:stride]
        xy = np.stack([xs.ravel(), ys.ravel()], 1)
        row = np.clip(xy[:, 1].astype(np.int64), 0, h - 1)
        col = np.clip(xy[:, 0].astype(np.int64), 0, w - 1)
        xy = xy[view.mask[row, col]]
        centre_depth = float(np.linalg.norm(view.camera.position))
        reach = np.sqrt(3) / 2 / mesh_scale
        depth = np.linspace(centre_depth - reach, centre_depth + reach, steps)
        before = occupied.copy()  # every ray of this view is tested against the cells occupied before it
        for first in range(0, len(xy), chunk_rays):
            _complete_rays(logits, before, occupied, view, views, xy[first:first + chunk_rays], depth, mesh_scale)
    return occupied


def _complete_rays(logits: np.ndarray, before: np.ndarray, occupied: np.ndarray, view: SilhouetteView,
                   views: Sequence[SilhouetteView], xy: np.ndarray, depth: np.ndarray, mesh_scale: float) -> None:
    """:func:`complete_occupancy` for the rays through pixels ``xy [P, 2]`` of ``view``, sampled at ``depth [K]``:
    marks in ``occupied`` (in place) the likeliest candidate cell of each ray that meets no cell of ``before``."""
    d, steps = logits.shape[0], len(depth)
    points = view.unproject(np.repeat(xy, steps, 0), np.tile(depth, len(xy)))  # [P·K, 3] world
    cells = np.floor((world_to_voxel_frame(points, mesh_scale) + 0.5) * d).astype(np.int64)
    inside = np.all((cells >= 0) & (cells < d), axis=1)
    cells = np.clip(cells, 0, d - 1)
    flat = (cells[:, 0] * d + cells[:, 1]) * d + cells[:, 2]
    inside &= np.isfinite(logits.reshape(-1)[flat])  # a cell with logit −inf is no candidate
    candidates = np.flatnonzero(inside)
    for other in views:
        if other is not view and len(candidates):
            xy_other, depth_other, _ = other.project(points[candidates])
            inside[candidates] &= (depth_other > 0) & (other.distance(np.nan_to_num(xy_other)) <= DEFAULT_MARGIN_PX)
    score = np.where(inside, logits.reshape(-1)[flat], -np.inf).reshape(len(xy), steps)
    hit = np.where(inside, before.reshape(-1)[flat], False).reshape(len(xy), steps)
    missed = ~hit.any(1) & np.isfinite(score).any(1)
    best = flat.reshape(len(xy), steps)[missed, np.argmax(score[missed], 1)]
    occupied.reshape(-1)[best] = True


def constrain_subdivisions(parents: np.ndarray, logits: np.ndarray, resolution: int, views: Sequence[SilhouetteView],
                           mesh_scale: float = 1.0, margin_px: float = DEFAULT_MARGIN_PX) -> np.ndarray:
    """A decoder's subdivision logits ``[Np, 8]`` (child kept when > 0) held to the views' silhouettes at the
    children's grid ``resolution``: children of ``parents [Np, 3 or 4]`` outside a mask (:func:`outside_silhouettes`)
    get −10⁴, and, on grids up to :data:`MAX_COMPLETION_GRID`, each mask pixel's ray that meets no kept child gets
    the likeliest child along it inside every mask (:func:`complete_occupancy`; logit raised to 1). The same rule as
    the structure's completion, applied at every level of the upsampling decoder. Returns float32 ``[Np, 8]``."""
    out = np.asarray(logits, dtype=np.float32).reshape(-1).copy()
    children = (np.asarray(parents)[:, -3:].astype(np.int64)[:, None, :] * 2 + CHILD_OFFSETS[None]).reshape(-1, 3)
    carved = outside_silhouettes(children, resolution, views, mesh_scale, margin_px)
    out[carved] = -1e4
    if resolution <= MAX_COMPLETION_GRID and views:
        dense = np.full((resolution,) * 3, -np.inf, dtype=np.float32)
        kept = children[~carved]
        dense[kept[:, 0], kept[:, 1], kept[:, 2]] = out[~carved]
        done = complete_occupancy(dense, views, mesh_scale)
        added = done[children[:, 0], children[:, 1], children[:, 2]] & (out <= 0) & ~carved
        out[added] = 1.0
    return out.reshape(-1, 8)
