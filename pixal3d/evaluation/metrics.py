"""Metrics of the fidelity benchmark: 2-D (masks, normal maps, colour) and 3-D (Chamfer, F-score).

Everything is computed in the view frame of the input camera, in unit-cube units (the ground truth's
longest side is 0.98), with no alignment in oracle mode.

2-D, per camera (renders of :func:`pixal3d.evaluation.groundtruth.render_camera`):

* **mask IoU**: ``|A ∩ B| / |A ∪ B|`` of the alpha ≥ 0.5 masks (1 when both are empty);
* **normal PSNR / SSIM**: camera-frame normal maps encoded ``(n + 1) / 2`` over a white background,
  whole image, ``data_range`` 1 (SSIM: ``skimage.metrics.structural_similarity``, ``channel_axis=2``);
* **normal angular error** (degrees) over the intersection of the masks: mean, median and the share of
  pixels under 11.25°, 22.5° and 30°;
* **RGB / albedo PSNR** (textured meshes): the shaded and unlit renders over white, whole image.

PSNR of identical images is reported as :data:`PSNR_CAP` dB.

3-D (:func:`surface_scores`): :data:`POINTS` area-weighted samples of each surface
(``trimesh.sample.sample_surface(seed=0)``), nearest neighbours with ``scipy.spatial.cKDTree``:

* ``chamfer_l1 = ½ (mean d(p→G) + mean d(g→P))``, ``chamfer_l2 = ½ (mean d² + mean d²)``;
* ``fscore@τ = 2PR / (P + R)`` with precision P = share of prediction points within τ of the ground
  truth and recall R the reverse, τ ∈ :data:`TAUS`.

"Visible" scores use only the samples each surface shows to the input camera: a sample is visible
when its depth is at most :data:`VISIBLE_TOLERANCE` behind that surface's own depth render at the
sample's pixel (samples landing on a background pixel count as visible: they lie on the silhouette).
"""

from __future__ import annotations

import math

import numpy as np

#: F-score thresholds (unit-cube units)
TAUS = (0.05, 0.02, 0.01)
#: surface samples per mesh for the 3-D metrics. Exact nearest-neighbour search costs ~N² when one surface
#: lies deep inside the other (the ground truth inside the sphere baseline: 16 s at 100k, 4 s at 50k)
POINTS = 50_000
#: seed of the surface sampler (the same for every surface)
SAMPLE_SEED = 0
#: depth slack of the visibility test (unit-cube units)
VISIBLE_TOLERANCE = 0.01
#: PSNR reported for identical images, dB
PSNR_CAP = 100.0
#: angular-error thresholds, degrees
ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)


# --------------------------------------------------------------------------------------------------
# 2-D


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def mask_scores(truth: np.ndarray, drawn: np.ndarray) -> dict[str, float]:
    """IoU, precision and recall of a ``drawn`` mask against the ``truth`` mask (both ``[H, W]`` bool).

    Precision = share of the drawn pixels inside the truth (low: the shape spills past it); recall = share of the
    truth covered (low: it misses parts). IoU as :func:`mask_iou`; precision / recall are 0 with nothing to divide by.
    """
    truth, drawn = np.asarray(truth, bool), np.asarray(drawn, bool)
    inter = float(np.logical_and(truth, drawn).sum())
    return {"iou": mask_iou(truth, drawn), "precision": inter / max(float(drawn.sum()), 1.0),
            "recall": inter / max(float(truth.sum()), 1.0)}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1] (``data_range`` 1), :data:`PSNR_CAP` when identical."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return PSNR_CAP if mse <= 10 ** (-PSNR_CAP / 10) else float(-10.0 * math.log10(mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two ``[H,W,3]`` images in [0, 1] (scikit-image, ``channel_axis=2``, ``data_range=1``)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(a, np.float64), np.asarray(b, np.float64), channel_axis=2,
                                       data_range=1.0))


def over_white(rgba: np.ndarray) -> np.ndarray:
    """A straight-alpha RGBA render ``[H,W,4]`` composited over white → ``[H,W,3]``."""
    rgba = np.asarray(rgba, np.float64)
    return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])


def decode_normals(normal_rgba: np.ndarray) -> np.ndarray:
    """Unit camera-frame normals ``[H,W,3]`` of a normal pass (zero where nothing was rendered)."""
    n = np.asarray(normal_rgba[..., :3], np.float64) * 2.0 - 1.0
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    covered = (np.asarray(normal_rgba[..., 3]) > 0)[..., None] & (length > 1e-6)
    return np.where(covered, n / np.maximum(length, 1e-12), 0.0)


def angular_error(normal_a: np.ndarray, normal_b: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Angles in degrees between two normal passes at the pixels ``where`` (1-D array)."""
    na, nb = decode_normals(normal_a)[where], decode_normals(normal_b)[where]
    return np.degrees(np.arccos(np.clip((na * nb).sum(-1), -1.0, 1.0)))


def angle_stats(errors: np.ndarray) -> dict[str, float | None]:
    """Mean, median and the share (%) under each of :data:`ANGLE_THRESHOLDS` of angular errors."""
    if len(errors) == 0:
        return {"normal_err_mean": None, "normal_err_median": None,
                **{f"normal_pct_{_tag(t)}": None for t in ANGLE_THRESHOLDS}}
    out = {"normal_err_mean": float(errors.mean()), "normal_err_median": float(np.median(errors))}
    for t in ANGLE_THRESHOLDS:
        out[f"normal_pct_{_tag(t)}"] = float(100.0 * (errors < t).mean())
    return out


def _tag(value: float) -> str:
    return f"{value:g}".replace(".", "_")


def image_scores(gt: dict[str, np.ndarray], pred: dict[str, np.ndarray], colour: bool) -> dict[str, float | None]:
    """Input-view scores of two render-pass dicts: IoU, normal PSNR/SSIM and angle statistics, and with
    ``colour`` the RGB PSNR/SSIM and albedo PSNR."""
    out: dict[str, float | None] = {"iou": mask_iou(gt["mask"], pred["mask"])}
    gt_n, pred_n = over_white(gt["normal"]), over_white(pred["normal"])
    out["normal_psnr"] = psnr(gt_n, pred_n)
    out["normal_ssim"] = ssim(gt_n, pred_n)
    both = gt["mask"] & pred["mask"]
    out.update(angle_stats(angular_error(gt["normal"], pred["normal"], both)))
    if colour:
        gt_rgb, pred_rgb = over_white(gt["shaded"]), over_white(pred["shaded"])
        out["rgb_psnr"] = psnr(gt_rgb, pred_rgb)
        out["rgb_ssim"] = ssim(gt_rgb, pred_rgb)
        out["albedo_psnr"] = psnr(over_white(gt["albedo"]), over_white(pred["albedo"]))
    else:
        out.update({"rgb_psnr": None, "rgb_ssim": None, "albedo_psnr": None})
    return out


def held_out_scores(gt: dict[str, np.ndarray], pred: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Held-out-view scores: mask IoU, precision and recall (:func:`mask_scores`, the prediction's mask against the
    ground truth's) and mean normal angular error over the mask intersection."""
    errors = angular_error(gt["normal"], pred["normal"], gt["mask"] & pred["mask"])
    return {**mask_scores(gt["mask"], pred["mask"]), "normal_err_mean": float(errors.mean()) if len(errors) else None}


def error_map(gt: dict[str, np.ndarray], pred: dict[str, np.ndarray]) -> np.ndarray:
    """Per-pixel angular error in degrees ``[H,W]`` (NaN outside the mask intersection)."""
    both = gt["mask"] & pred["mask"]
    out = np.full(both.shape, np.nan)
    out[both] = angular_error(gt["normal"], pred["normal"], both)
    return out


# --------------------------------------------------------------------------------------------------
# 3-D


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int = POINTS, seed: int = SAMPLE_SEED) -> np.ndarray:
    """``count`` area-weighted surface samples ``[count, 3]`` (trimesh, fixed ``seed``); empty for no area."""
    import trimesh

    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), faces, process=False)
    if len(faces) == 0 or not mesh.area > 0:
        return np.zeros((0, 3))
    points, _ = trimesh.sample.sample_surface(mesh, int(count), seed=seed)
    return np.asarray(points, np.float64)


def visible(points: np.ndarray, camera, depth: np.ndarray, tolerance: float = VISIBLE_TOLERANCE) -> np.ndarray:
    """Which ``points [M,3]`` a surface shows to ``camera`` (a :class:`~pixal3d.core.camera.Camera`)
    given that surface's own ``depth`` render ``[S,S]`` (module docstring)."""
    size = depth.shape[0]
    xy, z = camera.project(points, size)
    inside = np.isfinite(xy).all(1) & (xy[:, 0] >= 0) & (xy[:, 0] < size) & (xy[:, 1] >= 0) & (xy[:, 1] < size) & (z > 0)
    out = np.zeros(len(points), bool)
    col = np.clip(np.floor(np.nan_to_num(xy[:, 0])).astype(np.int64), 0, size - 1)
    row = np.clip(np.floor(np.nan_to_num(xy[:, 1])).astype(np.int64), 0, size - 1)
    out[inside] = z[inside] <= depth[row[inside], col[inside]] + tolerance
    return out


def surface_scores(pred: np.ndarray, gt: np.ndarray, taus: tuple[float, ...] = TAUS) -> dict[str, float | None]:
    """Chamfer L1 / L2 and F-score at each τ between point sets ``pred [P,3]`` and ``gt [G,3]`` (module
    docstring); all None when either set is empty."""
    from scipy.spatial import cKDTree

    keys = ["chamfer_l1", "chamfer_l2"] + [f"fscore@{t:g}" for t in taus]
    if len(pred) == 0 or len(gt) == 0:
        return dict.fromkeys(keys)
    d_pg, _ = cKDTree(gt).query(pred, k=1, workers=-1)
    d_gp, _ = cKDTree(pred).query(gt, k=1, workers=-1)
    out: dict[str, float | None] = {
        "chamfer_l1": float(0.5 * (d_pg.mean() + d_gp.mean())),
        "chamfer_l2": float(0.5 * ((d_pg ** 2).mean() + (d_gp ** 2).mean())),
    }
    for t in taus:
        p, r = float((d_pg < t).mean()), float((d_gp < t).mean())
        out[f"fscore@{t:g}"] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return out


def fit_scale_translation(source: np.ndarray, target: np.ndarray, iterations: int = 20) -> tuple[float, np.ndarray]:
    """The similarity ``x → s·x + t`` (uniform scale, translation, **no rotation**) that best maps the point
    set ``source`` onto ``target``: bounding-box initialisation (centres matched, longest sides equal), then
    ``iterations`` rounds of symmetric nearest-neighbour ICP with the closed-form scale/translation step
    ``s = Σ(p−p̄)·(q−q̄) / Σ|p−p̄|², t = q̄ − s·p̄``. Returns ``(s, t)``."""
    from scipy.spatial import cKDTree

    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    lo, hi = src.min(0), src.max(0)
    tlo, thi = dst.min(0), dst.max(0)
    s = float((thi - tlo).max() / max((hi - lo).max(), 1e-12))
    t = (tlo + thi) / 2 - s * (lo + hi) / 2
    tree_dst = cKDTree(dst)
    for _ in range(iterations):
        moved = s * src + t
        _, j = tree_dst.query(moved, k=1)
        _, i = cKDTree(moved).query(dst, k=1)
        p = np.concatenate([src, src[i]])
        q = np.concatenate([dst[j], dst])
        pm, qm = p.mean(0), q.mean(0)
        denom = float(((p - pm) ** 2).sum())
        if denom <= 0:
            break
        s = float(((p - pm) * (q - qm)).sum() / denom)
        t = qm - s * pm
    return s, t
