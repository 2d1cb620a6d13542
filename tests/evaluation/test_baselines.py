"""Baselines: the sphere, the exact silhouette hull, the multi-view visual hull."""

from __future__ import annotations

import numpy as np
import pytest

from pixal3d.evaluation import baselines
from pixal3d.evaluation import groundtruth as G
from pixal3d.evaluation.methods import SilhouetteHull, Sphere, make_baseline
from pixal3d.evaluation.metrics import mask_iou, sample_surface
from pixal3d.errors import UserError

SIZE = 128


@pytest.fixture(scope="module")
def views(mesh_dir):
    """Two views each of the torus and the box (plus the thin sword from the evalsets when present)."""
    from tests.helpers import EVALSETS

    out = []
    sources = [G.load_source(mesh_dir / "torus.obj", "torus"), G.load_source(mesh_dir / "box.obj", "box")]
    sword = EVALSETS / "meshes" / "oded_sword.obj"
    if sword.exists():
        sources.append(G.load_source(sword, "sword", up="+z"))
    for source in sources:
        for k, params in enumerate(G.eval_views(source.sha256, 0, 2)):
            out.append(G.ground_truth_view(source, k, params, SIZE, held_out=3))
    return out


def test_sphere_is_the_largest_in_the_cube():
    v, f = baselines.sphere()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 0.5)
    assert np.abs(v).max() == pytest.approx(0.5) and len(f) == 20 * 4 ** baselines.SPHERE_SUBDIVISIONS


def test_silhouette_hull_reproduces_the_input_view_and_nothing_else(views):
    for gt in views:
        pred = SilhouetteHull().predict(gt)
        assert np.abs(pred.vertices).max() <= 0.5 + 1e-2  # inside the cube up to a pixel (corner rays may graze it)
        renders = {c.name: G.render_camera(pred.render_meshes, c, SIZE) for c in gt.cameras}
        iou_in = mask_iou(renders["input"]["mask"], gt.renders["input"]["mask"])
        held = [mask_iou(renders[c.name]["mask"], gt.renders[c.name]["mask"]) for c in gt.held_out]
        assert iou_in >= 0.99, (gt.source.id, iou_in)
        assert max(held) < iou_in - 0.05, (gt.source.id, held)
        # it holds the whole object: the ground-truth samples lie inside the carved cone (up to the one-pixel
        # band where thin parts cover less than half a pixel)
        pts = sample_surface(gt.vertices, gt.faces, 2000)
        xy, _ = gt.input.project(pts, SIZE)
        mask = renders["input"]["mask"]
        mask = mask | np.roll(mask, 1, 0) | np.roll(mask, -1, 0) | np.roll(mask, 1, 1) | np.roll(mask, -1, 1)
        inside = mask[np.clip(xy[:, 1].astype(int), 0, SIZE - 1), np.clip(xy[:, 0].astype(int), 0, SIZE - 1)]
        assert inside.mean() > 0.99, (gt.source.id, inside.mean())


def test_silhouette_hull_of_a_square_mask_is_a_closed_frustum_slab():
    import trimesh

    cam = G.input_camera(0.8, 1.6)
    mask = np.zeros((32, 32), bool)
    mask[10:20, 12:22] = True
    v, f = baselines.silhouette_hull(mask, cam)
    mesh = trimesh.Trimesh(v, f, process=True)
    assert mesh.is_watertight
    # the near face is the cube's front plane, the far face its back plane
    assert v[:, 2].max() == pytest.approx(0.5) and v[:, 2].min() == pytest.approx(-0.5)
    assert abs(mesh.volume) > 0
    assert baselines.silhouette_hull(np.zeros((8, 8), bool), cam)[1].shape == (0, 3)


def test_visual_hull_carves_more_with_more_views(views):
    gt = views[0]
    volumes = []
    for n in (1, 2, 4):
        cameras = gt.extra_input_cameras(n)
        masks = [gt.renders["input"]["mask"]] + [G.render_camera(gt.render_meshes, c, SIZE, ("mask",))["mask"]
                                                 for c in cameras[1:]]
        v, f = baselines.visual_hull(masks, cameras, grid=48)
        import trimesh

        volumes.append(abs(trimesh.Trimesh(v, f).volume))
    assert volumes[0] > volumes[1] > volumes[2] > 0
    assert Sphere().multi_view and SilhouetteHull().multi_view


def test_unknown_baseline_is_a_user_error():
    with pytest.raises(UserError, match="unknown baseline"):
        make_baseline("cube")
