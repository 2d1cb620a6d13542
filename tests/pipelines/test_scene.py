"""Scenes: virtual cameras keep every pixel's ray, the ground-plane rule places objects where they stand, the
composed GLB has a node per object and reproduces the input masks; the CLI runs on a tiny model."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage
import trimesh
from PIL import Image

from pixal3d import paths
from pixal3d.core.camera import Camera
from pixal3d.core.render import RenderMesh, render
from pixal3d.errors import UserError
from pixal3d.pipelines import scene as S

REPO = Path(__file__).resolve().parents[2]
FOV = math.radians(50.0)
SIZE = 192
HEIGHT, PITCH = 1.0, 20.0


def _scene_objects():
    """Three primitives resting on the ground plane (OpenCV camera coordinates, camera pitched down)."""
    p = math.radians(PITCH)
    down = np.array([0.0, math.cos(p), math.sin(p)])
    forward_on_ground = np.array([0.0, -math.sin(p), math.cos(p)])  # ⟂ down, in the y-z plane
    right = np.array([1.0, 0.0, 0.0])
    shapes = [trimesh.creation.box((0.35, 0.5, 0.35)), trimesh.creation.icosphere(2, radius=0.22),
              trimesh.creation.cylinder(radius=0.15, height=0.6)]
    spots = [(-0.75, 3.2), (0.05, 3.9), (0.8, 3.0)]  # (right, forward) on the ground
    basis = np.stack([right, -down, np.cross(right, -down)], 1)  # local x, up, z → camera coordinates
    objects = []
    for mesh, (r, fwd) in zip(shapes, spots):
        local = mesh.copy()
        if isinstance(mesh, trimesh.Trimesh) and np.ptp(mesh.vertices[:, 2]) > np.ptp(mesh.vertices[:, 1]):
            local.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0]))
        local.apply_translation([0, -local.bounds[0][1], 0])  # bottom on the ground
        ground = HEIGHT * down + r * right + fwd * forward_on_ground
        vertices = local.vertices @ basis.T + ground
        objects.append(trimesh.Trimesh(vertices, local.faces, process=False))
    return objects


def _to_gl(mesh: trimesh.Trimesh) -> RenderMesh:
    return RenderMesh(mesh.vertices @ S.FLIP_YZ.T, np.asarray(mesh.faces), None, None,
                      np.array([0.8, 0.5, 0.3, 1.0], dtype=np.float32))


@pytest.fixture(scope="module")
def rendered():
    objects = _scene_objects()
    camera = Camera(np.eye(4), FOV)
    image = render([_to_gl(m) for m in objects], camera, SIZE, background=None)
    masks = []
    for k in range(len(objects)):
        alone = render([_to_gl(objects[k])], camera, SIZE, mode="mask")
        masks.append((f"obj{k}", alone))
    assert not (masks[0][1] & masks[1][1]).any() and not (masks[1][1] & masks[2][1]).any()
    picture = Image.fromarray((image * 255).round().astype(np.uint8), "RGBA")
    return objects, picture, masks


def _ideal_generator(objects):
    """The perfect model: the true object, expressed in the view's GLB frame at the model's distance."""
    def generate(view: S.ObjectView):
        k = int(view.name[3:])
        d = 1.0 / (2.0 * math.tan(view.fov_x / 2.0))
        local = objects[k].vertices @ view.rotation  # scene → virtual OpenCV
        s = d / local.mean(0)[2]
        gl = (local * s) @ S.FLIP_YZ.T + [0.0, 0.0, d]
        data = trimesh.Trimesh(gl, objects[k].faces, process=False).export(file_type="glb")
        return data, d
    return generate


def test_virtual_view_keeps_every_ray(rendered):
    objects, picture, masks = rendered
    rgba = np.asarray(picture, dtype=np.float32) / 255
    f = S.focal_for(FOV, SIZE)
    view = S.object_view(rgba, masks[0][1], f, SIZE / 2, SIZE / 2, "obj0", size=128)
    # the object's centroid projects to the view's centre region, and the view shows it filled to ~1/1.1
    centre = objects[0].vertices.mean(0) @ view.rotation
    assert abs(centre[0] / centre[2]) < math.tan(view.fov_x / 2) * 0.3
    shown = np.asarray(view.image).max(-1) > 0
    ys, xs = np.nonzero(shown)
    assert 0.7 < max(np.ptp(xs), np.ptp(ys)) / 128 < 0.95
    # its silhouette is the shown object up to the partly covered edge pixels, grown by the objects that may hide it
    assert view.silhouette.shape == (128, 128) and not (view.silhouette & ~shown).any()
    assert ndimage.distance_transform_edt(~view.silhouette)[shown].max() <= 3  # the view magnifies the canvas ~×2
    hidden = S.object_view(rgba, masks[0][1], f, SIZE / 2, SIZE / 2, "obj0", size=128, occluders=masks[1][1])
    assert np.array_equal(hidden.image, view.image) and not (view.silhouette & ~hidden.silhouette).any()


def test_ideal_objects_are_placed_where_they_stand(rendered):
    objects, picture, masks = rendered
    result = S.generate_scene(picture, masks, FOV, _ideal_generator(objects), HEIGHT, PITCH, size=128)
    truth = np.concatenate([m.vertices for m in objects])
    scene_size = float(np.linalg.norm(truth.max(0) - truth.min(0)))
    for k, centre in enumerate(_placed_centroids(result.glb, result.names)):
        error = np.linalg.norm(centre - objects[k].vertices.mean(0))
        assert error < 0.1 * scene_size, (result.names[k], error, scene_size)
    assert result.iou["union"] > 0.95 and min(result.iou[n] for n in result.names) > 0.9, result.iou
    gltf = json.loads(result.glb[20:20 + int.from_bytes(result.glb[12:16], "little")])
    names = {n.get("name") for n in gltf["nodes"]}
    assert {"obj0", "obj1", "obj2", "camera"} <= names and len(gltf["cameras"]) == 1


def _true_depth(objects) -> np.ndarray:
    """The scene's camera-z map at the picture's size (inf off the objects)."""
    return render([_to_gl(m) for m in objects], Camera(np.eye(4), FOV), SIZE, mode="depth").astype(np.float64)


def test_a_depth_map_places_ideal_objects_exactly(rendered):
    objects, picture, masks = rendered
    depth = _true_depth(objects)
    result = S.generate_scene(picture, masks, FOV, _ideal_generator(objects), size=128, depth=depth)
    assert result.placement == "depth map"
    truth = np.concatenate([m.vertices for m in objects])
    scene_size = float(np.linalg.norm(truth.max(0) - truth.min(0)))
    for k, centre in enumerate(_placed_centroids(result.glb, result.names)):
        # the ground rule is within 2-4 % here (its contact point is the object's front); the depth map, 1 %
        error = np.linalg.norm(centre - objects[k].vertices.mean(0))
        assert error < 0.01 * scene_size, (result.names[k], error, scene_size)
        assert result.depths[k] == pytest.approx(np.median(depth[masks[k][1] & np.isfinite(depth)]), rel=0.02)
    assert min(result.iou[n] for n in result.names) > 0.9, result.iou
    with pytest.raises(UserError, match="depth map is 10x10"):
        S.generate_scene(picture, masks, FOV, _ideal_generator(objects), size=128, depth=np.ones((10, 10)))


def test_mask_depth_uses_the_interior_and_refuses_a_mask_without_depth():
    depth = np.full((8, 8), np.nan)
    depth[2:6, 2:6] = 5.0
    depth[2, 2:6] = 50.0  # the mask's edge row, mixed with the background
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    assert S.mask_depth(mask, depth) == 5.0
    with pytest.raises(UserError, match="no valid depth"):
        S.mask_depth(np.roll(mask, 4, 0) & ~mask, depth)


def test_depth_map_files(tmp_path):
    truth = np.array([[1.5, np.nan], [2.25, 0.75]])
    np.save(tmp_path / "d.npy", truth)
    assert np.array_equal(S.load_depth_map(tmp_path / "d.npy"), truth, equal_nan=True)
    millimetres = np.array([[1500, 0], [2250, 750]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), millimetres)
    assert np.array_equal(S.load_depth_map(tmp_path / "d.png"), truth, equal_nan=True)
    cv2.imwrite(str(tmp_path / "d8.png"), millimetres.astype(np.uint8))
    np.save(tmp_path / "d3.npy", np.ones((2, 2, 3)))
    for name, message in [("none.npy", "not found"), ("d8.png", "16-bit"), ("d3.npy", "2-D"), ("d.png.txt", "not found")]:
        with pytest.raises(UserError, match=message):
            S.load_depth_map(tmp_path / name)
    (tmp_path / "d.txt").write_text("1 2")
    with pytest.raises(UserError, match="must be .npy"):
        S.load_depth_map(tmp_path / "d.txt")


def test_ground_rule_refuses_objects_above_the_horizon():
    mask = np.zeros((64, 64), bool)
    mask[5:10, 30:34] = True  # high in a level camera's picture
    with pytest.raises(Exception, match="above the horizon"):
        S.ground_depth(mask, S.focal_for(FOV, 64), 32, 32, 1.0, 0.0)


def _scene_cli(tmp_path: Path, picture: Image.Image, masks, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    """``pixal3d scene`` on the rendered scene with its masks as a folder (the test camera's pitch and FOV)."""
    picture.save(tmp_path / "scene.png")
    mdir = tmp_path / "masks"
    mdir.mkdir()
    for name, mask in masks:
        Image.fromarray(mask.astype(np.uint8) * 255).save(mdir / f"{name}.png")
    out = tmp_path / "scene.glb"
    proc = subprocess.run([sys.executable, "-m", "pixal3d", "scene", "--image", str(tmp_path / "scene.png"),
                           "--masks-dir", str(mdir), "--output", str(out), "--min_component_area", "0",
                           "--pitch", str(PITCH), "--fov", "50deg", *extra], capture_output=True, text=True, timeout=900)
    return proc, out


def test_scene_cli_on_a_tiny_model(rendered, tmp_path, tiny_model):
    from tests.clients import assert_valid_gltf

    _, picture, masks = rendered
    proc, out = _scene_cli(tmp_path, picture, masks, "--model", str(tiny_model), "--steps", "2", "--resolution", "1024",
                           "--texture_size", "256", "--decimation_target", "4000", "--separate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_valid_gltf(out)
    assert all((tmp_path / f"scene_{n}.glb").is_file() for n, _ in masks)
    assert "union silhouette IoU" in proc.stderr
    bad = subprocess.run([sys.executable, "-m", "pixal3d", "scene", "--image", str(tmp_path / "scene.png"),
                          "--masks", str(tmp_path / "nope.png"), "--output", str(tmp_path / "x.glb")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.glb").exists()
    for extra in (["--depth", str(tmp_path / "nope.npy")], ["--depth", str(tmp_path / "d.npy"), "--ground-plane"]):
        bad = subprocess.run([sys.executable, "-m", "pixal3d", "scene", "--image", str(tmp_path / "scene.png"),
                              "--masks-dir", str(tmp_path / "masks"), "--output", str(tmp_path / "x.glb"), *extra],
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.glb").exists()


def test_scene_cli_places_by_a_depth_map(rendered, tmp_path, tiny_model):
    objects, picture, masks = rendered
    np.save(tmp_path / "depth.npy", _true_depth(objects))
    proc, out = _scene_cli(tmp_path, picture, masks, "--model", str(tiny_model), "--steps", "1",
                           "--decimation_target", "2000", "--texture_size", "128", "--depth", str(tmp_path / "depth.npy"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "placement by the depth map depth.npy" in proc.stderr
    for k, (name, mask) in enumerate(masks):
        reported = float(proc.stderr.split(f"{name}: depth ")[1].split(",")[0])
        depth = _true_depth(objects)
        assert reported == pytest.approx(np.median(depth[mask & np.isfinite(depth)]), rel=0.02)


def _placed_centroids(glb: bytes, names: list[str]) -> list[np.ndarray]:
    """Each named object's vertex centroid in the composed GLB, in the camera's OpenCV frame."""
    placed = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene", process=False)
    out = []
    for name in names:
        nodes = [n for n in placed.graph.nodes_geometry if n.startswith(f"{name}_mesh")]
        verts = np.concatenate([trimesh.transform_points(placed.geometry[placed.graph[n][1]].vertices, placed.graph[n][0])
                                for n in nodes])
        out.append(verts.mean(0) @ S.FLIP_YZ)
    return out


#: issue 11's goal for the default model (measured 0.948 on this scene by scripts/readme_figures.py, the same call,
#: with the silhouette constraint; 0.830 without it)
MIN_DEFAULT_UNION_IOU = 0.9


@pytest.mark.skipif(not paths.component_path("pixal3d-small").exists(), reason="the default model is not installed")
def test_scene_with_the_default_model(rendered, tmp_path):
    from tests.clients import assert_valid_gltf

    objects, picture, masks = rendered
    proc, out = _scene_cli(tmp_path, picture, masks, "--camera-height", str(HEIGHT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_valid_gltf(out)
    union = float(proc.stderr.split("union silhouette IoU ")[1].split(";")[0])
    assert union >= MIN_DEFAULT_UNION_IOU, proc.stderr
    truth = np.concatenate([m.vertices for m in objects])
    scene_size = float(np.linalg.norm(truth.max(0) - truth.min(0)))
    for k, centre in enumerate(_placed_centroids(out.read_bytes(), [n for n, _ in masks])):
        assert np.linalg.norm(centre - objects[k].vertices.mean(0)) < 0.1 * scene_size
