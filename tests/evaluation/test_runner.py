"""The benchmark loop: self-check, shifted prediction, determinism, failures, subsets, reports."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pixal3d.errors import UserError
from pixal3d.evaluation import EvalConfig, evaluate
from pixal3d.evaluation import runner as R
from pixal3d.evaluation.methods import Method, plain_prediction

FAST = dict(views_per_mesh=1, image_size=64, held_out=2, points=20000)


def _metrics(data, method, mesh):
    entry = next(e for e in data["methods"][method]["results"] if e["mesh"] == mesh)
    return entry


@pytest.fixture(scope="module")
def two_meshes(mesh_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    for name in ("sphere.obj", "torus.obj"):
        shutil.copy(mesh_dir / name, root / name)
    return root


@pytest.fixture(scope="module")
def baseline_run(two_meshes, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    config = EvalConfig(**FAST, baselines=("ground_truth", "sphere", "silhouette_hull"))
    return out, evaluate(two_meshes, out, config)


def test_ground_truth_against_itself_is_perfect(baseline_run):
    _, data = baseline_run
    for mesh in ("sphere", "torus"):
        m = _metrics(data, "ground_truth", mesh)["mean"]
        assert m["iou_input"] == 1.0 and m["iou_heldout"] == 1.0
        assert m["chamfer_l1"] == 0.0 and m["fscore@0.05"] == 1.0 and m["fscore@0.01"] == 1.0
        assert m["fscore@0.01_visible"] == 1.0 and m["normal_err_mean"] < 1e-3 and m["normal_psnr"] == 100.0


def test_sphere_baseline_against_a_sphere(baseline_run):
    """The GT sphere is normalised to a 0.98 box (radius ≈ 0.49): IoU ≈ 1, Chamfer ≈ the 0.01 radius gap."""
    _, data = baseline_run
    m = _metrics(data, "sphere", "sphere")["mean"]
    assert m["iou_input"] > 0.95 and m["iou_heldout"] > 0.95
    assert m["chamfer_l1"] == pytest.approx(0.01, abs=0.006) and m["fscore@0.05"] == 1.0
    assert m["normal_err_mean"] < 5.0


def test_silhouette_hull_floor(baseline_run):
    _, data = baseline_run
    for mesh in ("sphere", "torus"):
        m = _metrics(data, "silhouette_hull", mesh)["mean"]
        assert m["iou_input"] >= 0.99 and m["iou_heldout"] < m["iou_input"] - 0.05


def test_reports_are_written(baseline_run):
    out, data = baseline_run
    stored = json.loads((out / "results.json").read_text())
    assert stored["format"] == "pixal3d-evaluation" and stored["methods"].keys() == data["methods"].keys()
    assert stored["config"]["seed"] == 0 and stored["software"]["numpy"] and stored["model"] is None
    assert [m["id"] for m in stored["meshes"]] == ["sphere", "torus"]
    md = (out / "results.md").read_text()
    assert "| `sphere` |" in md and "| **mean** |" in md and "silhouette_hull: IoU in / held" in md
    sheet = Image.open(out / "sheet.png")
    assert sheet.size == (6 * 192, 18 + 6 * 192)  # 2 meshes × 3 methods, 6 tiles per row
    assert sorted(p.name for p in (out / "glb").iterdir()) == sorted(
        f"{m}_v0_{k}.glb" for m in ("sphere", "torus") for k in ("ground_truth", "sphere", "silhouette_hull")
        if k != "ground_truth")


def test_same_seed_same_numbers(two_meshes, baseline_run, tmp_path):
    _, first = baseline_run
    again = evaluate(two_meshes, tmp_path / "again", EvalConfig(**FAST, baselines=("ground_truth", "sphere", "silhouette_hull")))

    def numbers(data):
        return {name: [(r["mesh"], r["mean"]) for r in m["results"]] for name, m in data["methods"].items()}

    assert numbers(again) == numbers(first)
    other = evaluate(two_meshes, tmp_path / "other", EvalConfig(**FAST, seed=5, baselines=("sphere",)))
    assert _metrics(other, "sphere", "torus")["views"][0]["camera"] != _metrics(first, "sphere", "torus")["views"][0]["camera"]


class Shifted(Method):
    """The ground truth moved by ``delta`` along x."""

    name = "shifted"

    def __init__(self, delta):
        self.delta = delta

    def predict(self, gt, num_views=1):
        return plain_prediction(gt.vertices + [self.delta, 0, 0], gt.faces)


class Broken(Method):
    name = "broken"

    def predict(self, gt, num_views=1):
        raise RuntimeError("no surface today")


def test_shifted_prediction_and_a_failing_method(two_meshes, tmp_path):
    data = evaluate(two_meshes / "sphere.obj", tmp_path / "o", EvalConfig(**FAST),
                    methods=[Shifted(0.05), Broken()])
    m = _metrics(data, "shifted", "sphere")["mean"]
    r = 0.49
    u = np.linspace(-1, 1, 200001)
    expected = np.abs(np.sqrt(r * r + 0.05 ** 2 - 2 * r * 0.05 * u) - r).mean()  # ≈ δ/2
    assert m["chamfer_l1"] == pytest.approx(expected, rel=0.12)
    failed = _metrics(data, "broken", "sphere")
    assert failed["status"] == "failed" and "no surface today" in failed["error"]
    assert data["methods"]["broken"]["failed"] == 1


def test_one_broken_mesh_is_a_failed_row(two_meshes, tmp_path):
    root = tmp_path / "meshes"
    shutil.copytree(two_meshes, root)
    (root / "broken.glb").write_bytes(b"glTF but not really")
    data = evaluate(root, tmp_path / "o", EvalConfig(**FAST, baselines=("sphere",)))
    status = {m["id"]: m["status"] for m in data["meshes"]}
    assert status == {"broken": "failed", "sphere": "ok", "torus": "ok"}
    assert data["methods"]["sphere"]["ok"] == 2 and data["methods"]["sphere"]["failed"] == 1
    assert "| `broken` | failed:" in (tmp_path / "o" / "results.md").read_text()
    # only broken meshes: a user error
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(root / "broken.glb", only / "broken.glb")
    with pytest.raises(UserError):
        evaluate(only, tmp_path / "o2", EvalConfig(**FAST, baselines=("sphere",)))


def test_bad_inputs(two_meshes, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no mesh files"):
        evaluate(tmp_path / "empty", tmp_path / "o", EvalConfig(baselines=("sphere",)))
    with pytest.raises(UserError, match="not found"):
        evaluate(tmp_path / "missing", tmp_path / "o", EvalConfig(baselines=("sphere",)))
    with pytest.raises(UserError, match="nothing to evaluate"):
        evaluate(two_meshes, tmp_path / "o", EvalConfig(baselines=()))
    with pytest.raises(UserError, match="only read"):
        evaluate(two_meshes, two_meshes / "results", EvalConfig(baselines=("sphere",)))
    with pytest.raises(UserError, match="model folder"):
        evaluate(two_meshes, tmp_path / "o", EvalConfig(), model=tmp_path / "no_model")


def test_multi_view_protocol_with_the_visual_hull(two_meshes, tmp_path, monkeypatch):
    from pixal3d.evaluation import baselines

    monkeypatch.setattr(baselines, "VISUAL_HULL_GRID", 64)
    data = evaluate(two_meshes / "torus.obj", tmp_path / "o",
                    EvalConfig(**FAST, baselines=("silhouette_hull",), num_views=(1, 2, 4)))
    assert set(data["methods"]) == {"silhouette_hull", "silhouette_hull @2 views", "silhouette_hull @4 views"}
    f = [data["methods"][k]["mean"]["fscore@0.05"] for k in ("silhouette_hull", "silhouette_hull @2 views",
                                                             "silhouette_hull @4 views")]
    assert f[0] < f[1] < f[2]
    report = (tmp_path / "o" / "results.md").read_text()
    assert "Multi-view protocol" in report
    row = next(line for line in report.splitlines() if line.startswith("| silhouette_hull | 4 |"))
    assert float(row.split("|")[4]) == pytest.approx(data["methods"]["silhouette_hull @4 views"]["mean"]["iou_heldout"], abs=1e-3)


def test_multi_view_protocol_renders_and_scores_once(two_meshes, tmp_path, monkeypatch):
    """Each extra input camera is rendered once per mesh view (the hull at 2, 4 and 6 views shares 180°, …), and a
    method that ignores the view count (the sphere) is scored once and reported under every count."""
    from pixal3d.evaluation import baselines
    from pixal3d.evaluation import groundtruth as G
    from pixal3d.evaluation.methods import Sphere

    monkeypatch.setattr(baselines, "VISUAL_HULL_GRID", 32)
    rendered, predicted = [], []
    real_render, real_predict = G.render_camera, Sphere.predict
    monkeypatch.setattr(G, "render_camera", lambda meshes, camera, *a, **k: (rendered.append(camera.name),
                                                                              real_render(meshes, camera, *a, **k))[1])
    monkeypatch.setattr(Sphere, "predict", lambda self, gt, n=1: (predicted.append(n), real_predict(self, gt, n))[1])
    data = evaluate(two_meshes / "torus.obj", tmp_path / "o",
                    EvalConfig(**FAST, baselines=("sphere", "silhouette_hull"), num_views=(1, 2, 4, 6)))
    extra = [n for n in rendered if n.startswith("input_")]
    assert len(extra) == 7  # yaws 180 | 90, 270 | 60, 120, 240, 300 (2 held-out and the input are rendered apart)
    assert predicted == [1]
    rows = [data["methods"][k]["results"][0]["views"][0] for k in ("sphere", "sphere @2 views", "sphere @6 views")]
    assert rows[0]["metrics"] == rows[1]["metrics"] == rows[2]["metrics"] and rows[0]["metrics"]["chamfer_l1"] > 0
    assert rows[2]["info"]["same_as"] == "sphere" and rows[2]["glb"] == rows[0]["glb"]
    hull = [data["methods"][k]["mean"]["iou_heldout"] for k in ("silhouette_hull @2 views", "silhouette_hull @6 views")]
    assert hull[0] < hull[1]


def test_quick_subset_rule(tmp_path):
    items = [(p.split(".")[0], tmp_path / p) for p in sorted(R.QUICK_SUBSET + ("a.obj", "z.obj"))]
    quick = R.select_subset(items, "quick")
    assert [p.name for _, p in quick] == list(R.QUICK_SUBSET)  # the fixed list, in its order
    others = [(f"m{i}", tmp_path / f"m{i:02d}.obj") for i in range(20)]
    assert [i for i, _ in R.select_subset(others, "quick")] == [f"m{i * 20 // 8}" for i in range(8)]
    assert R.select_subset(others, "full") == others
    assert len(R.QUICK_SUBSET) == R.QUICK_SIZE == 8


def test_quantize_option_reaches_the_model(tiny_model):
    """``evaluate --quantize int8`` loads the model with int8 flows and names the method after it."""
    from pixal3d.evaluation.runner import build_methods

    with pytest.raises(UserError, match="--quantize"):
        EvalConfig(quantize="int4").validate()
    (method,) = build_methods(EvalConfig(baselines=(), quantize="int8", device="cpu"), tiny_model)
    assert method.name == "model (oracle, int8)" and method.describe()["quantize"] == "int8"
    flow = method.pipeline.models["sparse_structure_flow_model"]
    assert any("quantized" in type(m).__module__ for m in flow.modules())
