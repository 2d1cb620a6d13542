"""Multi-view generation: one view through the multi-view path is the single-view run bit for bit; several views
average their back-projections; cameras from transforms.json or the turntable shorthand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pixal3d.core.camera import (
    Camera,
    canonicalize_views,
    front_view_matrix,
    orbit_cameras,
    read_transforms,
)
from pixal3d.errors import UserError
from pixal3d.pipelines.pixal3d import GenerationOptions, Pixal3DPipeline


@pytest.fixture(scope="module")
def tiny(reference, tiny_model):
    e2e = reference("pipeline_e2e_tiny")
    pipeline = Pixal3DPipeline.from_pretrained(tiny_model, device="cpu")
    cam = e2e.meta["camera_params"]
    camera = Camera.front(cam["camera_angle_x"], cam["distance"], cam["mesh_scale"])
    rgb = e2e["image_uint8_HWC"].numpy()
    return pipeline, camera, rgb


def _same(a, b) -> bool:
    a, b = (x.feats if hasattr(x, "feats") else x for x in (a, b))
    return torch.equal(a, b)


def test_orbit_azimuth_zero_is_the_front_camera():
    cam = orbit_cameras([0.0, 90.0], 0.0, 0.6, 3.0, 64, 64)
    np.testing.assert_allclose(cam[0].cam_to_world, front_view_matrix(3.0).numpy(), atol=1e-7)
    # 90°: the camera on +x looking along −x; image right is +y (world)
    np.testing.assert_allclose(cam[1].position, [3.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(cam[1].cam_to_world[:3, 0], [0.0, 1.0, 0.0], atol=1e-6)
    canon = canonicalize_views(cam)
    assert torch.equal(torch.tensor(canon[0].cam_to_world).float(), front_view_matrix(3.0))


def test_one_view_through_the_multiview_path_is_the_single_view_run(tiny):
    pipeline, camera, rgb = tiny
    # a cut-out whose RGB is already composited on black: the multi-view preprocessing leaves it unchanged
    alpha = np.where(rgb.max(-1) > 0, 255, 0).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    single = pipeline.run(Image.fromarray(rgb), camera, seed=3, pipeline_type="1024_cascade", progress=False)
    opts = GenerationOptions(seed=3, pipeline_type="1024_cascade", cameras=[camera])
    multi = pipeline.generate([rgba], opts, progress=False)
    out = multi.stages
    for stage in ("structure", "shape_lr", "shape_hr", "texture"):
        assert _same(getattr(out, stage).samples, getattr(single, stage).samples), stage
    assert multi.info["views"] == 1 and abs(multi.camera.fov_x - camera.fov_x) < 1e-6


def test_several_views_average_their_conditions(tiny):
    pipeline, camera, rgb = tiny
    image = Image.fromarray(rgb)
    flipped = Image.fromarray(rgb[:, ::-1].copy())
    cams = [c for c in orbit_cameras([0.0, 180.0], 0.0, camera.fov_x, camera.distance, rgb.shape[1], rgb.shape[0])]
    cams = canonicalize_views(cams)
    ext = pipeline.conditioner
    both = ext.condition("ss", [image, flipped], cams)
    one = ext.condition("ss", image, cams[0])
    other = ext.condition("ss", flipped, cams[1])
    assert torch.allclose(both["proj"], (one["proj"] + other["proj"]) / 2, atol=1e-6)
    assert torch.allclose(both["global"], (one["global"] + other["global"]) / 2, atol=1e-6)
    coords = torch.tensor([[0, 3, 4, 5], [0, 10, 2, 7]], dtype=torch.int32)
    sparse = ext.condition("shape_512", [image, flipped], cams, coords=coords)
    a = ext.condition("shape_512", image, cams[0], coords=coords)["proj"].feats
    b = ext.condition("shape_512", flipped, cams[1], coords=coords)["proj"].feats
    assert torch.allclose(sparse["proj"].feats, (a + b) / 2, atol=1e-5)
    assert torch.equal(sparse["proj"].coords, coords)


def test_two_views_generate_in_the_first_views_frame(tiny):
    pipeline, camera, rgb = tiny
    cams = orbit_cameras([0.0, 90.0], 10.0, camera.fov_x, camera.distance, rgb.shape[1], rgb.shape[0])
    result = pipeline.generate([Image.fromarray(rgb), Image.fromarray(rgb[:, ::-1].copy())],
                               GenerationOptions(seed=1, pipeline_type="1024_cascade", cameras=cams), progress=False)
    assert result.info["views"] == 2 and len(result.asset.coords) > 0
    assert abs(result.asset.camera.distance - camera.distance) < 1e-4


def test_bad_multiview_input(tiny, tmp_path):
    pipeline, camera, rgb = tiny
    image = Image.fromarray(rgb)
    with pytest.raises(UserError, match="need their cameras"):
        pipeline.generate([image, image], GenerationOptions())
    cams = orbit_cameras([0.0], 0.0, 0.5, 2.0, 32, 32)
    with pytest.raises(UserError, match="2 images but 1 cameras"):
        pipeline.generate([image, image], GenerationOptions(cameras=cams))
    small = image.resize((32, 40))
    with pytest.raises(UserError, match="same size"):
        pipeline.generate([image, small], GenerationOptions(cameras=cams * 2))


def _transforms(tmp_path, frames, **top):
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps({**top, "frames": frames}))
    return path


def test_read_transforms(tmp_path):
    pose = front_view_matrix(2.5).tolist()
    cams = read_transforms(_transforms(tmp_path, [{"transform_matrix": pose}, {"transform_matrix": pose, "fov": 0.4}],
                                       camera_angle_x=0.6, mesh_scale=1.5), [(64, 64), (64, 64)])
    f0 = 32 / math.tan(0.3)
    assert abs(float(cams[0].intrinsics(64)[0, 0]) - f0) < 1e-3 and cams[0].mesh_scale == 1.5
    assert abs(float(cams[1].intrinsics(64)[0, 0]) - 32 / math.tan(0.2)) < 1e-3
    with pytest.raises(UserError, match="2 frames for 3 images"):
        read_transforms(_transforms(tmp_path, [{"transform_matrix": pose}] * 2, camera_angle_x=0.6), [(8, 8)] * 3)
    singular = [[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    with pytest.raises(UserError, match="not an invertible camera pose"):
        read_transforms(_transforms(tmp_path, [{"transform_matrix": singular}], camera_angle_x=0.6), [(8, 8)])
    with pytest.raises(UserError, match="no camera_angle_x"):
        read_transforms(_transforms(tmp_path, [{"transform_matrix": pose}]), [(8, 8)])
    with pytest.raises(UserError, match="4x4"):
        read_transforms(_transforms(tmp_path, [{"transform_matrix": [[1, 0], [0, 1]]}], camera_angle_x=0.6), [(8, 8)])
    with pytest.raises(UserError, match="not found"):
        read_transforms(tmp_path / "nope.json", [(8, 8)])
