"""The evaluation-overlap guard: evaluation meshes never enter data building, re-exported or not."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from pixal3d.cli import main
from pixal3d.data import build as B
from pixal3d.data import overlap as O
from pixal3d.data.synth import synthesize
from pixal3d.errors import UserError
from pixal3d.mesh.io import load_mesh

EVALSET = O.default_evalset_dir()
needs_evalset = pytest.mark.skipif(EVALSET is None, reason="shared/evalsets/meshes not found")
CONFIG = B.BuildConfig(views=1, resolution=16, image_size=32, seed=0)


def _disguised_copy(src, dst):
    """``src`` re-exported the way package copies are: rotated, rescaled, moved, subdivided, faces shuffled, OBJ."""
    mesh = load_mesh(src)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).subdivide()
    rot = Rotation.from_euler("xyz", [30, -70, 110], degrees=True).as_matrix()
    faces = tm.faces[np.random.default_rng(1).permutation(len(tm.faces))]
    trimesh.Trimesh(tm.vertices @ rot.T * 41.0 + [3.0, -2.0, 7.0], faces, process=False).export(dst)


def test_signature_invariant_to_similarity_and_tessellation():
    box = trimesh.creation.box((1.0, 2.0, 0.5))
    a = O.shape_signature(box.vertices, box.faces)
    moved = box.copy().subdivide().subdivide()
    moved.apply_transform(trimesh.transformations.random_rotation_matrix(np.random.default_rng(0).random(3)))
    b = O.shape_signature(moved.vertices * 9.0 + 4.0, moved.faces)
    other = trimesh.creation.icosphere(3)
    assert O.signature_distance(a, b) < O.MATCH_DISTANCE
    assert O.signature_distance(a, O.shape_signature(other.vertices, other.faces)) > 4 * O.MATCH_DISTANCE
    assert np.isclose(a[:3].sum(), 1.0) and np.isclose(a[3:].sum(), 1.0, atol=1e-3)


def test_signature_of_flat_nothing_is_a_user_error():
    with pytest.raises(UserError, match="no surface area"):
        O.shape_signature(np.zeros((3, 3)), np.array([[0, 1, 2]]))


@needs_evalset
def test_committed_signatures_cover_the_evaluation_set():
    committed = {e.name: e for e in O.load_signatures()}
    files = sorted(p for p in EVALSET.iterdir() if p.suffix.lower() in (".obj", ".ply", ".glb", ".gltf"))
    assert len(files) == len(committed)
    for path in files:
        assert committed[path.name].sha256 == O.file_sha256(path)
    duck = committed["khronos_Duck.glb"]
    np.testing.assert_allclose(O.mesh_file_signature(EVALSET / "khronos_Duck.glb"), duck.signature, atol=1e-6)


@needs_evalset
def test_build_refuses_evaluation_meshes_by_bytes_and_by_shape(tmp_path):
    assets = tmp_path / "assets"
    synthesize(1, assets, seed=2, workers=1, sheet=False)
    shutil.copy(EVALSET / "khronos_Duck.glb", assets / "duck_copy.glb")
    _disguised_copy(EVALSET / "oded_penguin.obj", assets / "penguin_reexport.obj")
    result = B.build_dataset(assets, tmp_path / "data", CONFIG, workers=1)
    manifest = json.loads(result.manifest.read_text())["assets"]
    assert (result.built, result.failed) == (1, 2)
    assert "khronos_Duck.glb (identical file)" in manifest["duck_copy"]["error"]
    assert "oded_penguin.obj (same shape" in manifest["penguin_reexport"]["error"]
    assert not (tmp_path / "data" / "duck_copy").exists() and not (tmp_path / "data" / "penguin_reexport").exists()
    assert manifest["synth_0002_000000"]["status"] == "ok"


@needs_evalset
def test_build_refuses_the_evaluation_folder_unless_forced(tmp_path, capsys):
    with pytest.raises(UserError, match="evaluation meshes"):
        B.build_dataset(EVALSET, tmp_path / "data", CONFIG, workers=1)
    assert main(["data", "build", "--assets", str(EVALSET), "-o", str(tmp_path / "cli"), "--resolution", "16",
                 "--views", "1", "--image-size", "32", "--workers", "1", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "for `pixal3d evaluate` only" in err[0]
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(EVALSET / "khronos_Duck.glb", one)
    forced = B.build_dataset(one, tmp_path / "forced", CONFIG, workers=1, allow_eval_overlap=True)
    assert (forced.built, forced.failed) == (1, 0)
