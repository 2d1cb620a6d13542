"""UV unwrapping with xatlas, pre-segmented so that large meshes unwrap in seconds.

xatlas grows charts over the whole mesh, which takes minutes for 200k faces. Here the faces are
first split into spatially coherent chunks (k-means on face centroids, ~``chunk_faces`` faces each);
every chunk is added to one :class:`xatlas.Atlas` as its own mesh, so xatlas segments and
parametrises the chunks independently (in parallel on its worker threads) with a bounded chart area
a single growing pass, and then packs all charts of all chunks into one atlas. Chunk borders
become seams like any other chart border; the baker fills seams by inpainting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xatlas
from scipy.cluster.vq import kmeans2

from pixal3d.mesh.cleanup import remove_degenerate_faces, remove_unreferenced_vertices


@dataclass
class UVLayout:
    """A mesh split at UV seams.

    Attributes:
        vertices: ``[V', 3]`` float32 positions (same frame as the input).
        faces: ``[F, 3]`` int32 indices into ``vertices``.
        uvs: ``[V', 2]`` float32 in ``[0, 1]``; ``v`` grows downward (texel row ``r`` of a texture of
            size ``S`` has its centre at ``v = (r + 0.5)/S``), i.e. the glTF ``TEXCOORD_0`` convention.
        vmap: ``[V']`` int64 index of the input vertex each split vertex came from.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    vmap: np.ndarray


def unwrap(
    vertices: np.ndarray,
    faces: np.ndarray,
    texture_size: int = 2048,
    padding: int = 2,
    chunk_faces: int = 6000,
    faces_per_chart: float = 60.0,
    seed: int = 0,
) -> UVLayout:
    """Unwrap a triangle mesh into one UV atlas.

    Args:
        vertices: ``[V, 3]`` float positions.
        faces: ``[F, 3]`` integer indices (degenerate faces are removed first; the returned
            ``vmap`` indexes the vertices given here).
        texture_size: texture edge the atlas is packed for (sets texel density and padding).
        padding: empty texels between charts at ``texture_size``.
        chunk_faces: approximate faces per pre-segmentation chunk.
        faces_per_chart: a chart's area is capped at this many average faces' area, which bounds
            xatlas' chart growing time.
        seed: k-means seed (the result is deterministic for a given seed).
    Returns:
        :class:`UVLayout`.
    """
    vertices = np.asarray(vertices, dtype=np.float32)
    faces_in = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    # degenerate faces are dropped, but vmap must index the caller's vertices: keep the map
    kept = remove_degenerate_faces(vertices, faces_in)
    if len(kept) == 0:
        raise ValueError("mesh has no non-degenerate faces to unwrap")
    v_clean, f_clean, used = remove_unreferenced_vertices(vertices, kept)

    centroids = v_clean[f_clean].mean(1).astype(np.float64)
    n_chunks = max(1, int(round(len(f_clean) / chunk_faces)))
    if n_chunks > 1:
        _, labels = kmeans2(centroids, n_chunks, iter=5, minit="++", seed=seed)
    else:
        labels = np.zeros(len(f_clean), dtype=np.int64)

    tri = v_clean[f_clean].astype(np.float64)
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    atlas = xatlas.Atlas()
    chunks = []
    for k in np.unique(labels):
        face_ids = np.nonzero(labels == k)[0]
        chunk_vertices, local = np.unique(f_clean[face_ids], return_inverse=True)
        atlas.add_mesh(v_clean[chunk_vertices], local.reshape(-1, 3).astype(np.uint32))
        chunks.append((face_ids, chunk_vertices))
    total_area = float(areas.sum())
    chart = xatlas.ChartOptions()
    chart.max_iterations = 0
    chart.max_chart_area = total_area * faces_per_chart / len(f_clean)
    pack = xatlas.PackOptions()
    pack.padding = int(padding)
    pack.bilinear = True
    pack.blockAlign = True
    pack.rotate_charts = True
    # texel density for a ~75 % filled square atlas of texture_size²; one atlas, its size follows
    pack.resolution = 0
    pack.texels_per_unit = float(texture_size * np.sqrt(0.75 / max(total_area, 1e-12)))
    atlas.generate(chart, pack)
    if atlas.atlas_count != 1:
        raise RuntimeError(f"xatlas produced {atlas.atlas_count} atlases, expected 1")

    out_faces, out_uvs, out_vmap = [], [], []
    face_order = []
    offset = 0
    for i, (face_ids, chunk_vertices) in enumerate(chunks):
        vmapping, indices, uvs = atlas[i]
        if len(indices) != len(face_ids):
            raise RuntimeError("xatlas changed the number of faces of a chunk")
        out_vmap.append(used[chunk_vertices[vmapping]])
        out_faces.append(indices.astype(np.int64) + offset)
        out_uvs.append(uvs)
        face_order.append(face_ids)
        offset += len(vmapping)
    vmap = np.concatenate(out_vmap)
    faces_out = np.concatenate(out_faces)
    # restore the input face order
    order = np.argsort(np.concatenate(face_order), kind="stable")
    faces_out = faces_out[order]
    uvs = np.concatenate(out_uvs).astype(np.float32)
    # xatlas normalises by its (width × height) atlas: the square texture stretches it slightly
    uvs = np.clip(uvs, 0.0, 1.0)
    return UVLayout(vertices=vertices[vmap], faces=faces_out.astype(np.int32), uvs=uvs, vmap=vmap.astype(np.int64))

