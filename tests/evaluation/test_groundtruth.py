"""Ground truth: cameras from the file's bytes, the training view convention, pixel alignment, normals."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from pixal3d.data import build as B
from pixal3d.data.build import ViewParams
from pixal3d.evaluation import groundtruth as G
from pixal3d.evaluation.metrics import decode_normals, mask_iou

SIZE = 128


@pytest.fixture(scope="module")
def box_view(mesh_dir):
    source = G.load_source(mesh_dir / "box.obj", "box")
    # a camera on the (+x, +y, +z) diagonal of the canonical frame sees three faces
    params = ViewParams(azimuth_deg=45.0, elevation_deg=math.degrees(math.atan(1 / math.sqrt(2))), fov_x=0.6,
                        distance_factor=1.1)
    return G.ground_truth_view(source, 0, params, SIZE, held_out=3)


def test_cameras_come_from_the_file_bytes_and_the_training_distribution(mesh_dir, tmp_path):
    copy = tmp_path / "renamed.obj"
    shutil.copy(mesh_dir / "torus.obj", copy)
    sha = G.file_sha256(mesh_dir / "torus.obj")
    assert G.file_sha256(copy) == sha
    views = G.eval_views(sha, 0, 50)
    assert views == G.eval_views(G.file_sha256(copy), 0, 50)  # the name does not matter
    assert views[:3] == G.eval_views(sha, 0, 3)  # prefix-stable in K
    assert views != G.eval_views(sha, 1, 50) and views != G.eval_views(G.file_sha256(mesh_dir / "box.obj"), 0, 50)
    rng = np.random.default_rng([0, int(sha[:8], 16)])
    assert views == B.draw_views(rng, 50)
    for v in views:
        assert 0 <= v.azimuth_deg < 360 and B.ELEVATION_RANGE_DEG[0] <= v.elevation_deg <= B.ELEVATION_RANGE_DEG[1]
        assert B.FOV_RANGE[0] <= v.fov_x <= B.FOV_RANGE[1]
        assert B.DISTANCE_FACTOR[0] <= v.distance_factor <= B.DISTANCE_FACTOR[1]


def test_view_frame_is_the_training_frame(mesh_dir):
    source = G.load_source(mesh_dir / "torus.obj", "torus")
    params = G.eval_views(source.sha256, 0, 1)[0]
    gt = G.ground_truth_view(source, 0, params, SIZE, held_out=2)
    vm = B.view_mesh(source.mesh, B.view_rotation(params.azimuth_deg, params.elevation_deg))
    np.testing.assert_allclose(gt.vertices, vm.vertices)
    assert np.abs(gt.vertices).max() <= 0.5 and (gt.vertices.max(0) - gt.vertices.min(0)).max() == pytest.approx(B.FILL)
    assert gt.distance == B.view_distance(vm.vertices[np.unique(vm.faces)], params)
    cam = gt.camera()
    assert (cam.fov_x, cam.distance, cam.mesh_scale) == (params.fov_x, gt.distance, 1.0)
    # the render primitives are the same surface as the view mesh
    np.testing.assert_allclose(np.concatenate([m.vertices for m in gt.render_meshes]), gt.vertices, atol=1e-9)


def test_gt_renders_match_the_conditioning_projection_within_one_pixel(mesh_dir):
    """Vertices projected by pixal3d.conditioning (official pinhole, world = (x, -z, y) / mesh_scale) bound the
    rendered silhouette to within a pixel (the official sampling puts pixel k's centre at u = k, half a pixel
    from the renderer's k + 0.5: well inside the tolerance)."""
    from pixal3d.conditioning.backprojection import project_points

    for name in ("torus.obj", "sphere.obj", "box.obj"):
        source = G.load_source(mesh_dir / name, name)
        for k, params in enumerate(G.eval_views(source.sha256, 3, 2)):
            gt = G.ground_truth_view(source, k, params, SIZE, held_out=0)
            p = gt.vertices[np.unique(gt.faces)]
            world = torch.tensor(np.stack([p[:, 0], -p[:, 2], p[:, 1]], 1), dtype=torch.float32)
            uv, depth, valid = project_points(world, gt.camera(), SIZE)
            uv = uv.double().numpy()
            # fit_distance puts the outermost vertex exactly on the image border
            assert (depth > 0).all() and uv.min() > -1e-3 and uv.max() < SIZE + 1e-3
            rows, cols = np.nonzero(gt.renders["input"]["mask"])
            assert abs(cols.min() - uv[:, 0].min()) <= 1 and abs(cols.max() + 1 - uv[:, 0].max()) <= 1
            assert abs(rows.min() - uv[:, 1].min()) <= 1 and abs(rows.max() + 1 - uv[:, 1].max()) <= 1
            # and the depth render is the projected depth of the nearest surface
            near = np.argmin(depth.numpy())
            c, r = np.floor(uv[near]).astype(int)
            assert gt.renders["input"]["depth"][r, c] == pytest.approx(float(depth[near]), abs=0.02)


def test_cube_normals_are_the_three_face_normals_where_they_must_be(box_view):
    gt = box_view
    R = B.view_rotation(gt.params.azimuth_deg, gt.params.elevation_deg)  # canonical → view (= camera) frame
    normals = decode_normals(gt.renders["input"]["normal"])
    for axis in range(3):
        centre = np.zeros(3)
        centre[axis] = 0.5
        centre_view = gt.file_to_view[:3, :3] @ centre + gt.file_to_view[:3, 3]
        (x, y), _ = (v[0] for v in gt.input.project(centre_view[None], SIZE))
        c, r = int(x), int(y)
        expected = R[:, axis]  # the canonical face normal e_axis seen in the camera frame
        np.testing.assert_allclose(normals[r, c], expected, atol=1e-6)
        assert expected[2] > 0.5  # it faces the camera
    # the three face normals cover the silhouette (only the 2×2 supersampled pixels on the edges between
    # faces mix two of them)
    covered = normals[gt.renders["input"]["mask"]]
    nearest = np.abs(covered[:, None, :] - R.T[None]).max(-1).min(1)
    assert (nearest < 1e-6).mean() > 0.9


def test_held_out_cameras_orbit_the_up_axis(box_view):
    gt = box_view
    assert [c.name for c in gt.held_out] == ["heldout_090.0", "heldout_180.0", "heldout_270.0"]
    up = B.view_rotation(gt.params.azimuth_deg, gt.params.elevation_deg) @ [0, 1, 0]
    eye = gt.input.cam_to_world[:3, 3]
    for cam in gt.held_out:
        pos = cam.cam_to_world[:3, 3]
        assert np.linalg.norm(pos) == pytest.approx(gt.distance)
        assert pos @ up == pytest.approx(eye @ up)  # same elevation about the object's up axis
        np.testing.assert_allclose(-cam.cam_to_world[:3, 2], -pos / np.linalg.norm(pos), atol=1e-12)  # looks at the centre
        assert cam.fov_y == gt.input.fov_y
    back = gt.held_out[1].cam_to_world[:3, 3]
    np.testing.assert_allclose(back - (back @ up) * up, -(eye - (eye @ up) * up), atol=1e-12)  # 180° is behind
    assert G.held_out_yaws(4) == (72.0, 144.0, 216.0, 288.0)


def test_materials_textured_and_neutral(mesh_dir):
    geometry = G.load_source(mesh_dir / "box.obj", "box")
    assert not geometry.textured
    factor, metallic, roughness = G.NEUTRAL_MATERIAL
    for m in geometry.render_meshes:
        np.testing.assert_allclose(m.factor, factor)
        assert m.base_color is None and m.metallic == metallic and m.roughness == roughness
    coloured = G.load_source(mesh_dir / "red_box.glb", "red_box")
    assert coloured.textured
    params = ViewParams(0.0, 10.0, 0.5, 1.0)
    gt = G.ground_truth_view(coloured, 0, params, 64, held_out=0)
    albedo = gt.renders["input"]["albedo"][32, 32]
    assert albedo[0] > 0.7 and albedo[1] < 0.2  # rendered with its own colour
    image = gt.image
    assert image.shape == (64, 64, 4) and image.dtype == np.uint8 and image[0, 0, 3] == 0
    on_black = np.asarray(G.on_black(gt.renders["input"]["shaded"]))
    assert on_black.shape == (64, 64, 3) and on_black[0, 0].max() == 0  # the canvas is uncropped, over black


@pytest.mark.parametrize("name,textured", [("khronos_Duck.glb", True), ("oded_boat.obj", False), ("oded_penguin.obj", False)])
def test_evalset_placeholder_textures_are_geometry_only(name, textured):
    from tests.helpers import EVALSETS

    path = EVALSETS / "meshes" / name
    if not path.exists():
        pytest.skip("evalsets not available")
    assert G.load_source(path, name).textured is textured
    assert G.up_axes(EVALSETS / "meshes")["oded_sword.obj"] == "+z"


def test_voxelised_ground_truth_lands_on_the_ground_truth(mesh_dir):
    """The model's output frame is the view frame: the O-Voxel of the GT view mesh (what training sees),
    surfaced by the export's dual-grid extraction, covers the GT silhouette."""
    from pixal3d.core.camera import Camera
    from pixal3d.core.render import RenderMesh
    from pixal3d.export.glb import asset_surface
    from pixal3d.mesh.voxelize import voxelize

    source = G.load_source(mesh_dir / "torus.obj", "torus")
    params = G.eval_views(source.sha256, 0, 1)[0]
    gt = G.ground_truth_view(source, 0, params, SIZE, held_out=1)
    vm = B.view_mesh(source.mesh, B.view_rotation(params.azimuth_deg, params.elevation_deg))
    asset, _ = voxelize(vm, 64, camera=Camera.front(params.fov_x, gt.distance, 1.0))
    v, f = asset_surface(asset)
    pred = [RenderMesh(v, f, None, None, np.ones(4, np.float32))]
    for cam in gt.cameras:
        iou = mask_iou(G.render_camera(pred, cam, SIZE)["mask"], gt.renders[cam.name]["mask"])
        assert iou > 0.97, (cam.name, iou)
