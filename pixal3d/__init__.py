"""pixal3d: pixel-aligned image-to-3D generation (Pixal3D on TRELLIS.2) in pure PyTorch.

The package folders follow the data flow of one image to one GLB:

``image`` (load, background removal, crop) → ``conditioning`` (cameras, image features,
pixel back-projection) → ``models`` (sparse tensors, transformers, VAEs, checkpoint loading) →
``sampling`` (flow-matching Euler with guidance) → ``decoding`` (latents → dual-grid mesh and
PBR voxels) → ``mesh`` (cleanup, remesh, simplify, UV, voxelise) → ``export`` (texture baking,
GLB, previews). ``pipelines`` joins them; ``data`` and ``training`` build datasets and train.
"""

__version__ = "0.1.0"
