"""Paired comparison of two evaluation runs: exact differences, direction of each metric, bootstrap interval,
protocol and method checks."""

from __future__ import annotations

import numpy as np
import pytest

from pixal3d.errors import UserError
from pixal3d.evaluation.compare import (bootstrap_interval, compare_metric, compare_runs, higher_is_better,
                                        markdown, pick_method)

CONFIG = {"subset": "quick", "views_used": 1, "seed": 0, "mode": "oracle", "image_size": 512, "held_out": 4,
          "points": 50000, "up": None}


def run(values: dict[str, dict[str, float]], name="model (oracle)", failed=(), **config) -> dict:
    """A minimal results.json: one single-view model method with per-mesh means ``values[mesh][metric]``."""
    results = [{"mesh": mesh, "status": "failed" if mesh in failed else "ok", "mean": metrics}
               for mesh, metrics in values.items()]
    return {"format": "pixal3d-evaluation", "config": {**CONFIG, **config}, "model": {"folder": name},
            "methods": {name: {"kind": "model", "num_views": 1, "results": results},
                        "sphere": {"kind": "baseline", "num_views": 1, "results": results}}}


def test_metric_directions():
    assert higher_is_better("iou_heldout") and higher_is_better("fscore@0.05") and higher_is_better("normal_psnr")
    assert not higher_is_better("chamfer_l1") and not higher_is_better("normal_err_mean")


def test_constant_gain_is_exact_and_significant():
    a = {f"m{i}": 0.5 + 0.01 * i for i in range(10)}
    b = {k: v - 0.1 for k, v in a.items()}
    row = compare_metric(a, b, "iou_heldout", resamples=500)
    assert row.difference == pytest.approx(0.1)
    assert row.interval == pytest.approx((0.1, 0.1))
    assert (row.wins_a, row.wins_b, row.verdict, row.meshes) == (10, 0, "A", 10)
    # Chamfer: lower is better, so the same numbers favour B
    row = compare_metric(a, b, "chamfer_l1", resamples=500)
    assert (row.wins_a, row.wins_b, row.verdict) == (0, 10, "B")
    assert row.difference == pytest.approx(0.1)


def test_symmetric_differences_tie():
    a = {f"m{i}": 0.5 for i in range(8)}
    b = {f"m{i}": 0.5 + (0.1 if i % 2 else -0.1) for i in range(8)}
    row = compare_metric(a, b, "fscore@0.05", resamples=2000)
    assert row.difference == pytest.approx(0.0)
    assert row.interval[0] < 0 < row.interval[1]
    assert (row.wins_a, row.wins_b, row.verdict) == (4, 4, "tie")


def test_bootstrap_interval_matches_normal_theory():
    rng = np.random.default_rng(1)
    d = rng.normal(0.3, 1.0, size=400)
    low, high = bootstrap_interval(d, 4000, seed=0)
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    assert low == pytest.approx(d.mean() - half, abs=0.02)
    assert high == pytest.approx(d.mean() + half, abs=0.02)
    assert bootstrap_interval(d, 4000, seed=0) == (low, high)  # seeded: reproducible


def test_runs_pair_on_common_meshes_only():
    a = run({"x": {"iou_input": 0.9}, "y": {"iou_input": 0.8}, "z": {"iou_input": 0.1}}, failed=("z",))
    b = run({"x": {"iou_input": 0.7}, "y": {"iou_input": 0.8}, "w": {"iou_input": 0.0}}, name="other")
    out = compare_runs(a, b, metrics=("iou_input",), resamples=200)
    row = out["metrics"][0]
    assert (out["a"], out["b"], row["meshes"]) == ("model (oracle)", "other", 2)
    assert row["mean_a"] == pytest.approx(0.85) and row["mean_b"] == pytest.approx(0.75)
    assert (row["wins_a"], row["wins_b"]) == (1, 0)
    assert "| iou_input | higher | 2 |" in markdown(out)


def test_bad_pairs_are_user_errors():
    a = run({"x": {"iou_input": 0.9}})
    with pytest.raises(UserError, match="differ in seed"):
        compare_runs(a, run({"x": {"iou_input": 0.9}}, seed=1))
    with pytest.raises(UserError, match="no method 'nope'"):
        pick_method(a, "nope", "A")
    with pytest.raises(UserError, match="no mesh has chamfer_l1"):
        compare_runs(a, a, metrics=("chamfer_l1",))
    both = run({"x": {"iou_input": 0.9}})
    both["methods"]["model@2"] = {**both["methods"]["model (oracle)"]}
    with pytest.raises(UserError, match="2 single-view model methods"):
        pick_method(both, None, "A")
    assert pick_method(both, "sphere", "A")[0] == "sphere"
