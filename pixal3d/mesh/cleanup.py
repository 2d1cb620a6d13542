"""Mesh cleanup on plain arrays (``vertices [V,3]`` float, ``faces [F,3]`` int), run after the dual-grid
extraction and before simplification in the GLB export.

* :func:`remove_degenerate_faces`, :func:`remove_duplicate_faces`, :func:`remove_small_components`,
  :func:`remove_unreferenced_vertices`: the usual repairs.
* :func:`fill_holes`: boundary loops with perimeter below ``max_perimeter`` (unit-cube units,
  official 0.03) are closed by a fan to one new vertex at the mean of the loop's edge midpoints.
* :func:`orient_outward`: the dual-grid winding is per-axis arbitrary, so faces are re-wound
  consistently within each edge-connected component (parity propagation over manifold edges, solved as
  connected components of the orientation double cover) and each component is turned so its signed
  volume is positive.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import scipy.sparse
from scipy.sparse.csgraph import connected_components

#: official ``fill_holes`` threshold (unit-cube units)
MAX_HOLE_PERIMETER = 3e-2
#: parts with a smaller surface area (unit-cube units) are dropped as floaters
MIN_COMPONENT_AREA = 1e-5


def _edge_keys(faces: np.ndarray, num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Undirected key ``[3F]`` and direction flag (``a < b``) of every half-edge ``a→b``, face-major."""
    a = faces.reshape(-1)
    b = faces[:, [1, 2, 0]].reshape(-1)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return lo.astype(np.int64) * num_vertices + hi, a < b


def remove_degenerate_faces(vertices: np.ndarray, faces: np.ndarray, abs_tol: float = 1e-24,
                            rel_tol: float = 1e-12) -> np.ndarray:
    """Faces ``[F',3]`` without repeated corners, with doubled area ``> abs_tol`` and
    ``> rel_tol × (longest edge)²``."""
    faces = np.asarray(faces)
    p = np.asarray(vertices, dtype=np.float64)[faces]
    area2 = np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    longest = (np.linalg.norm(p - p[:, [1, 2, 0]], axis=2) ** 2).max(1)
    distinct = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])
    return faces[distinct & (area2 > abs_tol) & (area2 > rel_tol * longest)]


def remove_duplicate_faces(faces: np.ndarray) -> np.ndarray:
    """Faces with the same corner set (any order or winding) reduced to their first occurrence."""
    faces = np.asarray(faces)
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    return faces[np.sort(first)]


def face_components(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """Component label ``[F]`` of each face; faces sharing a vertex are connected."""
    faces = np.asarray(faces, dtype=np.int64)
    if not len(faces):
        return np.zeros(0, dtype=np.int64)
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = scipy.sparse.coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(num_vertices, num_vertices))
    _, labels = connected_components(graph, directed=False)
    return labels[faces[:, 0]]


def remove_small_components(vertices: np.ndarray, faces: np.ndarray, min_area: float = 1e-5,
                            min_faces: int = 1) -> np.ndarray:
    """Faces of the components with total area ≥ ``min_area`` and at least ``min_faces`` faces."""
    faces = np.asarray(faces)
    if not len(faces):
        return faces
    labels = face_components(faces, len(vertices))
    p = np.asarray(vertices, dtype=np.float64)[faces]
    area = np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1) / 2
    comp_area = np.bincount(labels, area)
    comp_count = np.bincount(labels)
    keep = (comp_area >= min_area) & (comp_count >= min_faces)
    return faces[keep[labels]]


def remove_unreferenced_vertices(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop vertices no face uses. Returns ``(vertices, faces, kept)`` with ``kept [V']`` the old indices."""
    kept = np.unique(np.asarray(faces).reshape(-1))
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[kept] = np.arange(len(kept))
    return np.asarray(vertices)[kept], remap[faces], kept


def boundary_edges(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """Directed edges ``[B,2]`` (as they appear in their face) used by exactly one face."""
    faces = np.asarray(faces, dtype=np.int64)
    keys, _ = _edge_keys(faces, num_vertices)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    single = counts[inverse] == 1
    half = np.stack([faces.reshape(-1), faces[:, [1, 2, 0]].reshape(-1)], 1)
    return half[single]


def boundary_loops(faces: np.ndarray, num_vertices: int) -> list[np.ndarray]:
    """Closed loops of boundary edges, each ``[L,2]`` directed edges (face direction kept).

    Loops are traced through vertices regardless of edge direction (the dual-grid winding may be
    inconsistent); at a vertex with several boundary edges the walk takes any unused one."""
    edges = boundary_edges(faces, num_vertices)
    incident: dict[int, list[int]] = defaultdict(list)
    for i, (a, b) in enumerate(edges.tolist()):
        incident[a].append(i)
        incident[b].append(i)
    used = np.zeros(len(edges), dtype=bool)
    loops = []
    for start in range(len(edges)):
        if used[start]:
            continue
        used[start] = True
        loop = [start]
        origin, current = int(edges[start, 0]), int(edges[start, 1])
        while current != origin:
            nxt = next((e for e in incident[current] if not used[e]), None)
            if nxt is None:
                break
            used[nxt] = True
            loop.append(nxt)
            a, b = edges[nxt]
            current = int(b if a == current else a)
        if current == origin:
            loops.append(edges[loop])
    return loops


def fill_holes(vertices: np.ndarray, faces: np.ndarray,
               max_perimeter: float = MAX_HOLE_PERIMETER) -> tuple[np.ndarray, np.ndarray]:
    """Close boundary loops with perimeter ``< max_perimeter`` by a fan to the mean of their edge midpoints.

    Each boundary edge ``a→b`` gets the new face ``(b, a, c)``, wound consistently with the face that
    owns the edge. Returns the grown ``vertices [V+H,3]`` and ``faces [F+ΣL,3]``."""
    vertices = np.asarray(vertices)
    faces = np.asarray(faces, dtype=np.int64)
    new_vertices, new_faces = [], []
    for loop in boundary_loops(faces, len(vertices)):
        p = vertices[loop].astype(np.float64)  # [L,2,3]
        if np.linalg.norm(p[:, 1] - p[:, 0], axis=1).sum() >= max_perimeter:
            continue
        centre = len(vertices) + len(new_vertices)
        new_vertices.append(p.mean(axis=(0, 1)))
        new_faces.append(np.stack([loop[:, 1], loop[:, 0], np.full(len(loop), centre)], 1))
    if not new_vertices:
        return vertices, faces
    return (np.concatenate([vertices, np.asarray(new_vertices, dtype=vertices.dtype)]),
            np.concatenate([faces, *new_faces]))


def orient_outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces ``[F,3]`` re-wound consistently per edge-connected component, with positive signed volume.

    Adjacency uses manifold edges (exactly two faces). Two faces agree when they traverse their shared
    edge in opposite directions; the flip parity of every face is read off the connected components of
    the double cover (face, parity), so no sequential walk is needed. A non-orientable component keeps
    its input winding up to the volume sign. The signed volume is taken about each component's centroid.
    """
    faces = np.asarray(faces, dtype=np.int64).copy()
    n = len(faces)
    if n == 0:
        return faces
    keys, forward = _edge_keys(faces, len(vertices))
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    uniq, start, counts = np.unique(sk, return_index=True, return_counts=True)
    pair = start[counts == 2]
    h1, h2 = order[pair], order[pair + 1]
    f1, f2 = h1 // 3, h2 // 3
    flip_rel = (forward[h1] == forward[h2]).astype(np.int64)  # same direction → one must flip
    ok = f1 != f2
    f1, f2, flip_rel = f1[ok], f2[ok], flip_rel[ok]
    # double cover: node f + n·s; edge (f1, s) — (f2, s ^ rel)
    rows = np.concatenate([f1, f1 + n])
    cols = np.concatenate([f2 + n * flip_rel, f2 + n * (1 - flip_rel)])
    cover = scipy.sparse.coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(2 * n, 2 * n))
    _, lab = connected_components(cover, directed=False)
    parity = lab[:n] > lab[n:]
    faces[parity] = faces[parity][:, [0, 2, 1]]
    adjacency = scipy.sparse.coo_matrix((np.ones(len(f1), dtype=np.int8), (f1, f2)), shape=(n, n))
    _, comp = connected_components(adjacency, directed=False)
    p = np.asarray(vertices, dtype=np.float64)[faces]
    area = np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    weight = np.bincount(comp, area) + 1e-300
    centre = np.stack([np.bincount(comp, area * p[:, :, k].mean(1)) for k in range(3)], 1) / weight[:, None]
    q = p - centre[comp][:, None, :]
    volume = np.bincount(comp, np.einsum("fi,fi->f", q[:, 0], np.cross(q[:, 1], q[:, 2])))
    flip = volume[comp] < 0
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return faces


def clean_mesh(vertices: np.ndarray, faces: np.ndarray, max_hole_perimeter: float = MAX_HOLE_PERIMETER,
               min_component_area: float = MIN_COMPONENT_AREA) -> tuple[np.ndarray, np.ndarray]:
    """Degenerate/duplicate faces and tiny components removed, small holes filled, faces oriented
    outward, unreferenced vertices dropped → ``(vertices, faces)``."""
    faces = remove_degenerate_faces(vertices, faces)
    faces = remove_duplicate_faces(faces)
    faces = remove_small_components(vertices, faces, min_area=min_component_area)
    vertices, faces = fill_holes(vertices, faces, max_hole_perimeter)
    faces = orient_outward(vertices, faces)
    vertices, faces, _ = remove_unreferenced_vertices(vertices, faces)
    return vertices, faces
