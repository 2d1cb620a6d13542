"""The O-Voxel representation (TRELLIS.2's sparse voxels with dual-grid shape and PBR attributes): surfaces and
attribute lookups.

* :mod:`pixal3d.ovoxel.dual_grid` — flexible dual grid (O-Voxel shape) → triangle mesh and the
  shape decoder's output heads.
* :mod:`pixal3d.ovoxel.voxel_lookup` — sparse trilinear / nearest lookup of per-voxel attributes
  (the FlexGEMM ``grid_sample_3d`` the official texture baking uses).
"""
