"""Metrics with analytic answers: identical spheres, shifted spheres, concentric spheres, image scores."""

from __future__ import annotations

import numpy as np
import pytest

from pixal3d.evaluation import baselines
from pixal3d.evaluation import metrics as M


def _shifted_sphere_expectation(r: float, delta: float, taus) -> tuple[float, float, dict]:
    """Exact point-to-surface answers for a sphere of radius ``r`` against the same sphere shifted by ``delta``:
    a uniform point at polar cosine ``u`` (relative to the shift) lies ``|sqrt(r² + δ² − 2rδu) − r|`` from the other
    sphere; both directions are symmetric. Returns (CD-L1, CD-L2, {τ: F})."""
    u = np.linspace(-1, 1, 2_000_001)
    d = np.abs(np.sqrt(r * r + delta * delta - 2 * r * delta * u) - r)
    return float(d.mean()), float((d ** 2).mean()), {t: float((d < t).mean()) for t in taus}


def test_sphere_against_itself_scores_perfectly():
    v, f = baselines.sphere()
    pts = M.sample_surface(v, f, 20_000)
    scores = M.surface_scores(pts, pts)
    assert scores["chamfer_l1"] == 0.0 and scores["chamfer_l2"] == 0.0
    assert all(scores[f"fscore@{t:g}"] == 1.0 for t in M.TAUS)
    # another sample of the same sphere: Chamfer ≈ 0 (sampling spacing only), F@0.05 = 1, F@0.02 ≈ 1
    other = M.sample_surface(v, f, 20_000, seed=1)
    s2 = M.surface_scores(other, pts)
    assert s2["chamfer_l1"] < 0.008 and s2["fscore@0.05"] == 1.0 and s2["fscore@0.02"] > 0.999


def test_shifted_sphere_gives_the_chamfer_distance_of_the_shift():
    r, delta = 0.3, 0.05
    v, f = baselines.sphere(radius=r)
    a = M.sample_surface(v, f, 60_000)
    b = M.sample_surface(v + [delta, 0.0, 0.0], f, 60_000, seed=1)
    scores = M.surface_scores(b, a)
    l1, l2, fs = _shifted_sphere_expectation(r, delta, M.TAUS)
    assert l1 == pytest.approx(delta / 2, rel=0.01)  # ≈ δ·E|u| for δ ≪ r
    # point-to-point nearest neighbours overestimate point-to-surface distances by about the sample spacing
    assert scores["chamfer_l1"] == pytest.approx(l1, rel=0.08)
    assert scores["chamfer_l2"] == pytest.approx(l2, rel=0.15)
    assert scores["fscore@0.05"] == pytest.approx(fs[0.05], abs=0.02)
    assert scores["fscore@0.02"] == pytest.approx(fs[0.02], abs=0.05)
    # symmetric in its arguments
    assert M.surface_scores(a, b)["chamfer_l1"] == pytest.approx(scores["chamfer_l1"], rel=1e-12)


def test_concentric_spheres_are_the_radius_gap_apart():
    inner = M.sample_surface(*baselines.sphere(radius=0.48), 40_000)
    outer = M.sample_surface(*baselines.sphere(radius=0.5), 40_000, seed=1)
    s = M.surface_scores(inner, outer)
    assert s["chamfer_l1"] == pytest.approx(0.02, abs=0.003)
    assert s["fscore@0.05"] == 1.0 and s["fscore@0.01"] == 0.0  # every distance is at least the 0.02 gap


def test_empty_prediction_has_no_surface_scores():
    s = M.surface_scores(np.zeros((0, 3)), np.ones((5, 3)))
    assert s["chamfer_l1"] is None and s["fscore@0.05"] is None
    assert len(M.sample_surface(np.zeros((0, 3)), np.zeros((0, 3), int), 10)) == 0


def test_sampling_is_deterministic():
    v, f = baselines.sphere()
    np.testing.assert_array_equal(M.sample_surface(v, f, 1000), M.sample_surface(v, f, 1000))


def test_mask_scores_are_the_set_ratios():
    truth = np.zeros((10, 10), bool)
    truth[2:6, 2:6] = True  # 16 pixels
    drawn = np.zeros((10, 10), bool)
    drawn[4:10, 2:6] = True  # 24 pixels, 8 shared
    assert M.mask_scores(truth, drawn) == {"iou": 8 / 32, "precision": 8 / 24, "recall": 0.5}
    assert M.mask_scores(truth, np.zeros_like(truth)) == {"iou": 0.0, "precision": 0.0, "recall": 0.0}
    assert M.mask_scores(truth, truth | drawn)["recall"] == 1.0  # spilling past the truth costs precision only


def test_held_out_scores_split_extra_from_missed():
    normal = np.ones((10, 10, 4))  # an encoded normal pass: +z everywhere, alpha 1
    normal[..., :2] = 0.5
    truth = np.zeros((10, 10), bool)
    truth[2:6, 2:6] = True
    wide = np.zeros((10, 10), bool)
    wide[2:6, 0:8] = True  # the same rows, twice as wide: everything covered, half of it extra
    s = M.held_out_scores({"mask": truth, "normal": normal}, {"mask": wide, "normal": normal})
    assert s["iou"] == 0.5 and s["precision"] == 0.5 and s["recall"] == 1.0
    assert s["normal_err_mean"] == pytest.approx(0.0, abs=1e-6)


def test_image_scores():
    a = np.zeros((32, 32), bool)
    a[8:24, 8:24] = True
    b = np.zeros_like(a)
    b[8:24, 16:24] = True
    assert M.mask_iou(a, a) == 1.0 and M.mask_iou(a, b) == 0.5 and M.mask_iou(b & ~b, b & ~b) == 1.0
    img = np.random.default_rng(0).random((32, 32, 3))
    assert M.psnr(img, img) == M.PSNR_CAP and M.ssim(img, img) == pytest.approx(1.0)
    assert M.psnr(np.zeros((4, 4, 3)), np.full((4, 4, 3), 0.1)) == pytest.approx(20.0)
    # normal passes: +z everywhere vs tilted by 20° about x
    t = np.radians(20.0)
    n1 = np.zeros((32, 32, 4))
    n1[..., :3] = (np.array([0, 0, 1.0]) + 1) / 2
    n2 = n1.copy()
    n2[..., :3] = (np.array([0, np.sin(t), np.cos(t)]) + 1) / 2
    n1[..., 3] = n2[..., 3] = a
    err = M.angular_error(n1, n2, a)
    np.testing.assert_allclose(err, 20.0, atol=1e-6)
    stats = M.angle_stats(err)
    assert stats["normal_err_mean"] == pytest.approx(20.0) and stats["normal_pct_11_25"] == 0.0
    assert stats["normal_pct_22_5"] == 100.0 and stats["normal_pct_30"] == 100.0


def test_scale_translation_fit_recovers_a_similarity():
    rng = np.random.default_rng(0)
    v, f = baselines.sphere(radius=0.3)
    target = M.sample_surface(v * [1.0, 0.6, 0.8], f, 3000)  # an ellipsoid: scale is observable
    source = (target - [0.1, -0.05, 0.2]) / 1.7 + rng.normal(0, 1e-4, target.shape)
    s, t = M.fit_scale_translation(source, target)
    assert s == pytest.approx(1.7, rel=1e-2)
    np.testing.assert_allclose(s * source + t, target, atol=5e-3)
