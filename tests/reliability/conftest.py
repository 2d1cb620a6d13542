"""Shared, read-only inputs of the reliability tests: one tiny model folder, a good image, asset, GLB,
mesh and a tiny built dataset per session (cases that need a broken variant copy one into their folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def shared_inputs(tmp_path_factory, reference) -> dict[str, Path]:
    """``{'root', 'model', 'image', 'asset', 'glb', 'mesh'}``: good inputs every case may read, never write."""
    from PIL import Image

    from pixal3d.export.glb import ExportOptions, asset_to_glb
    from tests.export.conftest import sphere_asset
    from tests.pipelines.tiny_folder import write_tiny_pipeline

    root = tmp_path_factory.mktemp("shared")
    model = write_tiny_pipeline(root / "models" / "Pixal3D", reference("pipeline_e2e_tiny"), reference("dinov3_tiny"),
                                reference("naf_tiny"))
    rgb = reference("pipeline_e2e_tiny")["image_uint8_HWC"].numpy()
    alpha = np.where(rgb.max(axis=2) > 0, 255, 0).astype(np.uint8)
    image = root / "object.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(image)
    asset = root / "sphere.npz"
    sphere_asset("opaque", 16).save(asset)
    glb = root / "sphere.glb"
    asset_to_glb(sphere_asset("opaque", 16), glb, ExportOptions(texture_size=64, decimation_target=500), progress=False)
    mesh = root / "box.obj"
    import trimesh

    trimesh.creation.box(extents=(0.6, 0.4, 0.3)).export(mesh)
    return {"root": root, "model": model, "image": image, "asset": asset, "glb": glb, "mesh": mesh}
