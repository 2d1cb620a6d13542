"""Flexible dual grid → triangle mesh (``o_voxel.convert.flexible_dual_grid_to_mesh``, eval mode).

One vertex per active voxel at ``(coords + dual_vertices) / R + aabb_min``; for every voxel and axis
whose ``intersected`` flag is set, the four voxels sharing that voxel's edge at its ``(+1, +1)`` corner
form a quad (voxel offsets and vertex order in :data:`EDGE_QUAD_OFFSETS`); quads with a missing voxel
are dropped; each quad becomes two triangles. Quads are emitted in voxel order, then axis x, y, z.

The winding of a quad depends only on its axis, so the orientation of the result relative to the
surface interior is arbitrary (see :func:`pixal3d.mesh.cleanup.orient_outward`).
"""

from __future__ import annotations

import torch

from pixal3d.utils.coords import CoordIndex

#: For each axis, the offsets of the 4 voxels sharing voxel ``c``'s edge along that axis through the
#: corner ``c + 1`` on the two other axes, in quad vertex order.
EDGE_QUAD_OFFSETS = torch.tensor(
    [
        [[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0]],  # x
        [[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]],  # y
        [[0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0]],  # z
    ],
    dtype=torch.long,
)
#: Quad → triangles along the diagonal q0–q2.
SPLIT_02 = torch.tensor([0, 1, 2, 0, 2, 3])
#: Quad → triangles along the diagonal q1–q3.
SPLIT_13 = torch.tensor([0, 1, 3, 3, 1, 2])


def dual_grid_quads(coords: torch.Tensor, intersected: torch.Tensor) -> torch.Tensor:
    """Quads ``[Q, 4]`` int64 (row indices into ``coords``) of the flagged edges whose 4 voxels exist.

    ``coords [N,3]`` integer voxel indices, ``intersected [N,3]`` bool. Order: voxel, then axis x, y, z.
    """
    coords = coords.long()
    if coords.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.long, device=coords.device)
    index = CoordIndex(coords, bounds=coords.amax(0) + 2)
    neighbours = coords[:, None, None, :] + EDGE_QUAD_OFFSETS.to(coords.device)[None]  # [N,3,4,3]
    rows = index.lookup(neighbours[intersected.bool()])  # [M,4]
    return rows[(rows >= 0).all(dim=1)]


def _split_by_normal_alignment(vertices: torch.Tensor, quads: torch.Tensor) -> torch.Tensor:
    """The official ``split_weight=None`` choice, reproduced exactly.

    The reference scores each split by ``|n_a · n_b|`` with ``n_a = (t1−t0)×(t2−t0)`` and
    ``n_b = (t2−t1)×(t3−t1)`` computed on the first four entries ``t0..t3`` of the split's six
    triangle indices. For the q0–q2 split those are ``(q0,q1,q2,q0)`` (both normals belong to triangle
    q0q1q2, score = its squared doubled area); for the q1–q3 split they are ``(q0,q1,q3,q3)`` whose second
    normal is zero. The q0–q2 split therefore wins unless triangle q0q1q2 is degenerate.
    """

    def score(split: torch.Tensor) -> torch.Tensor:
        t = quads[:, split[:4]]
        p = [vertices[t[:, k]] for k in range(4)]
        n_a = torch.linalg.cross(p[1] - p[0], p[2] - p[0])
        n_b = torch.linalg.cross(p[2] - p[1], p[3] - p[1])
        return (n_a * n_b).sum(dim=1).abs()

    split = SPLIT_02.to(quads.device)
    alt = SPLIT_13.to(quads.device)
    use_02 = score(split) > score(alt)
    return torch.where(use_02[:, None], quads[:, split], quads[:, alt]).reshape(-1, 3)


def flexible_dual_grid_to_mesh(
    coords: torch.Tensor,
    dual_vertices: torch.Tensor,
    intersected: torch.Tensor,
    split_weight: torch.Tensor | None,
    resolution: int,
    aabb_min: float = -0.5,
    aabb_max: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Extract the dual-grid mesh (official eval-mode extraction).

    Args:
        coords: ``[N,3]`` integer voxel indices in ``[0, resolution)``.
        dual_vertices: ``[N,3]`` float dual-vertex offsets in voxel units.
        intersected: ``[N,3]`` bool per-axis edge-crossing flags.
        split_weight: ``[N,1]`` or ``[N]`` positive weights; a quad is split along q0–q2 iff
            ``w[q0]·w[q2] > w[q1]·w[q3]``. ``None`` → the official normal-alignment rule
            (:func:`_split_by_normal_alignment`).
        resolution: grid size ``R``; voxel size ``(aabb_max − aabb_min) / R``.

    Returns:
        ``vertices [N,3]`` float32 (one per voxel, unit-cube frame, unreferenced ones kept) and
        ``faces [2Q,3]`` int64.
    """
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must be [N, 3], got {tuple(coords.shape)}")
    voxel_size = torch.tensor((aabb_max - aabb_min) / resolution, dtype=torch.float32)
    vertices = (coords.float() + dual_vertices.float()) * voxel_size + torch.tensor(aabb_min, dtype=torch.float32)
    quads = dual_grid_quads(coords, intersected)
    if split_weight is None:
        return vertices, _split_by_normal_alignment(vertices, quads)
    w = split_weight.float().reshape(-1)[quads]
    use_02 = w[:, 0] * w[:, 2] > w[:, 1] * w[:, 3]
    faces = torch.where(use_02[:, None], quads[:, SPLIT_02.to(quads.device)], quads[:, SPLIT_13.to(quads.device)])
    return vertices, faces.reshape(-1, 3)
