"""Small meshes for the evaluation tests (written once per session)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh


@pytest.fixture(scope="session")
def mesh_dir(tmp_path_factory):
    """A folder with a sphere, a unit box and a torus (OBJ, geometry only) and a red-box GLB (coloured)."""
    root = tmp_path_factory.mktemp("eval_meshes")
    trimesh.creation.icosphere(subdivisions=4, radius=1.0).export(root / "sphere.obj")
    trimesh.creation.box(extents=(1.0, 1.0, 1.0)).export(root / "box.obj")
    trimesh.creation.torus(major_radius=1.0, minor_radius=0.35, major_sections=48, minor_sections=16).export(root / "torus.obj")
    red = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    red.visual = trimesh.visual.ColorVisuals(red, face_colors=np.tile([200, 30, 30, 255], (len(red.faces), 1)))
    red.export(root / "red_box.glb")
    return root
