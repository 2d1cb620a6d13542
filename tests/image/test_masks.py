"""Instance masks: label images (integer or colour), folders of masks, connected components."""

import numpy as np
import pytest
from PIL import Image

from pixal3d.errors import UserError
from pixal3d.image.masks import masks_from_alpha, masks_from_folder, masks_from_label_image


def test_label_images(tmp_path):
    labels = np.zeros((20, 30), np.uint8)
    labels[2:6, 3:8] = 7
    labels[10:15, 20:28] = 2
    Image.fromarray(labels).save(tmp_path / "l.png")
    masks = masks_from_label_image(tmp_path / "l.png", (30, 20))
    assert [n for n, _ in masks] == ["object_00", "object_01"]
    assert masks[0][1].sum() == 5 * 8 and masks[1][1].sum() == 4 * 5  # label 2 first, then 7
    colour = np.zeros((20, 30, 3), np.uint8)
    colour[2:6, 3:8] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "c.png")
    assert len(masks_from_label_image(tmp_path / "c.png", (30, 20))) == 1
    with pytest.raises(UserError, match="is 30x20 but the image is 31x20"):
        masks_from_label_image(tmp_path / "l.png", (31, 20))
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(UserError, match="no object"):
        masks_from_label_image(tmp_path / "empty.png", (30, 20))


def test_mask_folder_and_components(tmp_path):
    a = np.zeros((16, 16), np.uint8)
    a[1:5, 1:5] = 255
    Image.fromarray(a).save(tmp_path / "cup.png")
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[8:12, 8:14, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "bowl.png")
    masks = masks_from_folder(tmp_path, (16, 16))
    assert [n for n, _ in masks] == ["bowl", "cup"] and masks[0][1].sum() == 24 and masks[1][1].sum() == 16
    alpha = np.zeros((40, 40))
    alpha[5:15, 25:35] = 1.0
    alpha[20:30, 2:12] = 1.0
    alpha[0, 0] = 1.0  # a speck below the minimum area
    comps = masks_from_alpha(alpha)
    assert len(comps) == 2 and comps[0][1][25, 5] and comps[1][1][10, 30]  # left to right
    with pytest.raises(UserError):
        masks_from_alpha(np.zeros((8, 8)))
    with pytest.raises(UserError, match="not found"):
        masks_from_folder(tmp_path / "nope", (16, 16))
