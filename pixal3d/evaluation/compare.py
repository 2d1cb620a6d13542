"""Paired comparison of two ``pixal3d evaluate`` runs: is method A better than method B, or within noise?

Two runs on the same protocol (meshes, cameras, render size, held-out views, surface samples) score the same
meshes, so the fair test pairs them: per mesh the difference A − B of each metric, its mean over the meshes both
completed, how many meshes each side wins, and a percentile bootstrap confidence interval of the mean difference
(meshes resampled with replacement). A side is *better* on a metric only when the interval excludes zero in its
favour; otherwise the two *tie* within the noise of this mesh set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pixal3d.errors import UserError
from pixal3d.utils.files import read_json

#: metrics compared by default: the evaluation's headline figures
HEADLINE_METRICS = ("iou_input", "iou_heldout", "fscore@0.05", "chamfer_l1", "normal_psnr")
#: metrics where smaller is better (every other metric: larger is better)
LOWER_IS_BETTER_PREFIXES = ("chamfer_", "normal_err_")
#: config entries that must agree for two runs to score the same thing
PROTOCOL_KEYS = ("subset", "views_used", "seed", "mode", "image_size", "held_out", "points", "up")


@dataclass(frozen=True)
class MetricComparison:
    """One metric of a paired comparison. ``difference`` and its interval are A − B in the metric's units."""

    metric: str
    higher_is_better: bool
    meshes: int
    mean_a: float
    mean_b: float
    difference: float
    interval: tuple[float, float]
    wins_a: int
    wins_b: int
    verdict: str  # "A", "B" or "tie"


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (IoU, F-score, PSNR, SSIM, normal percentages)."""
    return not metric.startswith(LOWER_IS_BETTER_PREFIXES)


def load_results(path: str | Path) -> dict:
    """The ``results.json`` of an evaluation run, given the file or its output folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    data = read_json(path, "evaluation results")
    if not isinstance(data, dict) or data.get("format") != "pixal3d-evaluation" or "methods" not in data:
        raise UserError(f"{path} is not the results.json of a mesh evaluation (pixal3d evaluate)")
    return data


def pick_method(data: dict, name: str | None, label: str) -> tuple[str, dict]:
    """The method ``name`` of a run, or its only single-view model method when ``name`` is None."""
    methods = data["methods"]
    if name is not None:
        if name not in methods:
            raise UserError(f"run {label} has no method {name!r} (it has: {', '.join(methods)})")
        return name, methods[name]
    models = [k for k, m in methods.items() if m.get("kind") == "model" and m.get("num_views", 1) == 1]
    if len(models) != 1:
        raise UserError(f"run {label} has {len(models)} single-view model methods: pass --method-{label.lower()} "
                        f"(one of: {', '.join(methods)})")
    return models[0], methods[models[0]]


def check_same_protocol(a: dict, b: dict) -> None:
    """Raise :class:`UserError` unless both runs used the same meshes and measurement protocol."""
    for key in PROTOCOL_KEYS:
        if a["config"].get(key) != b["config"].get(key):
            raise UserError(f"the runs differ in {key} ({a['config'].get(key)!r} vs {b['config'].get(key)!r}): "
                            "only runs of the same protocol can be paired")


def per_mesh(method: dict, metric: str) -> dict[str, float]:
    """``{mesh id: value}`` of ``metric`` over the meshes the method completed (missing values left out)."""
    values = {}
    for entry in method["results"]:
        value = (entry.get("mean") or {}).get(metric) if entry.get("status") == "ok" else None
        if value is not None:
            values[entry["mesh"]] = float(value)
    return values


def bootstrap_interval(differences: np.ndarray, resamples: int, seed: int,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``differences`` (float64 ``[n]``), meshes resampled with
    replacement ``resamples`` times from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(resamples, len(differences)))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def compare_metric(a: dict[str, float], b: dict[str, float], metric: str, resamples: int = 10_000,
                   seed: int = 0) -> MetricComparison:
    """Pair ``a`` and ``b`` (``{mesh: value}``) on the meshes both have and compare their means."""
    meshes = sorted(set(a) & set(b))
    if not meshes:
        raise UserError(f"no mesh has {metric} in both runs")
    va = np.array([a[m] for m in meshes], dtype=np.float64)
    vb = np.array([b[m] for m in meshes], dtype=np.float64)
    better = higher_is_better(metric)
    difference = va - vb
    low, high = bootstrap_interval(difference, resamples, seed)
    gain = difference if better else -difference
    gain_low, gain_high = (low, high) if better else (-high, -low)
    verdict = "A" if gain_low > 0 else "B" if gain_high < 0 else "tie"
    return MetricComparison(metric=metric, higher_is_better=better, meshes=len(meshes), mean_a=float(va.mean()),
                            mean_b=float(vb.mean()), difference=float(difference.mean()), interval=(low, high),
                            wins_a=int((gain > 0).sum()), wins_b=int((gain < 0).sum()), verdict=verdict)


def compare_runs(a: dict, b: dict, method_a: str | None = None, method_b: str | None = None,
                 metrics: tuple[str, ...] = HEADLINE_METRICS, resamples: int = 10_000,
                 seed: int = 0) -> dict:
    """Compare method A of run ``a`` with method B of run ``b`` (parsed ``results.json``) on ``metrics``.
    Returns ``{"a", "b"}`` (method names), ``{"a_model", "b_model"}`` (model folders, None for baselines only),
    ``"resamples"``, ``"seed"`` and ``"metrics"``: one :class:`MetricComparison` as a dict per metric."""
    check_same_protocol(a, b)
    name_a, ma = pick_method(a, method_a, "A")
    name_b, mb = pick_method(b, method_b, "B")
    rows = [compare_metric(per_mesh(ma, m), per_mesh(mb, m), m, resamples, seed) for m in metrics]
    return {"a": name_a, "b": name_b, "a_model": (a.get("model") or {}).get("folder"),
            "b_model": (b.get("model") or {}).get("folder"), "resamples": resamples, "seed": seed,
            "metrics": [asdict(row) for row in rows]}


def markdown(comparison: dict) -> str:
    """The comparison as a markdown table, one row per metric."""
    lines = [f"A = {comparison['a']} (`{comparison['a_model']}`), B = {comparison['b']} (`{comparison['b_model']}`); "
             f"95 % bootstrap interval of the mean paired difference over meshes ({comparison['resamples']} "
             f"resamples, seed {comparison['seed']})", "",
             "| metric | better | meshes | A | B | A − B | 95 % interval | wins A / B | verdict |",
             "|---|---|---:|---:|---:|---:|---|---:|---|"]
    for row in comparison["metrics"]:
        low, high = row["interval"]
        verdict = {"A": "**A better**", "B": "**B better**", "tie": "tie (within noise)"}[row["verdict"]]
        lines.append(f"| {row['metric']} | {'higher' if row['higher_is_better'] else 'lower'} | {row['meshes']} | "
                     f"{row['mean_a']:.4g} | {row['mean_b']:.4g} | {row['difference']:+.4f} | "
                     f"[{low:+.4f}, {high:+.4f}] | {row['wins_a']} / {row['wins_b']} | {verdict} |")
    return "\n".join(lines) + "\n"
