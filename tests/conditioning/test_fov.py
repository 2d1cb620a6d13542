import math

import numpy as np
import pytest
from PIL import Image

from pixal3d.conditioning.fov import estimate_fov, fov_from_normalized_intrinsics, moge_available


def test_fov_from_normalized_intrinsics_inverts_the_pinhole_formula():
    for fov in (0.2, 0.8575560450553894, 1.5):
        fx = 1.0 / (2.0 * math.tan(fov / 2.0))
        k = np.array([[fx, 0, 0.5], [0, fx, 0.5], [0, 0, 1]])
        assert fov_from_normalized_intrinsics(k) == pytest.approx(fov, rel=1e-12)
    with pytest.raises(ValueError):
        fov_from_normalized_intrinsics(np.zeros((3, 3)))


def test_without_moge_weights_estimation_reports_none(tmp_path):
    assert not moge_available(tmp_path)
    assert estimate_fov(Image.new("RGB", (32, 32)), device=None, folder=tmp_path) is None
