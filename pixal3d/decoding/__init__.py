"""From decoder outputs to surfaces and attribute lookups.

* :mod:`pixal3d.decoding.dual_grid` — flexible dual grid (O-Voxel shape) → triangle mesh (§6.2) and
  the shape decoder's output heads.
* :mod:`pixal3d.decoding.voxel_lookup` — sparse trilinear / nearest lookup of per-voxel attributes
  (the FlexGEMM ``grid_sample_3d`` used for texture baking, §7.4).
"""
