"""The silhouette constraint, against an analytic sphere: its mask through a known camera carves nothing of the
sphere and everything far outside its cone; snapped vertices land on the mask at their own depth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixal3d.core.asset import VoxelAsset
from pixal3d.core.camera import Camera, canonicalize_views, orbit_cameras
from pixal3d.core.silhouette import (
    CHILD_OFFSETS,
    SilhouetteView,
    complete_occupancy,
    constrain_subdivisions,
    constrain_to_silhouettes,
    outside_silhouettes,
    snap_to_silhouettes,
    voxel_centres,
    voxel_frame_to_world,
    world_to_voxel_frame,
)
from pixal3d.errors import UserError

RADIUS, SIZE, GRID = 0.3, 256, 32


def sphere_mask(camera: Camera, radius: float = RADIUS, size: int = SIZE, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Pixels whose centre ray meets the sphere of ``radius`` about voxel-frame ``centre`` (exact, float64)."""
    g = np.arange(size) + 0.5
    xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    origin, dirs = camera.rays(xy, size)
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    to_centre = voxel_frame_to_world(np.array([centre]))[0] - origin
    closest = np.linalg.norm(np.cross(dirs, to_centre), axis=1)  # distance of the centre from each ray
    return (closest <= radius).reshape(size, size)


def shell_coords(radius: float = RADIUS, grid: int = GRID, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Voxels of a ``grid³`` lattice that the sphere's surface passes through."""
    idx = np.stack(np.meshgrid(*[np.arange(grid)] * 3, indexing="ij"), -1).reshape(-1, 3)
    d = np.linalg.norm(voxel_centres(idx, grid) - np.asarray(centre), axis=1)
    return idx[np.abs(d - radius) <= math.sqrt(3) / 2 / grid].astype(np.int32)


@pytest.fixture(scope="module")
def front():
    camera = Camera.front(math.radians(40))
    return camera, SilhouetteView(sphere_mask(camera), camera)


def test_frames_round_trip_and_match_the_back_projection_axes():
    p = np.array([[0.1, 0.2, 0.3], [-0.4, 0.0, 0.25]])
    np.testing.assert_allclose(voxel_frame_to_world(p), [[0.1, -0.3, 0.2], [-0.4, -0.25, 0.0]])
    np.testing.assert_allclose(world_to_voxel_frame(voxel_frame_to_world(p, 0.8), 0.8), p)
    np.testing.assert_allclose(voxel_centres(np.array([[0, 0, 0], [31, 15, 16]]), 32),
                               [[-0.484375, -0.484375, -0.484375], [0.484375, -0.015625, 0.015625]])


def test_the_sphere_keeps_every_voxel_and_loses_what_lies_outside_its_cone(front):
    camera, view = front
    shell = shell_coords()
    assert not outside_silhouettes(shell, GRID, [view]).any()
    # beside the sphere (outside the cone) vs. behind it (inside the cone: one view cannot judge depth)
    beside = np.array([[GRID - 2, GRID // 2, GRID // 2], [1, GRID // 2, GRID // 2], [GRID // 2, GRID - 2, GRID // 2]])
    behind = np.array([[GRID // 2, GRID // 2, 0]])
    assert outside_silhouettes(beside, GRID, [view]).all()
    assert not outside_silhouettes(behind, GRID, [view]).any()
    # a coarser grid is as safe: its voxels around the shell stay
    assert not outside_silhouettes(shell_coords(grid=8), 8, [view]).any()


def test_an_off_centre_sphere_keeps_its_voxels_and_its_mirror_images_are_carved(front):
    camera, _ = front
    centre = (0.2, 0.2, 0.05)
    view = SilhouetteView(sphere_mask(camera, 0.12, centre=centre), camera)
    assert not outside_silhouettes(shell_coords(0.12, centre=centre), GRID, [view]).any()
    for mirrored in ((-0.2, 0.2, 0.05), (0.2, -0.2, 0.05)):  # left-right and up-down flips of the frame
        assert outside_silhouettes(shell_coords(0.12, centre=mirrored), GRID, [view]).mean() > 0.95


def test_a_second_view_carves_what_the_first_cannot_see(front):
    camera, _ = front
    cams = canonicalize_views(orbit_cameras([0.0, 90.0], 0.0, camera.fov_x, camera.distance, SIZE, SIZE))
    views = [SilhouetteView(sphere_mask(c), c) for c in cams]
    behind = np.array([[GRID // 2, GRID // 2, 0]])  # on the front camera's axis, far behind the sphere
    assert not outside_silhouettes(behind, GRID, views[:1]).any()
    assert outside_silhouettes(behind, GRID, views).all()
    assert not outside_silhouettes(shell_coords(), GRID, views).any()


def test_snapped_vertices_land_on_the_mask_at_their_own_depth(front):
    camera, view = front
    rng = np.random.default_rng(0)
    d = rng.normal(size=(400, 3))
    spill = d / np.linalg.norm(d, axis=1, keepdims=True) * 0.36  # a sphere 20 % too large
    snapped = snap_to_silhouettes(spill, [view])
    xy0, depth0, _ = view.project(voxel_frame_to_world(spill))
    xy1, depth1, _ = view.project(voxel_frame_to_world(snapped))
    np.testing.assert_allclose(depth1, depth0, atol=1e-9)
    assert (view.distance(xy1) <= 0.5 + 1e-9).all()
    inside = view.distance(xy0) == 0
    assert inside.any() and np.array_equal(snapped[inside], spill[inside])  # inside points do not move
    # the moved ones went no further than to the nearest mask pixel
    assert (np.linalg.norm(xy1 - xy0, axis=1) <= view.distance(xy0) + 1.0).all()


def test_an_asset_is_carved_and_snapped_and_refused_when_nothing_fits(front):
    camera, view = front
    shell = shell_coords()
    blob = np.array([[GRID - 2, GRID // 2, GRID // 2], [GRID - 2, GRID // 2 + 1, GRID // 2]], np.int32)
    coords = np.concatenate([shell, blob])
    n = len(coords)
    asset = VoxelAsset(GRID, coords, np.full((n, 6), 0.5, np.float32), np.full((n, 3), 0.5, np.float32),
                       np.zeros((n, 3), bool), np.ones(n, np.float32), camera=camera)
    out, counts = constrain_to_silhouettes(asset, [view])
    assert counts["carved"] == 2 and len(out.coords) == len(shell)
    assert np.array_equal(out.coords, shell) and out.attrs.shape == (len(shell), 6)
    vertices = (out.coords + out.dual_vertices) / GRID - 0.5
    xy, _, _ = view.project(voxel_frame_to_world(vertices))
    assert (view.distance(xy) <= 0.5 + 1e-4).all()
    assert 0 < counts["snapped"] < len(shell)
    with pytest.raises(UserError, match="outside the input silhouette"):
        constrain_to_silhouettes(VoxelAsset(GRID, blob, np.zeros((2, 6), np.float32), camera=camera), [view])
    with pytest.raises(UserError, match="empty"):
        SilhouetteView(np.zeros((4, 4), bool), camera)


def test_the_structure_is_completed_to_cover_the_mask_with_its_likeliest_cells(front):
    camera, view = front
    d = 16
    idx = np.stack(np.meshgrid(*[np.arange(d)] * 3, indexing="ij"), -1)
    dist = np.linalg.norm(voxel_centres(idx.reshape(-1, 3), d), axis=1).reshape(d, d, d)
    logits = 0.5 / d - np.abs(dist - RADIUS)  # positive on the sphere's shell, falling off around it
    full = logits > 0
    assert np.array_equal(complete_occupancy(logits, [view]), full)  # covered already: nothing added
    cut = logits.copy()
    cut[d // 2:] -= 1.0  # the flow "missed" the right half (x ≥ 0): every logit there negative
    done = complete_occupancy(cut, [view])
    added = done & ~(cut > 0)
    assert added.any() and not (added & (idx[..., 0] < d // 2)).any()  # only the missed half is filled …
    assert (np.abs(dist[added] - RADIUS) <= 0.5 / d + 1e-9).all()  # … with cells on the shell (the likeliest)
    # every mask pixel's ray now meets an occupied cell: completing again adds nothing, and nothing lies outside
    assert np.array_equal(complete_occupancy(np.where(done, 1.0, -1.0), [view]), done)
    assert not outside_silhouettes(np.argwhere(done), d, [view]).any()


def test_with_several_views_completion_picks_cells_inside_every_mask(front):
    camera, _ = front
    cams = canonicalize_views(orbit_cameras([0.0, 90.0], 0.0, camera.fov_x, camera.distance, SIZE, SIZE))
    views = [SilhouetteView(sphere_mask(c), c) for c in cams]
    d = 16
    idx = np.stack(np.meshgrid(*[np.arange(d)] * 3, indexing="ij"), -1)
    dist = np.linalg.norm(voxel_centres(idx.reshape(-1, 3), d), axis=1).reshape(d, d, d)
    logits = np.where(np.abs(dist - RADIUS) <= 0.5 / d, -0.5, -1.0)  # nothing occupied; the shell likelier …
    logits[:, :, :1] = -0.1  # … and likeliest of all a slab far behind the sphere, which the side view rules out
    one = complete_occupancy(logits, views[:1])
    assert one[:, :, :1].any()  # the front view alone cannot tell: it takes the slab
    both = complete_occupancy(logits, views)
    assert both.any() and not both[:, :, :1].any()
    assert not outside_silhouettes(np.argwhere(both), d, views).any()
    assert np.array_equal(complete_occupancy(np.where(both, 1.0, -1.0), views), both)  # every ray covered


def test_subdivisions_are_carved_and_completed_at_the_children_grid(front):
    camera, view = front
    parents = np.concatenate([shell_coords(grid=GRID // 2), [[GRID // 2 - 1, GRID // 4, GRID // 4]]])  # + a stray
    logits = np.full((len(parents), 8), -1.0, np.float32)  # the decoder "missed" every child
    logits[-1] = 5.0  # … and is sure of the stray's, which lie far outside the mask
    held = constrain_subdivisions(parents, logits, GRID, [view])
    children = (parents[:, None, :] * 2 + CHILD_OFFSETS[None]).reshape(-1, 3)
    flat = held.reshape(-1)
    outside = outside_silhouettes(children, GRID, [view])
    assert outside[-8:].all() and (flat[outside] == -1e4).all()  # the stray's children are carved
    kept = children[flat > 0]
    assert len(kept) and not outside_silhouettes(kept, GRID, [view]).any()
    # the kept children cover the mask: completing the grid they make adds nothing
    grid = np.full((GRID,) * 3, -1.0)
    grid[tuple(kept.T)] = 1.0
    assert np.array_equal(complete_occupancy(grid, [view]), grid > 0)
    # on the shell: the likeliest children are the only candidates, so every added one lies on the sphere
    assert (np.abs(np.linalg.norm(voxel_centres(kept, GRID), axis=1) - RADIUS) <= 2 * math.sqrt(3) / GRID).all()
