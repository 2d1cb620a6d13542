"""Cameras: official distance/focal arithmetic, front matrix, intrinsics per image size, canonical multi-view frame,
the renderer's float64 projection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pixal3d.conditioning.backprojection import grid_points, project_points
from pixal3d.core.camera import (
    DEFAULT_FOV_X,
    Camera,
    canonicalize_views,
    distance_from_fov,
    focal_pixels,
    front_view_matrix,
    look_at,
    tan_float32,
    vertical_fov,
    voxel_to_world_matrix,
)
from pixal3d.errors import UserError


def test_distance_and_focal_match_official_table(reference):
    table = reference("projgrid").meta["camera_distance_table"]
    assert len(table) == 5
    exact = 0
    for fov, row in table.items():
        # float32 arithmetic as the official; its float32 tan is 1 ulp off the correctly rounded one for 0.6911
        # (tan_float32 rounds once, the same on every CPU), so allow one float32 ulp and count exact matches
        for ours, theirs in ((distance_from_fov(float(fov)), row["distance_from_fov"]),
                             (focal_pixels(float(fov), 512), row["f_pixels_512"])):
            assert abs(ours - theirs) <= np.spacing(np.float32(theirs)), (fov, ours, theirs)
            exact += ours == theirs
        assert distance_from_fov(float(fov)) == pytest.approx(row["closed_form_1_over_2tan"], rel=1e-6)
    assert exact == 8  # 4 of the 5 rows bit for bit
    assert distance_from_fov(0.2) == 4.9833221435546875
    assert Camera.front(0.2) == Camera.front(0.2, 4.9833221435546875, 1.0)


def test_tan_float32_is_correctly_rounded():
    x = torch.tensor([0.1, 0.3455556035041809, 0.4287780225276947, 1.2], dtype=torch.float32)
    exact = [math.tan(v) for v in x.double().tolist()]
    assert tan_float32(x).tolist() == [float(np.float32(v)) for v in exact]


def test_defaults_and_front_matrix(reference):
    cam = Camera.front(distance=2.0)
    assert (cam.fov_x, cam.distance, cam.mesh_scale) == (DEFAULT_FOV_X, 2.0, 1.0)
    assert cam.is_front and cam.front_fields() == {"fov_x": DEFAULT_FOV_X, "distance": 2.0, "mesh_scale": 1.0}
    assert Camera.front(**cam.front_fields()) == cam
    assert Camera.front().distance == distance_from_fov(DEFAULT_FOV_X)
    assert DEFAULT_FOV_X == pytest.approx(2 * math.atan(16 / 35), rel=1e-7)  # its float32 value
    official = reference("projgrid")["front_view_transform_matrix"]
    assert torch.equal(torch.tensor(cam.cam_to_world).float(), official)
    assert torch.equal(torch.from_numpy(look_at((0, -2.0, 0), up=(0, 0, 1))).float(), official)
    # camera centre at (0, -d, 0), looking along +Y (Blender cameras look down their -Z)
    c2w = front_view_matrix(3.5)
    assert torch.equal(c2w[:3, 3], torch.tensor([0.0, -3.5, 0.0]))
    assert torch.equal(-c2w[:3, 2], torch.tensor([0.0, 1.0, 0.0]))


@pytest.mark.parametrize("fov,scale", [(0.2, 1.0), (0.5, 0.8), (DEFAULT_FOV_X, 1.0), (1.0, 1.3)])
def test_distance_from_fov_puts_cube_half_width_on_image_edge(fov, scale):
    cam = Camera.front(fov, mesh_scale=scale)
    S = 512
    pts = torch.tensor([[-0.5 / scale, 0.0, 0.0], [0.5 / scale, 0.0, 0.0], [0.0, 0.0, 0.5 / scale]])
    uv, depth, _ = project_points(pts, cam, S)
    assert uv[0, 0].item() == pytest.approx(0.0, abs=2e-3)  # left image edge
    assert uv[1, 0].item() == pytest.approx(S, abs=2e-3)  # right image edge
    assert uv[2, 1].item() == pytest.approx(0.0, abs=2e-3)  # top edge (square image, square pixels)
    assert depth[0].item() == pytest.approx(cam.distance, rel=1e-6)


def test_intrinsics_per_image_size():
    cam = Camera.front(0.5)
    f = focal_pixels(0.5, 512)
    assert torch.equal(cam.intrinsics(512), torch.tensor([[f, 0, 256.0], [0, f, 256.0], [0, 0, 1]], dtype=torch.float32))
    big = cam.intrinsics(1024)
    assert big[0, 0].item() == pytest.approx(cam.focal_pixels(1024), rel=1e-7)
    assert torch.equal(big[:2, 2], torch.tensor([512.0, 512.0]))
    # a non-square photo with square pixels keeps its lens when resized to a square feature map
    wide = Camera(cam.cam_to_world, 0.5, vertical_fov(0.5, 640, 480))
    k640, k256 = wide.intrinsics(640, 480).double(), wide.intrinsics(256).double()
    assert k640[0, 0].item() == pytest.approx(k640[1, 1].item(), rel=1e-6)  # square pixels
    assert k256[0, 0].item() == pytest.approx(k640[0, 0].item() * 256 / 640, rel=1e-6)
    assert k256[1, 1].item() == pytest.approx(k640[1, 1].item() * 256 / 480, rel=1e-6)
    # a pixel intrinsics matrix round-trips through the size-free lens
    K = torch.tensor([[300.0, 0, 170], [0, 280, 140], [0, 0, 1]])
    back = Camera.from_intrinsics(K, np.eye(4), 320, 300).intrinsics(320, 300)
    assert torch.allclose(back, K, rtol=1e-5)


def test_float64_projection_and_rays_agree_with_the_official_float32_one():
    cam = Camera(look_at((0.4, 0.3, 2.0)), 0.7)
    pts = np.array([[0.1, -0.2, 0.3], [-0.25, 0.2, -0.1], [0.0, 0.0, 0.0]])
    xy, depth = cam.project(pts, 256)
    K, w2c = cam.intrinsics(256).double(), torch.linalg.inv(torch.tensor(cam.cam_to_world))
    pc = torch.from_numpy(pts) @ w2c[:3, :3].T + w2c[:3, 3]
    u = K[0, 0] * pc[:, 0] / -pc[:, 2] + K[0, 2]
    np.testing.assert_allclose(xy[:, 0], u.numpy(), rtol=1e-6)  # same pixel (renderer centres at +0.5)
    np.testing.assert_allclose(depth, -pc[:, 2].numpy(), rtol=1e-12)
    origin, dirs = cam.rays(xy, 256)
    np.testing.assert_allclose(origin + dirs * depth[:, None], pts, atol=1e-12)
    # a 320 × 200 image with its own vertical FOV: the official float32 intrinsics per axis, and rays back
    wide = Camera(look_at((0.4, 0.3, 2.0)), 0.7, 0.45)
    xy, depth = wide.project(pts, 320, 200)
    K = wide.intrinsics(320, 200).double()
    v = -K[1, 1] * pc[:, 1] / -pc[:, 2] + K[1, 2]
    np.testing.assert_allclose(xy[:, 1], v.numpy(), rtol=1e-6)
    origin, dirs = wide.rays(xy, 320, 200)
    np.testing.assert_allclose(origin + dirs * depth[:, None], pts, atol=1e-12)


def test_voxel_to_world_matrix_maps_indices_to_grid_points():
    for G, s in [(8, 1.0), (17, 0.7)]:
        idx = torch.cartesian_prod(*[torch.arange(G, dtype=torch.float64)] * 3)
        homo = torch.cat([idx, torch.ones(len(idx), 1, dtype=torch.float64)], 1)
        world = (homo @ voxel_to_world_matrix(G, s).T)[:, :3]
        assert torch.allclose(world, grid_points(G, s).double(), atol=1e-6)


def _look_at(eye: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Blender c2w at ``eye`` looking at ``target`` with world +Z as up."""
    back = (eye - target) / torch.linalg.norm(eye - target)
    right = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype), back)
    right = right / torch.linalg.norm(right)
    up = torch.linalg.cross(back, right)
    c2w = torch.eye(4, dtype=eye.dtype)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, eye
    return c2w


def test_canonicalize_views_front_and_relative_poses():
    torch.manual_seed(0)
    # a capture whose world frame is rotated about Z: view 0 at azimuth 40°, distance 2.5
    a = math.radians(40)
    eye0 = torch.tensor([2.5 * math.sin(a), -2.5 * math.cos(a), 0.0])
    eye1 = torch.tensor([1.0, 2.0, 1.2])
    views = [Camera(_look_at(e, torch.zeros(3)).numpy(), 0.6) for e in (eye0, eye1)]
    canon = canonicalize_views(views)
    np.testing.assert_allclose(canon[0].cam_to_world, front_view_matrix(2.5).numpy(), atol=1e-6)
    rel_world = np.linalg.inv(views[0].cam_to_world) @ views[1].cam_to_world
    rel_canon = np.linalg.inv(canon[0].cam_to_world) @ canon[1].cam_to_world
    np.testing.assert_allclose(rel_world, rel_canon, atol=1e-5)
    assert torch.equal(canon[1].intrinsics(256), views[1].intrinsics(256))


def test_bad_camera_values_raise_user_error():
    with pytest.raises(UserError):
        Camera.front(0.0, 2.0)
    with pytest.raises(UserError):
        Camera.front(0.5, -1.0)
    with pytest.raises(UserError):
        Camera.front(0.5, mesh_scale=0.0)
    with pytest.raises(UserError):
        Camera.from_intrinsics(torch.tensor([[100.0, 1.0, 50], [0, 100, 50], [0, 0, 1]]), torch.eye(4), 100, 100)
    with pytest.raises(UserError):
        Camera(np.eye(3))
    with pytest.raises(UserError):
        Camera.orthographic(np.eye(4), 0.0)
    with pytest.raises(ValueError):
        Camera(look_at((1.0, 0.0, 2.0)), 0.5).front_fields()
    with pytest.raises(UserError):
        canonicalize_views([])
    with pytest.raises(UserError):
        voxel_to_world_matrix(1)
