"""Pixel back-projection: project 3D grid points into the image and sample per-pixel features.

This is the official ``ProjGrid`` in plain PyTorch, plus a sparse path that projects
only the requested voxels and a multi-view mean (features averaged over the views of a capture). Frames are those of
:mod:`pixal3d.core.camera`: grid index ``(i, j, k)`` (x right, y up, z toward the input
camera) → world ``(l_i, -l_k, l_j) / (2 * mesh_scale)`` with ``l = linspace(-1, 1, G)``; image
pixels u right, v down; sampling coordinate ``g = (uv + 0.5) / S * 2 - 1`` read with
``F.grid_sample(mode='bilinear', align_corners=False, padding_mode='border')``.

``camera`` arguments accept a :class:`~pixal3d.core.camera.Camera` (pose in the Blender world) or a sequence
of them (one per batch item). ``S`` is the side of the square image the feature extractor saw; a camera's
lens is size-free (fields of view), so a non-square photo resized to ``S x S`` keeps its camera.
``mesh_scale=None`` takes each camera's own ``mesh_scale``. All geometry is computed in float32 (as the official code); the
sampling grid is cast to the feature map's dtype.

``cell_samples`` (every function that samples; 0 by default): 0 is the official single point per grid index at
``linspace(-1, 1, G)``. ``n >= 1`` gives each index the mean feature over ``n^3`` points spread evenly inside its
cell (``l = -1 + (2 (i n + m) + 1) / (G n)``, ``m < n``), so a coarse token summarises the pixels its cell covers
instead of reading one point that, at small ``G``, sits up to half a cell off its centre (at ``G = 4`` the outer
tokens would read the volume's border). An option for models trained here (the shipped default model does not use
it); official checkpoints never do.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from pixal3d.core.camera import Camera
from pixal3d.errors import UserError

CameraArg = Camera | Sequence[Camera]


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------
def _check_grid(G: int) -> int:
    if int(G) != G or int(G) < 2:
        raise UserError(f"projection grid resolution must be an integer >= 2, got {G}")
    return int(G)


def _check_samples(cell_samples: int) -> int:
    if int(cell_samples) != cell_samples or int(cell_samples) < 0:
        raise UserError(f"cell_samples must be an integer >= 0, got {cell_samples}")
    return int(cell_samples)


def _points_per_index(cell_samples: int) -> int:
    """Projected points per grid index: ``n^3`` cell points, or the one official point for ``n = 0``."""
    return max(_check_samples(cell_samples), 1) ** 3


def _grid_axis(G: int, device: torch.device | str | None, cell_samples: int = 0) -> torch.Tensor:
    """Axis positions in ``[-1, 1]``: ``G`` official points, or ``G * n`` cell-centred ones (``n`` per cell)."""
    G, n = _check_grid(G), _check_samples(cell_samples)
    if n == 0:
        return torch.linspace(-1.0, 1.0, G, dtype=torch.float32, device=device)
    return (torch.arange(G * n, dtype=torch.float32, device=device) * 2 + 1) / (G * n) - 1


def _to_world(lx: torch.Tensor, ly: torch.Tensor, lz: torch.Tensor, mesh_scale: float) -> torch.Tensor:
    # (l_x, l_y, l_z) @ Rot^T with Rot = [[1,0,0],[0,0,-1],[0,1,0]] is (l_x, -l_z, l_y), exactly.
    return torch.stack([lx, -lz, ly], dim=-1) / float(mesh_scale) / 2


def grid_points(G: int, mesh_scale: float = 1.0, device: torch.device | str | None = None,
                cell_samples: int = 0) -> torch.Tensor:
    """World points ``[G^3 * max(n, 1)^3, 3]`` float32 of the projection grid (``n = cell_samples``).

    With ``n = 0`` (official) row ``r = i*G^2 + j*G + k`` is grid index ``(i, j, k)`` = voxel ``(x, y, z)``, at
    world ``(l_i, -l_k, l_j) / (2 * mesh_scale)`` with ``l = linspace(-1, 1, G)`` (endpoints included). With
    ``n >= 1`` the ``n^3`` cell points of index ``r`` are rows ``r * n^3 ...`` (see the module docstring).
    """
    ax = torch.arange(_check_grid(G), device=device)
    ijk = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    return voxel_world_points(ijk, G, mesh_scale, cell_samples)


def voxel_world_points(coords: torch.Tensor, G: int, mesh_scale: float = 1.0, cell_samples: int = 0) -> torch.Tensor:
    """World points ``[N * max(n, 1)^3, 3]`` float32 of voxel coords ``[N, 4]`` (batch, x, y, z) or ``[N, 3]`` on the
    ``G`` grid (``n = cell_samples``; voxel ``r``'s points are rows ``r * n^3 ...``).

    Bit-identical to the matching rows of :func:`grid_points`.
    """
    xyz = _check_coords(coords, G)[:, -3:]
    n = _check_samples(cell_samples)
    ax = _grid_axis(G, coords.device, n)
    if n:
        sub = torch.arange(n, device=coords.device)
        offsets = torch.stack(torch.meshgrid(sub, sub, sub, indexing="ij"), -1).reshape(-1, 3)
        xyz = (xyz[:, None] * n + offsets[None]).reshape(-1, 3)
    return _to_world(ax[xyz[:, 0]], ax[xyz[:, 1]], ax[xyz[:, 2]], mesh_scale)


def pool_cell_samples(values: torch.Tensor, cell_samples: int, dim: int = -2) -> torch.Tensor:
    """Mean over each index's ``n^3`` consecutive cell points along ``dim`` (``n = cell_samples``; 0: unchanged)."""
    k = _points_per_index(cell_samples)
    if k == 1:
        return values
    dim = dim % values.ndim
    shape = values.shape
    return values.reshape(*shape[:dim], shape[dim] // k, k, *shape[dim + 1:]).mean(dim + 1)


def _check_coords(coords: torch.Tensor, G: int) -> torch.Tensor:
    if not isinstance(coords, torch.Tensor) or coords.ndim != 2 or coords.shape[1] not in (3, 4):
        shape = tuple(coords.shape) if isinstance(coords, torch.Tensor) else type(coords).__name__
        raise UserError(f"voxel coords must be an integer tensor [N, 4] (batch, x, y, z), got {shape}")
    if coords.is_floating_point() or coords.is_complex():
        raise UserError(f"voxel coords must be integers, got {coords.dtype}")
    coords = coords.long()
    if coords.shape[0]:
        xyz = coords[:, -3:]
        if xyz.min() < 0 or xyz.max() >= G:
            raise UserError(f"voxel coords must lie in [0, {G}) for a grid of resolution {G}")
        if coords.shape[1] == 4 and coords[:, 0].min() < 0:
            raise UserError("voxel coords have a negative batch index")
    return coords


def project_points(points: torch.Tensor, camera: Camera, width: int, height: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project world points ``[M, 3]`` float32 → ``(uv [M,2], depth [M], valid [M] bool)``.

    ``uv`` are pixel coordinates (u right, v down) in a ``width x height`` image (``height`` None: square).
    ``depth`` is the distance along the viewing direction (positive in front). ``valid`` = inside
    ``[0,W) x [0,H)`` and ``depth > 0``; the official pipeline computes but does not apply it. Float32, as the
    official ``project_points_to_image_batch`` (general 4x4 inverse, ``+1e-8`` in the divisor).
    """
    if not isinstance(camera, Camera):
        raise UserError(f"expected a Camera, got {type(camera).__name__}")
    width = int(width)
    height = width if height is None else int(height)
    pts = points.to(torch.float32)
    w2c = camera.world_to_cam().to(pts.device)
    K = camera.intrinsics(width, height).to(pts.device)
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    xc = w2c[0, 0] * x + w2c[0, 1] * y + w2c[0, 2] * z + w2c[0, 3]
    yc = w2c[1, 0] * x + w2c[1, 1] * y + w2c[1, 2] * z + w2c[1, 3]
    zc = w2c[2, 0] * x + w2c[2, 1] * y + w2c[2, 2] * z + w2c[2, 3]
    depth = -zc
    denom = -zc + 1e-8
    u = K[0, 0] * xc / denom + K[0, 2]
    v = -K[1, 1] * yc / denom + K[1, 2]
    valid = (u >= 0) & (u < width) & (v >= 0) & (v < height) & (depth > 0)
    return torch.stack([u, v], dim=-1), depth, valid


def normalize_pixels(uv: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pixel coords ``[..., 2]`` → ``grid_sample`` coords ``(uv + 0.5) / size * 2 - 1`` (official convention)."""
    size = torch.tensor([float(width), float(height)], dtype=uv.dtype, device=uv.device)
    return (uv + 0.5) / size * 2 - 1


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------
def _camera_list(camera: CameraArg) -> list[Camera]:
    if isinstance(camera, Camera):
        return [camera]
    cams = list(camera)
    if not cams:
        raise UserError("no camera given")
    for c in cams:
        if not isinstance(c, Camera):
            raise UserError(f"expected Camera objects, got {type(c).__name__}")
    return cams


def _points_grid(points_for_scale, cam: Camera, S: int, mesh_scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    scale = cam.mesh_scale if mesh_scale is None else mesh_scale
    uv, _, valid = project_points(points_for_scale(scale), cam, S)
    return normalize_pixels(uv, S, S), valid


def _sampling_grid_and_valid(coords: torch.Tensor | None, camera: CameraArg, G: int, S: int,
                             mesh_scale: float | None, device, cell_samples: int = 0
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    cams = _camera_list(camera)
    G, n = _check_grid(G), _check_samples(cell_samples)
    if int(S) < 1:
        raise UserError(f"image size S must be positive, got {S}")
    if coords is None:
        grids, valids = zip(*(_points_grid(lambda s: grid_points(G, s, device, n), c, S, mesh_scale) for c in cams))
        return torch.stack(grids), torch.stack(valids)
    coords = _check_coords(coords, G).to(device)
    batch = coords[:, 0] if coords.shape[1] == 4 else torch.zeros_like(coords[:, 0])
    if len(cams) == 1:
        grid, valid = _points_grid(lambda s: voxel_world_points(coords, G, s, n), cams[0], S, mesh_scale)
        return grid[None], valid[None]
    if coords.shape[0] and int(batch.max()) >= len(cams):
        raise UserError(f"voxel coords refer to batch item {int(batch.max())} but only {len(cams)} cameras were given")
    k = _points_per_index(n)
    grid = torch.empty(coords.shape[0], k, 2, dtype=torch.float32, device=device)
    valid = torch.empty(coords.shape[0], k, dtype=torch.bool, device=device)
    for b in torch.unique(batch).tolist():
        rows = (batch == b).nonzero().squeeze(1)
        sub = coords[rows]
        g, v = _points_grid(lambda s: voxel_world_points(sub, G, s, n), cams[b], S, mesh_scale)
        grid[rows], valid[rows] = g.reshape(-1, k, 2), v.reshape(-1, k)
    return grid.reshape(1, -1, 2), valid.reshape(1, -1)


def sampling_grid(coords: torch.Tensor | None, camera: CameraArg, G: int, S: int,
                  mesh_scale: float | None = None, device: torch.device | str | None = None,
                  cell_samples: int = 0) -> torch.Tensor:
    """Normalised ``grid_sample`` coordinates ``[B or 1, M, 2]`` float32 (x, y in ``[-1, 1]`` inside the image).

    * ``coords=None``: all ``M = G^3`` grid points in official order, one row block per camera
      (``B = len(cameras)``, 1 for a single camera).
    * ``coords [N, 4]`` (batch, x, y, z): ``[1, N, 2]``; row ``n`` uses the camera of its batch item
      (or the single camera for all rows).

    With ``cell_samples = n >= 1`` every row becomes ``n^3`` consecutive rows (its cell points; ``M`` grows by
    ``n^3``); :func:`pool_cell_samples` averages the sampled features back to one row per index.
    Feed to ``F.grid_sample(fmap, grid[:, None], 'bilinear', align_corners=False, padding_mode='border')``
    or :func:`bilinear_taps`.
    """
    if device is None and coords is not None:
        device = coords.device
    return _sampling_grid_and_valid(coords, camera, G, S, mesh_scale, device, cell_samples)[0]


def _check_map(feature_map: torch.Tensor) -> None:
    if not isinstance(feature_map, torch.Tensor) or feature_map.ndim != 4:
        shape = tuple(feature_map.shape) if isinstance(feature_map, torch.Tensor) else type(feature_map).__name__
        raise UserError(f"feature map must be a tensor [B, C, H, W], got {shape}")
    if not feature_map.is_floating_point():
        raise UserError(f"feature map must be floating point, got {feature_map.dtype}")


def _sample(fmap: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``fmap [B,C,H,W]``, ``grid [B,M,2]`` → ``[B, M, C]``."""
    out = F.grid_sample(fmap, grid.to(fmap.dtype)[:, None], mode="bilinear", align_corners=False,
                        padding_mode="border")
    return out[:, :, 0].transpose(1, 2)


def backproject_dense(feature_map: torch.Tensor, camera: CameraArg, G: int, S: int,
                      mesh_scale: float | None = None, cell_samples: int = 0) -> torch.Tensor:
    """Official ``ProjGrid``: features ``[B, G^3, C]`` of every grid point (row order of :func:`grid_points`).

    ``feature_map [B, C, H, W]`` (any H, W: sampling is in normalised coordinates). One camera for
    all batch items, or one per item. ``cell_samples``: see the module docstring.
    """
    _check_map(feature_map)
    cams = _camera_list(camera)
    B = feature_map.shape[0]
    if len(cams) not in (1, B):
        raise UserError(f"got {len(cams)} cameras for a batch of {B} feature maps")
    grid = sampling_grid(None, cams, G, S, mesh_scale, feature_map.device, cell_samples)
    return pool_cell_samples(_sample(feature_map, grid.expand(B, -1, -1)), cell_samples)


def backproject_sparse(feature_map: torch.Tensor, camera: CameraArg, coords: torch.Tensor, G: int, S: int,
                       mesh_scale: float | None = None, cell_samples: int = 0) -> torch.Tensor:
    """Features ``[N, C]`` of the voxels ``coords [N, 4]`` (batch, x, y, z) on the ``G`` grid.

    Equals gathering :func:`backproject_dense` at ``(b, x, y, z)`` but projects only the given voxels
    (never materialises ``G^3 x C``). Row ``n`` reads ``feature_map[coords[n, 0]]`` with that item's
    camera (or the single camera). ``cell_samples``: see the module docstring.
    """
    _check_map(feature_map)
    coords = _check_coords(coords, G).to(feature_map.device)
    if coords.shape[1] != 4:
        raise UserError("voxel coords must be [N, 4] (batch, x, y, z)")
    cams = _camera_list(camera)
    B = feature_map.shape[0]
    if len(cams) not in (1, B):
        raise UserError(f"got {len(cams)} cameras for a batch of {B} feature maps")
    if coords.shape[0] and int(coords[:, 0].max()) >= B:
        raise UserError(f"voxel coords refer to batch item {int(coords[:, 0].max())} of a batch of {B}")
    k = _points_per_index(cell_samples)
    grid = sampling_grid(coords, cams, G, S, mesh_scale, cell_samples=cell_samples)[0].reshape(-1, k, 2)
    batch = coords[:, 0]
    items = torch.unique(batch).tolist()
    if len(items) == 1:  # the pipeline's case: no scatter of the [N, C] result
        return pool_cell_samples(_sample_taps(feature_map[items[0]], grid.reshape(-1, 2)), cell_samples)
    out = feature_map.new_empty(coords.shape[0], feature_map.shape[1])
    for b in items:
        rows = (batch == b).nonzero().squeeze(1)
        out[rows] = pool_cell_samples(_sample_taps(feature_map[b], grid[rows].reshape(-1, 2)), cell_samples)
    return out


def _sample_taps(fmap: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``fmap [C,H,W]``, ``grid [M,2]`` → ``[M, C]``: grid_sample (border, align_corners=False) via :func:`bilinear_taps`.

    One fused weighted gather (``embedding_bag``) over whole channel rows of a channels-last copy of
    the map: memory-bound and cache-friendly for large C, no ``[M, 4, C]`` temporary. Agrees with
    ``grid_sample`` to float rounding (the taps are summed in the same order).
    """
    C, H, W = fmap.shape
    table = fmap.permute(1, 2, 0).reshape(H * W, C).contiguous()
    rows, cols, weights = bilinear_taps(grid, H, W)
    return F.embedding_bag(rows * W + cols, table, per_sample_weights=weights.to(fmap.dtype), mode="sum")


def bilinear_taps(grid: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 4 bilinear taps of normalised points ``grid [M, 2]`` (x, y) on an ``H x W`` map.

    Returns ``rows [M,4]`` int64, ``cols [M,4]`` int64 and ``weights [M,4]`` (grid's dtype) such that
    ``sum_k weights[:, k] * fmap[:, rows[:, k], cols[:, k]]`` equals
    ``F.grid_sample(fmap[None], grid[None, None], 'bilinear', align_corners=False, padding_mode='border')``.
    Taps are ordered (top-left, top-right, bottom-left, bottom-right); indices are clamped into the
    map (a clamped tap always has weight 0, as border padding does). The weights use grid_sample's
    CPU arithmetic, so results agree with it to a few float32 ulps (bit-identical for most points).
    """
    if grid.ndim != 2 or grid.shape[1] != 2 or not grid.is_floating_point():
        raise UserError(f"sampling grid must be a float tensor [M, 2], got {tuple(grid.shape)} {grid.dtype}")
    if H < 1 or W < 1:
        raise UserError(f"map size must be positive, got {H}x{W}")
    # unnormalise (align_corners=False) and clip to the border with grid_sample's own arithmetic
    ix = ((grid[:, 0] + 1) * (W / 2) - 0.5).clamp(0, W - 1)
    iy = ((grid[:, 1] + 1) * (H / 2) - 0.5).clamp(0, H - 1)
    x0, y0 = ix.floor(), iy.floor()
    west, north = ix - x0, iy - y0  # distances to the left column / top row
    east, south = 1 - west, 1 - north
    weights = torch.stack([south * east, south * west, north * east, north * west], dim=1)
    c0, r0 = x0.long(), y0.long()
    c1, r1 = (c0 + 1).clamp_(max=W - 1), (r0 + 1).clamp_(max=H - 1)
    rows = torch.stack([r0, r0, r1, r1], dim=1)
    cols = torch.stack([c0, c1, c0, c1], dim=1)
    return rows, cols, weights


# --------------------------------------------------------------------------------------------
# multi-view
# --------------------------------------------------------------------------------------------
def _multiview(feature_maps: torch.Tensor, cameras: Sequence[Camera], coords: torch.Tensor | None, G: int,
               S: int, mesh_scale: float | None, validity_weighted: bool, cell_samples: int) -> torch.Tensor:
    _check_map(feature_maps)
    cams = _camera_list(cameras)
    V = feature_maps.shape[0]
    if len(cams) != V:
        raise UserError(f"got {len(cams)} cameras for {V} view feature maps")
    if coords is not None:
        coords = _check_coords(coords, G).to(feature_maps.device)
        coords = coords[:, -3:]  # every voxel is seen by every view
    total = count = None
    for v, cam in enumerate(cams):
        grid, valid = _sampling_grid_and_valid(coords, cam, G, S, mesh_scale, feature_maps.device, cell_samples)
        feats = _sample(feature_maps[v:v + 1], grid)[0]  # [M, C]
        if validity_weighted:
            w = valid[0].to(feats.dtype)[:, None]
            feats = feats * w
            w = pool_cell_samples(w, cell_samples, 0)
            count = w if count is None else count + w
        feats = pool_cell_samples(feats, cell_samples, 0)
        total = feats if total is None else total + feats
    if validity_weighted:
        return total / count.clamp(min=1e-6)  # 0 where no view sees the point (its total is 0 too)
    return total / V


def backproject_dense_multiview(feature_maps: torch.Tensor, cameras: Sequence[Camera], G: int, S: int,
                                mesh_scale: float | None = None, validity_weighted: bool = False,
                                cell_samples: int = 0) -> torch.Tensor:
    """Multi-view ProjGrid: ``[1, G^3, C]`` = mean over views of each view's projected features.

    ``feature_maps [V, C, H, W]`` are the V views of ONE object; ``cameras`` (length V) must already
    be in the canonical frame (view 0 = front view; use :func:`canonicalize_views` for cameras given
    in a capture's world frame). ``validity_weighted=False`` is the official unweighted mean
    (out-of-view samples border-clamped); ``True`` averages only over views where the point projects
    inside the image in front of the camera (weighted sum / weight, per cell sample; zero where no view sees it).
    """
    return _multiview(feature_maps, cameras, None, G, S, mesh_scale, validity_weighted, cell_samples)[None]


def backproject_sparse_multiview(feature_maps: torch.Tensor, cameras: Sequence[Camera], coords: torch.Tensor,
                                 G: int, S: int, mesh_scale: float | None = None,
                                 validity_weighted: bool = False, cell_samples: int = 0) -> torch.Tensor:
    """Sparse :func:`backproject_dense_multiview`: ``[N, C]`` for voxels ``coords [N, 4]`` of one object.

    The batch column of ``coords`` is not used (all V views look at the same object).
    """
    if coords.ndim != 2 or coords.shape[1] != 4:
        raise UserError(f"voxel coords must be [N, 4] (batch, x, y, z), got {tuple(coords.shape)}")
    return _multiview(feature_maps, cameras, coords, G, S, mesh_scale, validity_weighted, cell_samples)
