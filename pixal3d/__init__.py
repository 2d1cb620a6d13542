"""pixal3d: pixel-aligned image-to-3D generation (Pixal3D on TRELLIS.2) in pure PyTorch.

The package folders follow the data flow of one image to one GLB:

``image`` (load, background removal, crop) → ``conditioning`` (image features, pixel back-projection) →
``models`` (sparse tensors, transformers, VAEs, checkpoint loading) → ``sampling`` (flow-matching Euler with
guidance) → ``ovoxel`` (latents → dual-grid mesh and PBR voxels) → ``mesh`` (cleanup, remesh, simplify, UV,
voxelise) → ``export`` (texture baking, GLB). ``core`` holds what they share (cameras, the voxel asset, the CPU
renderer, the cascade config); ``pipelines`` joins them; ``data`` and ``training`` build datasets and train.
The packages are layered (docs/architecture.md, "Package layout"; checked by tests/test_layers.py).
"""

__version__ = "0.1.0"

__all__ = ["Pixal3DPipeline", "GenerationOptions", "__version__"]


def __getattr__(name: str):
    """``from pixal3d import Pixal3DPipeline`` without importing torch at ``import pixal3d`` time."""
    if name in ("Pixal3DPipeline", "GenerationOptions"):
        from pixal3d.pipelines import pixal3d as pipeline_module

        return getattr(pipeline_module, name)
    raise AttributeError(f"module 'pixal3d' has no attribute {name!r}")
