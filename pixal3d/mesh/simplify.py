"""Face-budget simplification (quadric edge collapse via ``fast_simplification``).

The default budget, :data:`DEFAULT_FACE_BUDGET` = 200,000 triangles, suits real-time engines and
web viewers (the official exporter keeps 1,000,000 for offline use; pass ``--decimation_target``
to change it). Coordinates are untouched: any frame works.
"""

from __future__ import annotations

import fast_simplification
import numpy as np

from pixal3d.mesh.cleanup import remove_degenerate_faces, remove_unreferenced_vertices

#: default number of triangles kept by ``pixal3d export``
DEFAULT_FACE_BUDGET = 200_000


def simplify_mesh(vertices: np.ndarray, faces: np.ndarray, target_faces: int = DEFAULT_FACE_BUDGET) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a triangle mesh to at most about ``target_faces`` triangles.

    Meshes already within budget are only cleaned of degenerate faces. Quadric error metrics keep
    the silhouette and sharp features; the result may have a few faces fewer than the target.

    Args:
        vertices: ``[V, 3]`` float positions.
        faces: ``[F, 3]`` integer vertex indices.
        target_faces: face budget (≥ 4).
    Returns:
        ``(vertices [V', 3] float32, faces [F', 3] int32)``, no degenerate faces or unused vertices.
    """
    if target_faces < 4:
        raise ValueError(f"target_faces must be at least 4, got {target_faces}")
    vertices = np.asarray(vertices, dtype=np.float32)
    faces = remove_degenerate_faces(vertices, np.asarray(faces, dtype=np.int64).reshape(-1, 3))
    if len(faces) > target_faces:
        vertices, faces = fast_simplification.simplify(vertices, faces, target_count=int(target_faces))
        faces = remove_degenerate_faces(vertices, faces)
    vertices, faces, _ = remove_unreferenced_vertices(vertices, faces)
    return np.asarray(vertices, dtype=np.float32), faces.astype(np.int32)
