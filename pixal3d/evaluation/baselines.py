"""Baselines scored by the same harness as the model, so every table has its floor beside it.

* :func:`sphere` — the largest sphere in the unit cube (radius 0.5, centred): knows nothing.
* :func:`silhouette_hull` — the input mask carved through the input camera's frustum inside the cube.
  Built exactly, not voxelised: every mask pixel is the cone of rays through that pixel's square,
  cut to the part inside the cube. The front surface (where each ray enters the cube), the back
  surface (where it leaves) and the side walls along the mask boundary form one closed mesh whose
  vertices lie on the rays through pixel corners (at the mean entry / exit depth of the pixels they
  bound, kept inside the cube), so seen from the input camera it covers exactly the mask's pixels
  (input-view IoU 1 up to the 2× supersampled mask edge) and knows nothing else.
* :func:`visual_hull` — the same idea for several views (multi-view protocol): voxels of a
  :data:`VISUAL_HULL_GRID`³ grid inside the cube whose centres project inside every mask (a voxel that
  falls outside a view's image is not carved by that view), surfaced with marching cubes.
"""

from __future__ import annotations

import numpy as np

#: icosphere subdivisions of the sphere baseline (20 480 faces)
SPHERE_SUBDIVISIONS = 5
#: grid of the multi-view visual hull
VISUAL_HULL_GRID = 160


def sphere(radius: float = 0.5, subdivisions: int = SPHERE_SUBDIVISIONS) -> tuple[np.ndarray, np.ndarray]:
    """An icosphere of ``radius`` at the origin → ``(vertices [V,3], faces [F,3])``."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


def _cube_interval(origin: np.ndarray, directions: np.ndarray, half: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameters ``(t_near, t_far)`` ``[M]`` where rays ``origin + t·d`` are inside ``[-half, half]³``
    (``t_near > t_far`` for a miss)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / directions
        t0 = (-half - origin) * inv
        t1 = (half - origin) * inv
    lo, hi = np.minimum(t0, t1), np.maximum(t0, t1)
    parallel = directions == 0
    inside = (origin >= -half) & (origin <= half)
    lo = np.where(parallel, np.where(inside, -np.inf, np.inf), lo)
    hi = np.where(parallel, np.where(inside, np.inf, -np.inf), hi)
    return np.maximum(lo.max(1), 0.0), hi.min(1)


def silhouette_hull(mask: np.ndarray, camera) -> tuple[np.ndarray, np.ndarray]:
    """The exact silhouette hull of a square boolean ``mask [S,S]`` seen by ``camera``
    (:class:`~pixal3d.core.camera.Camera`) inside the unit cube → ``(vertices, faces)``
    (module docstring). Pixels whose central ray misses the cube are dropped."""
    mask = np.asarray(mask, bool)
    size = mask.shape[0]
    rows, cols = np.nonzero(mask)
    origin, dirs = camera.rays(np.stack([cols + 0.5, rows + 0.5], 1), size)
    t_near, t_far = _cube_interval(origin, dirs)
    hit = t_near < t_far
    rows, cols, t_near, t_far = rows[hit], cols[hit], t_near[hit], t_far[hit]
    if len(rows) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    inside = np.zeros_like(mask)
    inside[rows, cols] = True
    # corner depths: mean of the adjacent pixels' entry / exit depths
    n = size + 1
    corner = lambda r, c: r * n + c  # noqa: E731
    corners = np.stack([corner(rows, cols), corner(rows, cols + 1), corner(rows + 1, cols + 1), corner(rows + 1, cols)], 1)
    count = np.bincount(corners.reshape(-1), minlength=n * n)
    near = np.bincount(corners.reshape(-1), np.repeat(t_near, 4), minlength=n * n)
    far = np.bincount(corners.reshape(-1), np.repeat(t_far, 4), minlength=n * n)
    used = np.nonzero(count)[0]
    index = np.full(n * n, -1, np.int64)
    index[used] = np.arange(len(used))
    cr, cc = np.divmod(used, n)
    origin, cdirs = camera.rays(np.stack([cc, cr], 1).astype(np.float64), size)
    t_front, t_back = near[used] / count[used], far[used] / count[used]
    # a corner ray that meets the cube keeps its points on or inside it
    c_near, c_far = _cube_interval(origin, cdirs)
    meets = c_near < c_far
    t_front = np.where(meets, np.clip(t_front, c_near, c_far), t_front)
    t_back = np.where(meets, np.clip(t_back, c_near, c_far), t_back)
    front = origin + cdirs * t_front[:, None]
    back = origin + cdirs * t_back[:, None]
    vertices = np.concatenate([front, back])
    m = len(used)
    a, b, c, d = (index[corners[:, k]] for k in range(4))  # top-left, top-right, bottom-right, bottom-left
    faces = [np.stack([a, d, c], 1), np.stack([a, c, b], 1),  # front, facing the camera
             np.stack([a, c, d], 1) + m, np.stack([a, b, c], 1) + m]  # back, facing away
    padded = np.pad(inside, 1)
    # walls along the mask boundary: (neighbour offset, the pixel's edge as two corner columns of `corners`)
    for dr, dc, (i, j) in ((-1, 0, (0, 1)), (0, 1, (1, 2)), (1, 0, (2, 3)), (0, -1, (3, 0))):
        edge = ~padded[rows + 1 + dr, cols + 1 + dc]
        p, q = index[corners[edge, i]], index[corners[edge, j]]
        faces += [np.stack([p, q + m, q], 1), np.stack([p, p + m, q + m], 1)]
    return vertices, np.concatenate(faces)


def visual_hull(masks: list[np.ndarray], cameras: list, grid: int = VISUAL_HULL_GRID) -> tuple[np.ndarray, np.ndarray]:
    """Voxel visual hull of several views inside the unit cube → ``(vertices, faces)`` (module docstring)."""
    from skimage.measure import marching_cubes

    axis = (np.arange(grid) + 0.5) / grid - 0.5
    centres = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    keep = np.ones(len(centres), bool)
    for mask, camera in zip(masks, cameras):
        size = mask.shape[0]
        xy, depth = camera.project(centres, size)
        xy = np.nan_to_num(xy, nan=-1.0)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < size) & (xy[:, 1] >= 0) & (xy[:, 1] < size) & (depth > 0)
        col = np.clip(xy[:, 0].astype(np.int64), 0, size - 1)
        row = np.clip(xy[:, 1].astype(np.int64), 0, size - 1)
        keep &= ~inside | mask[row, col]
    volume = np.pad(keep.reshape(grid, grid, grid).astype(np.float32), 1)
    if volume.max() == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    verts, faces, _, _ = marching_cubes(volume, level=0.5)
    return (verts - 1 + 0.5) / grid - 0.5, np.asarray(faces, np.int64)
