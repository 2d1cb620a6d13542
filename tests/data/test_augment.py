"""Photo-like augmentation: deterministic per generator, every effect reachable, the geometry never moves."""

from __future__ import annotations

import numpy as np

from pixal3d.data.augment import PHOTO_AUGMENT, photo_augment


def _render(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    disc = (xx - 30.5) ** 2 + (yy - 34.5) ** 2 < 18**2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[disc] = (200, 120, 40, 255)
    rgba[disc & (xx > 30)] = (60, 160, 220, 255)
    return rgba


def _centroid(alpha: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[: alpha.shape[0], : alpha.shape[1]]
    w = alpha.astype(np.float64)
    return np.array([(xx * w).sum(), (yy * w).sum()]) / w.sum()


def test_same_generator_state_gives_the_same_image():
    rgba = _render()
    a = photo_augment(rgba, np.random.default_rng([3, 7]))
    b = photo_augment(rgba, np.random.default_rng([3, 7]))
    assert a.dtype == np.uint8 and a.shape == rgba.shape
    assert np.array_equal(a, b)
    assert not all(np.array_equal(a, photo_augment(rgba, np.random.default_rng([3, k]))) for k in range(8, 12))


def test_colour_and_alpha_change_but_the_silhouette_stays_put():
    rgba = _render()
    mask = rgba[..., 3] >= 128
    changed_colour = changed_alpha = 0
    for k in range(40):
        out = photo_augment(rgba, np.random.default_rng(k))
        m = out[..., 3] >= 128
        assert (m & mask).sum() / (m | mask).sum() > 0.85  # one pixel of matting on an 18-pixel radius
        assert np.abs(_centroid(out[..., 3]) - _centroid(rgba[..., 3])).max() < 0.5
        inside = mask & m
        changed_colour += np.abs(out[inside][:, :3].astype(int) - rgba[inside][:, :3]).mean() > 2
        changed_alpha += not np.array_equal(out[..., 3], rgba[..., 3])
    # each effect's probability, over 40 draws: colour 0.8 → almost always; matting or blur → often
    assert changed_colour >= 40 * PHOTO_AUGMENT["colour"] - 12
    assert 40 * 0.3 <= changed_alpha < 40
