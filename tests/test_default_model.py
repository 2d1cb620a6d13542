"""The shipped default model, run the way the README's first command runs it.

``python inference.py --image examples/example.png --output out.glb`` with no ``--model``: the GLB must pass the
Khronos validator, import into Blender with its PBR materials, and line up with the input picture (the mesh
rendered through the input camera covers the object's mask).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixal3d import paths
from tests.clients import assert_valid_gltf, blender_import

#: the card's input-view mask IoU on the evaluation meshes is higher; one example picture gets a margin
MIN_INPUT_IOU = 0.6

pytestmark = pytest.mark.skipif(not paths.component_path("pixal3d-small").exists(),
                                reason="the default model is not installed (models/pixal3d-small)")


@pytest.fixture(scope="module")
def example_glb(tmp_path_factory):
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("default") / "out.glb"
    proc = subprocess.run([sys.executable, str(repo / "inference.py"), "--image", str(repo / "examples" / "example.png"),
                           "--output", str(out)], capture_output=True, text=True, cwd=repo, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return repo, out


def test_readme_command_gives_a_valid_glb_blender_imports(example_glb):
    _, out = example_glb
    assert_valid_gltf(out)
    (report,) = blender_import([out])
    assert report["result"] == ["FINISHED"] and len(report["meshes"]) == 1 and len(report["cameras"]) == 1
    (material,) = report["materials"]
    assert all(material["linked"][k] for k in ("Base Color", "Metallic", "Roughness"))


def test_output_lines_up_with_the_input_picture(example_glb):
    from pixal3d.evaluation.metrics import mask_iou
    from pixal3d.export.views import render_through_camera

    repo, out = example_glb
    alpha = np.asarray(Image.open(repo / "examples" / "example.png").convert("RGBA"))[..., 3] > 127
    coverage = render_through_camera(out, alpha.shape[1], alpha.shape[0])[..., 3] > 0.5
    assert mask_iou(coverage, alpha) >= MIN_INPUT_IOU
