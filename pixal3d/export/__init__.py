"""From decoded voxels and meshes to files: the asset file, texture baking, GLB, preview renders."""
