"""Triangle meshes: loading (:mod:`~pixal3d.mesh.io`), mesh → O-Voxel (:mod:`~pixal3d.mesh.voxelize`),
cleanup (:mod:`~pixal3d.mesh.cleanup`), narrow-band remeshing (:mod:`~pixal3d.mesh.remesh`),
simplification and UV unwrapping.

All functions work on plain arrays: ``vertices [V,3]`` float, ``faces [F,3]`` int, in the voxel frame
(x right, y up, z toward the input camera; object inside the unit cube ``[-0.5, 0.5]³``).
"""
