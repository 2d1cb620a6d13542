"""Generation held to the input silhouette (tiny random-weight models): the structure completed to cover the mask,
every subdivision of the shape decoder held to it, and the rim snapped onto it; off unless asked for or set by the model folder;
a mask is required."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from pixal3d.core.camera import Camera
from pixal3d.core.pipeline_config import PipelineConfig
from pixal3d.core.silhouette import SilhouetteView, outside_silhouettes, voxel_frame_to_world
from pixal3d.errors import UserError
from pixal3d.export.glb import asset_surface
from pixal3d.pipelines.pixal3d import GenerationOptions, Pixal3DPipeline, decoded_asset


@pytest.fixture(scope="module")
def tiny(reference, tiny_model):
    e2e = reference("pipeline_e2e_tiny")
    cam = e2e.meta["camera_params"]
    camera = Camera.front(cam["camera_angle_x"], cam["distance"], cam["mesh_scale"])
    rgb = e2e["image_uint8_HWC"].numpy()
    # a cut-out whose alpha covers the object's pixels, and half of them: a silhouette the random model overflows
    alpha = np.where(rgb.max(-1) > 0, 255, 0).astype(np.uint8)
    alpha[:, : rgb.shape[1] // 2] = 0
    return Pixal3DPipeline.from_pretrained(tiny_model, device="cpu"), camera, rgb, alpha


def options(camera: Camera, silhouette: bool | None) -> GenerationOptions:
    return GenerationOptions(seed=3, camera=camera, preprocess=False, pipeline_type="1024_cascade",
                             silhouette=silhouette)


def test_the_generation_is_completed_carved_and_snapped_to_the_mask(tiny):
    pipeline, camera, rgb, alpha = tiny
    rgba = Image.fromarray(np.dstack([rgb * (alpha[..., None] > 0), alpha]), "RGBA")
    free = pipeline.generate(rgba, options(camera, False), progress=False)
    held = pipeline.generate(rgba, options(camera, True), progress=False)
    view = SilhouetteView(alpha >= 128, camera)
    # the structure only gains cells (those the mask's rays missed)
    before = {tuple(c) for c in free.stages.structure.occupied.tolist()}
    after = {tuple(c) for c in held.stages.structure.occupied.tolist()}
    assert before <= after
    # the random model spills past the half mask; held, the shape decoder kept no child outside it at any level,
    # so the decoded voxels are all inside and the final carving has nothing left to remove
    spilled = decoded_asset(free.stages, camera)
    assert outside_silhouettes(spilled.coords, spilled.resolution, [view], camera.mesh_scale).any()
    raw = decoded_asset(held.stages, camera)
    assert len(raw.coords) and not outside_silhouettes(raw.coords, raw.resolution, [view], camera.mesh_scale).any()
    assert np.array_equal(held.asset.coords, raw.coords) and np.array_equal(held.asset.attrs, raw.attrs)
    assert held.info["silhouette"].startswith("0 voxels carved")
    # the texture decoder followed the held subdivisions: one PBR row per shape voxel
    assert held.stages.decoded.pbr.feats.shape[0] == len(raw.coords)
    vertices, faces = asset_surface(held.asset)
    used = np.unique(faces)
    xy, depth, _ = view.project(voxel_frame_to_world(vertices[used], camera.mesh_scale))
    assert (depth > 0).all() and (view.distance(xy) <= 0.5 + 1e-3).all()
    assert "silhouette" not in free.info and "silhouette" in held.timings


def test_it_follows_the_folder_setting_and_needs_a_mask(tiny, tiny_model, tmp_path):
    pipeline, camera, rgb, alpha = tiny
    assert not pipeline.silhouette_enabled(options(camera, None))  # the official layout does not carve
    with pytest.raises(UserError, match="needs the object's mask"):
        pipeline.generate(Image.fromarray(rgb), options(camera, True), progress=False)
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    config = PipelineConfig.read(folder / "pipeline.json")
    config.with_settings({"silhouette_constraint": True}).write(folder / "pipeline.json")
    own = Pixal3DPipeline.from_pretrained(folder, device="cpu")
    assert own.silhouette_enabled(options(camera, None)) and not own.silhouette_enabled(options(camera, False))
    opaque = own.generate(Image.fromarray(rgb), options(camera, None), progress=False)
    assert opaque.info["silhouette"].startswith("off (no mask")
    (folder / "pipeline.json").write_text('{"args": {"silhouette_constraint": "yes"}}')
    with pytest.raises(UserError, match="silhouette_constraint must be true or false"):
        PipelineConfig.read(folder / "pipeline.json")
