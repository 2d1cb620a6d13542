"""Pixel back-projection against the official ProjGrid fixture and analytic identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixal3d.conditioning.backprojection import (
    backproject_dense,
    backproject_dense_multiview,
    backproject_sparse,
    backproject_sparse_multiview,
    bilinear_taps,
    grid_points,
    normalize_pixels,
    pool_cell_samples,
    project_points,
    sampling_grid,
    voxel_world_points,
)
from pixal3d.core.camera import Camera, canonicalize_views, front_view_matrix
from pixal3d.errors import UserError
from tests.core.test_camera import _look_at
from tests.helpers import assert_close


def _all_coords(G: int, batch: int = 0) -> torch.Tensor:
    idx = torch.cartesian_prod(*[torch.arange(G)] * 3)
    return torch.cat([torch.full((len(idx), 1), batch), idx], 1).int()


def _random_pinhole(gen: torch.Generator, size: int = 300) -> Camera:
    az, el = float(torch.rand(1, generator=gen)) * 2 * math.pi, float(torch.rand(1, generator=gen)) - 0.5
    r = 1.5 + 2 * float(torch.rand(1, generator=gen))
    eye = torch.tensor([r * math.cos(el) * math.sin(az), -r * math.cos(el) * math.cos(az), r * math.sin(el)])
    fx, fy = 200 + 400 * torch.rand(2, generator=gen).tolist()[0], 200 + 400 * torch.rand(1, generator=gen).item()
    K = torch.tensor([[fx, 0, size / 2 + 10], [0, fy, size / 2 - 7], [0, 0, 1]])
    return Camera.from_intrinsics(K, _look_at(eye, 0.1 * torch.randn(3, generator=gen)), size, size)


# ----------------------------------------------------------------------------------------------
# official fixture
# ----------------------------------------------------------------------------------------------
def test_grid_points_match_fixture(reference):
    fx = reference("projgrid")
    for G in (8, 16):
        # the stored buffer is the rotated linspace grid before the forward's division by 2·mesh_scale
        assert torch.equal(grid_points(G, mesh_scale=1.0) * 2, fx[f"grid_points_G{G}"])
        assert torch.equal(voxel_world_points(_all_coords(G), G), grid_points(G))


def test_projection_and_sampling_match_fixture(reference):
    fx = reference("projgrid")
    cases = fx.meta["cases"]
    assert len(cases) == 6
    for case in cases:
        key, G, S = case["key"], case["G"], case["S"]
        cam = Camera.front(case["camera_angle_x"], case["distance"], case["mesh_scale"])
        fmap = fx[case["feature_map"]]
        assert_close(backproject_dense(fmap, cam, G, S), fx[f"proj_{key}"], rtol=1e-5, what=f"proj {key}")
        pixel_camera = Camera.from_intrinsics(cam.intrinsics(S), cam.cam_to_world, S, S, cam.mesh_scale)
        assert_close(backproject_dense(fmap, pixel_camera, G, S), fx[f"proj_{key}"], rtol=1e-5, what=key)
        sparse = backproject_sparse(fmap, cam, _all_coords(G), G, S)
        assert_close(sparse, fx[f"proj_{key}"][0], rtol=1e-5, what=f"sparse {key}")
        if f"image_points_{key}" in fx.tensors:
            uv, depth, valid = project_points(grid_points(G, cam.mesh_scale), cam, S)
            assert_close(uv, fx[f"image_points_{key}"][0], rtol=1e-5, what=f"uv {key}")
            assert_close(depth, fx[f"depth_{key}"][0], rtol=1e-5, what=f"depth {key}")
            assert torch.equal(valid, fx[f"valid_{key}"][0])
    # the two 64-map variants differ only through the +0.5/S half-pixel term
    assert not torch.allclose(fx["proj_G16_camB_S1024"], fx["proj_G16_camB_S512_on_map64"])


# ----------------------------------------------------------------------------------------------
# analytic
# ----------------------------------------------------------------------------------------------
def test_known_point_lands_on_known_pixel_for_random_cameras():
    gen = torch.Generator().manual_seed(3)
    for _ in range(10):
        cam = _random_pinhole(gen)
        K, c2w = cam.intrinsics(300).double(), torch.tensor(cam.cam_to_world)
        u, v = (torch.rand(20, generator=gen, dtype=torch.float64) * 300 for _ in range(2))
        z = 0.5 + 3 * torch.rand(20, generator=gen, dtype=torch.float64)
        cam_pts = torch.stack([(u - K[0, 2]) * z / K[0, 0], -(v - K[1, 2]) * z / K[1, 1], -z, torch.ones_like(z)], 1)
        world = (cam_pts @ c2w.T)[:, :3].float()
        uv, depth, valid = project_points(world, cam, 300)
        assert torch.allclose(uv.double(), torch.stack([u, v], 1), atol=2e-3)
        assert torch.allclose(depth.double(), z, rtol=1e-5)
        assert valid.all()
        # behind the camera → not valid
        _, depth_b, valid_b = project_points((torch.cat([cam_pts[:, :2], z[:, None], cam_pts[:, 3:]], 1) @ c2w.T)[:, :3].float(), cam, 300)
        assert (depth_b < 0).all() and not valid_b.any()


def test_voxels_on_one_camera_ray_get_the_same_feature():
    torch.manual_seed(0)
    fmap = torch.randn(1, 5, 24, 24)
    # official front camera, odd G: the voxels (c, c, k) all lie on the optical axis
    G = 9
    dense = backproject_dense(fmap, Camera.front(0.6), G, 512)[0].reshape(G, G, G, -1)
    axis = dense[G // 2, G // 2]
    assert torch.allclose(axis, axis[:1].expand_as(axis), atol=1e-6)
    assert not torch.allclose(dense[0, 0], dense[0, 0, :1].expand_as(dense[0, 0]), atol=1e-3)
    # a general camera placed on the line through two grid points sees both at the same pixel
    G = 8
    a, b = grid_points(G)[[1 * 64 + 2 * 8 + 3, 5 * 64 + 4 * 8 + 6]]
    eye = b + 2.5 * (a - b)
    cam = Camera(_look_at(eye, a).numpy(), 0.9)
    coords = torch.tensor([[0, 1, 2, 3], [0, 5, 4, 6]])
    feats = backproject_sparse(fmap, cam, coords, G, 256)
    assert torch.allclose(feats[0], feats[1], atol=1e-5)
    uv, depth, _ = project_points(torch.stack([a, b]), cam, 256)
    assert torch.allclose(uv[0], uv[1], atol=1e-3) and depth[1] > depth[0]


def test_bilinear_taps_equal_grid_sample():
    gen = torch.Generator().manual_seed(5)
    for H, W in [(7, 11), (32, 32), (1, 5)]:
        fmap = torch.randn(6, H, W, generator=gen)
        inside = torch.rand(300, 2, generator=gen) * 2 - 1
        outside = torch.rand(300, 2, generator=gen) * 5 - 2.5
        centres = torch.stack([(torch.arange(W) + 0.5) / W * 2 - 1, torch.zeros(W)], 1)
        edges = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [0.0, 1.0]])
        grid = torch.cat([inside, outside, centres, edges])
        rows, cols, weights = bilinear_taps(grid, H, W)
        assert rows.dtype == cols.dtype == torch.int64
        assert rows.min() >= 0 and rows.max() < H and cols.min() >= 0 and cols.max() < W
        assert torch.allclose(weights.sum(1), torch.ones(len(grid)), atol=1e-6)
        ours = sum(weights[:, k] * fmap[:, rows[:, k], cols[:, k]] for k in range(4))
        ref = F.grid_sample(fmap[None], grid[None, None], mode="bilinear", align_corners=False,
                            padding_mode="border")[0, :, 0]
        assert_close(ours, ref, rtol=1e-6, what=f"taps {H}x{W}")  # a few float32 ulps
    # a pixel centre reads that pixel exactly
    fmap = torch.randn(3, 4, 4, generator=gen)
    rows, cols, weights = bilinear_taps(torch.tensor([[(2 + 0.5) / 4 * 2 - 1, (1 + 0.5) / 4 * 2 - 1]]), 4, 4)
    assert torch.equal(sum(weights[:, k] * fmap[:, rows[:, k], cols[:, k]] for k in range(4))[:, 0], fmap[:, 1, 2])


def test_sparse_equals_gathered_dense_with_per_item_cameras():
    gen = torch.Generator().manual_seed(7)
    G, S = 12, 512
    fmap = torch.randn(2, 9, 20, 20, generator=gen)
    cams = [Camera.front(0.4), _random_pinhole(gen, 512)]
    dense = backproject_dense(fmap, cams, G, S).reshape(2, G, G, G, -1)
    flat = torch.randperm(2 * G**3, generator=gen)[:500]
    coords = torch.stack([flat // G**3, flat // G**2 % G, flat // G % G, flat % G], 1).int()
    sparse = backproject_sparse(fmap, cams, coords, G, S)
    c = coords.long()
    gathered = dense[c[:, 0], c[:, 1], c[:, 2], c[:, 3]]
    assert (sparse - gathered).abs().max().item() < 1e-5
    # sampling_grid agrees with the projection it is built from
    grid = sampling_grid(coords, cams, G, S)
    assert grid.shape == (1, 500, 2)
    rows = c[:, 0] == 1
    uv, _, _ = project_points(voxel_world_points(coords[rows], G), cams[1], S)
    assert torch.equal(grid[0, rows], normalize_pixels(uv, S, S))
    assert sampling_grid(None, cams, G, S).shape == (2, G**3, 2)
    assert sampling_grid(None, cams[0], G, S).shape == (1, G**3, 2)
    # empty coords
    assert backproject_sparse(fmap, cams, torch.zeros(0, 4, dtype=torch.int32), G, S).shape == (0, 9)


# ----------------------------------------------------------------------------------------------
# cell samples (an option for models trained here: the mean over points inside each cell)
# ----------------------------------------------------------------------------------------------
def test_one_cell_sample_is_the_voxel_centre():
    G = 4
    ijk = torch.cartesian_prod(*[torch.arange(G)] * 3)
    centre = (ijk + 0.5) / G - 0.5  # voxel (x, y, z) → grid frame; world = (x, -z, y)
    expected = torch.stack([centre[:, 0], -centre[:, 2], centre[:, 1]], 1)
    assert torch.equal(grid_points(G, cell_samples=1), expected)
    # the official point of the first index sits on the volume's border, half a cell off this centre
    assert grid_points(G)[0, 0].item() == -0.5 and expected[0, 0].item() == -0.375
    assert torch.equal(voxel_world_points(_all_coords(G), G, cell_samples=1), expected)


def test_cell_samples_average_the_finer_grid_inside_each_cell():
    gen = torch.Generator().manual_seed(5)
    G, n, S = 4, 3, 128
    fmap = torch.randn(2, 6, 16, 16, generator=gen)
    cams = [Camera.front(0.7, 2.0), _random_pinhole(gen, S)]
    pooled = backproject_dense(fmap, cams, G, S, cell_samples=n)
    fine = backproject_dense(fmap, cams, G * n, S, cell_samples=1)
    expected = fine.reshape(2, G, n, G, n, G, n, 6).mean((2, 4, 6)).reshape(2, G**3, 6)
    assert pooled.shape == (2, G**3, 6)
    assert (pooled - expected).abs().max().item() < 1e-5
    # sparse (items with their own cameras, shuffled rows) = the gathered dense rows
    coords = torch.cat([_all_coords(G, 0), _all_coords(G, 1)])[torch.randperm(2 * G**3, generator=gen)[:90]]
    c = coords.long()
    sparse = backproject_sparse(fmap, cams, coords, G, S, cell_samples=n)
    assert (sparse - pooled[c[:, 0], c[:, 1] * G * G + c[:, 2] * G + c[:, 3]]).abs().max().item() < 1e-5
    assert sampling_grid(coords, cams, G, S, cell_samples=n).shape == (1, 90 * n**3, 2)
    # multi-view: identical views give the single view, validity-weighted or not
    own = torch.cat([torch.zeros_like(coords[:, :1]), coords[:, 1:]], 1)
    single = backproject_sparse(fmap[:1], cams[0], own, G, S, cell_samples=n)
    for weighted in (False, True):
        mv = backproject_sparse_multiview(fmap[:1].expand(2, -1, -1, -1), [cams[0]] * 2, coords, G, S,
                                          validity_weighted=weighted, cell_samples=n)
        assert (mv - single).abs().max().item() < 1e-5
    assert torch.equal(pool_cell_samples(torch.arange(16.0).reshape(16, 1), 2, 0), torch.tensor([[3.5], [11.5]]))
    with pytest.raises(UserError, match="cell_samples"):
        backproject_dense(fmap, cams, G, S, cell_samples=-1)


# ----------------------------------------------------------------------------------------------
# multi-view
# ----------------------------------------------------------------------------------------------
def test_multiview_identities():
    gen = torch.Generator().manual_seed(11)
    G, S = 10, 256
    fmap = torch.randn(1, 4, 16, 16, generator=gen)
    front = Camera.front(0.5, 3.0)  # far enough that the whole cube is inside the image
    single = backproject_dense(fmap, front, G, S)
    # mean of identical views equals one view
    mv = backproject_dense_multiview(fmap.expand(3, -1, -1, -1), [front] * 3, G, S)
    assert torch.allclose(mv, single, atol=1e-6)
    # two different views: the mean of their own single-view projections, dense and sparse
    side_c2w = _look_at(torch.tensor([3.0, 0.0, 0.4]), torch.zeros(3))
    side = Camera(side_c2w.numpy(), 0.7)
    fmap2 = torch.randn(1, 4, 16, 16, generator=gen)
    both = torch.cat([fmap, fmap2])
    expected = (single + backproject_dense(fmap2, side, G, S)) / 2
    assert torch.allclose(backproject_dense_multiview(both, [front, side], G, S), expected, atol=1e-6)
    coords = _all_coords(G)[::7]
    sparse = backproject_sparse_multiview(both, [front, side], coords, G, S)
    assert (sparse - expected[0, ::7]).abs().max().item() < 1e-5
    # validity weighting: a view looking away from the object contributes nothing
    away = Camera(_look_at(torch.tensor([0.0, 3.0, 0.0]), torch.tensor([0.0, 6.0, 0.0])).numpy(), 0.7)
    weighted = backproject_dense_multiview(both, [front, away], G, S, validity_weighted=True)
    _, _, valid = project_points(grid_points(G), front, S)
    assert valid.all()
    assert torch.allclose(weighted, single, atol=1e-6)
    unweighted = backproject_dense_multiview(both, [front, away], G, S)
    assert not torch.allclose(unweighted, single, atol=1e-3)


def test_one_world_frame_view_reproduces_single_view():
    # a capture in a rotated world frame; after canonicalisation view 0 is the official front view
    gen = torch.Generator().manual_seed(2)
    fmap = torch.randn(1, 3, 16, 16, generator=gen)
    a = math.radians(-65)
    d = 2.2
    c2w = _look_at(torch.tensor([d * math.sin(a), -d * math.cos(a), 0.0]), torch.zeros(3))
    view = Camera(c2w.numpy(), 0.5)
    canon = canonicalize_views([view])
    np.testing.assert_allclose(canon[0].cam_to_world, front_view_matrix(d).numpy(), atol=1e-6)
    out = backproject_dense_multiview(fmap, canon, 8, 512)
    assert (out - backproject_dense(fmap, Camera.front(0.5, d), 8, 512)).abs().max().item() < 1e-5


def test_bad_inputs_raise_user_error():
    fmap = torch.zeros(1, 2, 4, 4)
    cam = Camera.front()
    for bad in (torch.tensor([[0, 0, 0, 8]]), torch.tensor([[0, -1, 0, 0]]), torch.tensor([[0.0, 0, 0, 0]]),
                torch.tensor([[1, 0, 0, 0]]), torch.zeros(3, 5, dtype=torch.long)):
        with pytest.raises(UserError):
            backproject_sparse(fmap, cam, bad, 8, 64)
    with pytest.raises(UserError):
        backproject_dense(torch.zeros(2, 4, 4), cam, 8, 64)
    with pytest.raises(UserError):
        backproject_dense(torch.zeros(3, 2, 4, 4), [cam, cam], 8, 64)
    with pytest.raises(UserError):
        backproject_dense(fmap, cam, 1, 64)
    with pytest.raises(UserError):
        backproject_dense_multiview(torch.zeros(2, 2, 4, 4), [cam], 8, 64)
    with pytest.raises(UserError):
        bilinear_taps(torch.zeros(5, 3), 4, 4)
