import math

import numpy as np
import pytest
from PIL import Image

from pixal3d.conditioning.camera_estimation import (estimate_depth, estimate_fov, fov_from_normalized_intrinsics,
                                                    moge_available)
from pixal3d.pipelines.scene import scene_depth


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
    assert estimate_depth(Image.new("RGB", (32, 32)), folder=tmp_path) is None


#: a stand-in for the user's MoGe-2 install (same import path and ``infer`` contract): depth = 2 + row / 10, the
#: top-left pixel invalid, normalised focal 0.9
FAKE_MOGE = '''
import torch


class MoGeModel(torch.nn.Module):
    @classmethod
    def from_pretrained(cls, path):
        assert path.endswith("model.pt")
        return cls()

    def infer(self, pixels):
        _, h, w = pixels.shape
        depth = 2.0 + torch.arange(h, dtype=torch.float32)[:, None].expand(h, w) / 10.0
        mask = torch.ones(h, w, dtype=torch.bool)
        mask[0, 0] = False
        intrinsics = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9 * w / h, 0.5], [0.0, 0.0, 1.0]])
        return {"depth": depth, "mask": mask, "intrinsics": intrinsics, "points": None}
'''


def test_an_installed_moge_gives_the_scene_its_depth_and_fov(tmp_path, monkeypatch):
    package = tmp_path / "site" / "moge" / "model"
    package.mkdir(parents=True)
    (tmp_path / "site" / "moge" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "v2.py").write_text(FAKE_MOGE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    weights = tmp_path / "models" / "moge-2-vitl"
    weights.mkdir(parents=True)
    (weights / "model.pt").write_bytes(b"")
    monkeypatch.setattr("pixal3d.conditioning.camera_estimation.component_path", lambda name: weights)
    image = Image.new("RGB", (40, 30))
    estimate = estimate_depth(image)
    assert estimate.depth.shape == (30, 40) and np.isnan(estimate.depth[0, 0])
    assert estimate.depth[29, 5] == pytest.approx(4.9) and estimate.fov_x == pytest.approx(2 * math.atan(1 / 1.8))
    depth, fov, source = scene_depth(image)
    assert source == "MoGe-2 depth" and fov == estimate.fov_x and np.array_equal(depth, estimate.depth, equal_nan=True)
    assert scene_depth(image, use_depth_model=False) == (None, None, "ground-plane rule")
