"""Choosing a model's subdivision bias on held-out assets, with the evaluation harness.

The shape decoder keeps a child voxel when its subdivision logit is positive. A small decoder run on generated
latents misses children it is unsure of, and every missed child is a hole in the surface; a bias added to the
logits (:class:`~pixal3d.models.sc_vae.FlexiDualGridVaeDecoder` ``subdivision_bias``) trades holes for extra
voxels. :func:`calibrate_subdivision_bias` scores each candidate bias with the same generation (one pipeline,
same seed) on a folder of held-out meshes — never the evaluation sets: the caller gives procedural assets of a
seed the training data does not use — and ranks them by the mean of input-view IoU, held-out-view IoU and
F-score@0.05. Every kept child costs decoding and export time, so :func:`choose_bias` takes the bias closest to 0
whose score is within ``tolerance`` of the best (differences that small are noise on a dozen assets).
:func:`write_subdivision_bias` stores it in the model folder's shape-decoder config, where every later load
picks it up.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pixal3d.errors import UserError
from pixal3d.evaluation.methods import Method, ModelMethod, Prediction
from pixal3d.evaluation.runner import EvalConfig, evaluate
from pixal3d.utils.files import write_json

#: the scores whose mean ranks the candidate biases (all ↑, in [0, 1])
CALIBRATION_SCORES = ("iou_input", "iou_heldout", "fscore@0.05")
#: the shape decoder's stage key in a model folder
SHAPE_DECODER = "shape_slat_decoder"


class BiasedModelMethod(Method):
    """A :class:`ModelMethod` whose shape decoder runs with ``bias`` (several share one loaded pipeline)."""

    kind = "model"
    multi_view = False

    def __init__(self, model: ModelMethod, bias: float):
        self.model, self.bias = model, float(bias)
        self.name = f"{model.name} bias {self.bias:+g}"

    def describe(self) -> dict:
        return {**self.model.describe(), "name": self.name, "subdivision_bias": self.bias}

    def predict(self, gt, num_views: int = 1) -> Prediction:
        self.model.pipeline.models[SHAPE_DECODER].set_subdivision_bias(self.bias)
        return self.model.predict(gt, num_views)


@dataclass
class Calibration:
    """The chosen ``bias`` and one row per candidate: ``{"bias", "score", <CALIBRATION_SCORES>, "chamfer_l1",
    "voxels", "seconds"}`` (means over the meshes; ``seconds``: the generation, export excluded)."""

    bias: float
    rows: list[dict]
    meshes: int
    tolerance: float

    def to_json(self) -> dict:
        return {"subdivision_bias": self.bias, "scores": list(CALIBRATION_SCORES), "tolerance": self.tolerance,
                "meshes": self.meshes, "candidates": self.rows}


def choose_bias(rows: list[dict], tolerance: float = 0.01) -> float:
    """The bias of ``rows`` (``{"bias", "score"}``) closest to 0 whose score is within ``tolerance`` of the best."""
    if not rows:
        raise UserError("no calibration candidates to choose from")
    best = max(row["score"] for row in rows)
    return min((row for row in rows if row["score"] >= best - tolerance), key=lambda r: (abs(r["bias"]), r["bias"]))["bias"]


def calibrate_subdivision_bias(model: str | os.PathLike, meshes: str | os.PathLike, out: str | os.PathLike,
                               biases: list[float], config: EvalConfig | None = None, tolerance: float = 0.01,
                               progress: bool = False) -> Calibration:
    """Score every bias of ``biases`` on the meshes under ``meshes`` (``pixal3d evaluate`` with ``config``,
    default: every mesh × 1 view) and choose one (:func:`choose_bias`). The report goes to ``out``."""
    if not biases:
        raise UserError("give at least one subdivision bias to try")
    config = config or EvalConfig(subset="full", views_per_mesh=1, baselines=())
    base = ModelMethod(model, config.mode, seed=config.generation_seed, steps=config.steps,
                       resolution=config.resolution, device=config.device, texture_size=config.texture_size)
    if SHAPE_DECODER not in base.pipeline.models:
        raise UserError(f"model {model} has no {SHAPE_DECODER}")
    methods = [BiasedModelMethod(base, b) for b in dict.fromkeys(float(b) for b in biases)]
    results = evaluate(meshes, out, config, methods=methods, progress=progress)
    rows = []
    for method in methods:
        entry = results["methods"][method.name]
        if not entry["ok"]:
            raise UserError(f"calibration: every mesh failed with bias {method.bias:+g}")
        mean = entry["mean"]
        infos = [view["info"] for result in entry["results"] for view in result["views"]]
        rows.append({"bias": method.bias, "score": sum(mean[k] for k in CALIBRATION_SCORES) / len(CALIBRATION_SCORES),
                     **{k: mean[k] for k in CALIBRATION_SCORES}, "chamfer_l1": mean["chamfer_l1"],
                     "voxels": sum(i["voxels"] for i in infos) / len(infos),
                     "seconds": sum(sum(i["timings"].values()) for i in infos) / len(infos)})
    return Calibration(choose_bias(rows, tolerance), rows, int(min(results["methods"][m.name]["ok"] for m in methods)),
                       tolerance)


def write_subdivision_bias(model: str | os.PathLike, bias: float) -> Path:
    """Store ``bias`` as the ``subdivision_bias`` argument of the model folder's shape decoder (its checkpoint
    JSON, written atomically); returns that file."""
    from pixal3d.models.pipeline_folder import open_pipeline_folder

    stage = open_pipeline_folder(model).stage(SHAPE_DECODER)
    if not stage.found:
        raise UserError(stage.missing_message())
    path = stage.stem.with_suffix(".json")
    spec = json.loads(path.read_text())
    if spec.get("name") != "FlexiDualGridVaeDecoder":
        raise UserError(f"{path} is a {spec.get('name')}, not a FlexiDualGridVaeDecoder")
    spec.setdefault("args", {})["subdivision_bias"] = float(bias)
    write_json(path, spec)
    return path
