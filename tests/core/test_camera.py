"""Cameras: official distance/focal arithmetic, front matrix, pinhole conversion, canonical multi-view frame."""

from __future__ import annotations

import math

import pytest
import torch

from pixal3d.conditioning.backprojection import grid_points, project_points
from pixal3d.core.camera import (
    DEFAULT_DISTANCE,
    DEFAULT_FOV_X,
    Camera,
    PinholeCamera,
    canonicalize_views,
    distance_from_fov,
    focal_pixels,
    front_view_matrix,
    voxel_to_world_matrix,
)
from pixal3d.errors import UserError


def test_distance_and_focal_match_official_table(reference):
    table = reference("projgrid").meta["camera_distance_table"]
    assert len(table) == 5
    for fov, row in table.items():
        # bit-exact: the official computes tan in float32
        assert distance_from_fov(float(fov)) == row["distance_from_fov"]
        assert focal_pixels(float(fov), 512) == row["f_pixels_512"]
        assert distance_from_fov(float(fov)) == pytest.approx(row["closed_form_1_over_2tan"], rel=1e-6)
    assert distance_from_fov(0.2) == 4.9833221435546875
    assert Camera.from_fov(0.2) == Camera(0.2, 4.9833221435546875, 1.0)


def test_defaults_and_front_matrix(reference):
    cam = Camera()
    assert (cam.fov_x, cam.distance, cam.mesh_scale) == (DEFAULT_FOV_X, DEFAULT_DISTANCE, 1.0)
    assert DEFAULT_FOV_X == pytest.approx(2 * math.atan(16 / 35), rel=1e-7)  # its float32 value
    assert torch.equal(cam.cam_to_world(), reference("projgrid")["front_view_transform_matrix"])
    # camera centre at (0, -d, 0), looking along +Y (Blender cameras look down their -Z)
    c2w = front_view_matrix(3.5)
    assert torch.equal(c2w[:3, 3], torch.tensor([0.0, -3.5, 0.0]))
    assert torch.equal(-c2w[:3, 2], torch.tensor([0.0, 1.0, 0.0]))


@pytest.mark.parametrize("fov,scale", [(0.2, 1.0), (0.5, 0.8), (DEFAULT_FOV_X, 1.0), (1.0, 1.3)])
def test_distance_from_fov_puts_cube_half_width_on_image_edge(fov, scale):
    cam = Camera.from_fov(fov, scale)
    S = 512
    pts = torch.tensor([[-0.5 / scale, 0.0, 0.0], [0.5 / scale, 0.0, 0.0], [0.0, 0.0, 0.5 / scale]])
    uv, depth, _ = project_points(pts, cam, S)
    assert uv[0, 0].item() == pytest.approx(0.0, abs=2e-3)  # left image edge
    assert uv[1, 0].item() == pytest.approx(S, abs=2e-3)  # right image edge
    assert uv[2, 1].item() == pytest.approx(0.0, abs=2e-3)  # top edge (square image, square pixels)
    assert depth[0].item() == pytest.approx(cam.distance, rel=1e-6)


def test_pinhole_from_camera_and_rescale():
    cam = Camera.from_fov(0.5)
    pin = cam.to_pinhole(512)
    f = focal_pixels(0.5, 512)
    assert torch.equal(pin.intrinsics, torch.tensor([[f, 0, 256.0], [0, f, 256.0], [0, 0, 1]], dtype=torch.float32))
    assert (pin.width, pin.height) == (512, 512)
    big = pin.rescaled(1024, 1024)
    assert big.intrinsics[0, 0].item() == pytest.approx(cam.focal_pixels(1024), rel=1e-7)
    assert torch.equal(big.intrinsics[:2, 2], torch.tensor([512.0, 512.0]))
    same = PinholeCamera.from_fov(0.5, cam.cam_to_world(), 512, 512)
    assert torch.equal(same.intrinsics, pin.intrinsics)


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
    views = [PinholeCamera.from_fov(0.6, _look_at(e, torch.zeros(3)), 256, 256) for e in (eye0, eye1)]
    canon = canonicalize_views(views)
    assert torch.allclose(canon[0].cam_to_world, front_view_matrix(2.5), atol=1e-6)
    rel_world = torch.linalg.inv(views[0].cam_to_world.double()) @ views[1].cam_to_world.double()
    rel_canon = torch.linalg.inv(canon[0].cam_to_world.double()) @ canon[1].cam_to_world.double()
    assert torch.allclose(rel_world, rel_canon, atol=1e-5)
    assert torch.equal(canon[1].intrinsics, views[1].intrinsics)


def test_bad_camera_values_raise_user_error():
    with pytest.raises(UserError):
        Camera(0.0, 2.0)
    with pytest.raises(UserError):
        Camera(0.5, -1.0)
    with pytest.raises(UserError):
        Camera.from_fov(0.5, mesh_scale=0.0)
    with pytest.raises(UserError):
        PinholeCamera(torch.tensor([[100.0, 1.0, 50], [0, 100, 50], [0, 0, 1]]), torch.eye(4), 100, 100)
    with pytest.raises(UserError):
        PinholeCamera(torch.eye(3), torch.eye(3), 100, 100)
    with pytest.raises(UserError):
        canonicalize_views([])
    with pytest.raises(UserError):
        voxel_to_world_matrix(1)
