"""``pixal3d evaluate``: the fidelity benchmark loop (ground truth → methods → metrics → reports).

:func:`evaluate` is the Python API; it returns the dictionary written to ``OUT/results.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixal3d.errors import UserError
from pixal3d.evaluation import metrics as M
from pixal3d.evaluation import report
from pixal3d.evaluation.groundtruth import (
    GroundTruthView,
    eval_views,
    ground_truth_view,
    held_out_yaws,
    load_source,
    render_camera,
    up_axes,
)
from pixal3d.evaluation.methods import BASELINES, MODES, Method, Prediction, make_baseline

FORMAT = "pixal3d-evaluation"
VERSION = 1
#: ``--subset quick``: these files, in this order, where present (textured: Duck, Spot, WaterBottle, YCB banana;
#: flat colours and thin struts: the Toys4K airplane; geometry only: penguin, the GSO chicken scan, the thin sword).
#: In a folder holding none of them, 8 files evenly spaced in sorted order (indices ⌊i·n/8⌋).
QUICK_SUBSET = ("khronos_Duck.glb", "keenan_spot.glb", "khronos_WaterBottle.glb", "ycb_banana.glb",
                "toys4k_airplane_010.glb", "oded_penguin.obj", "gso_CHICKEN_NESTING.obj", "oded_sword.obj")
QUICK_SIZE = 8
#: the default mesh folder (``../shared/evalsets/meshes`` beside the checkout)
DEFAULT_MESHES = Path(__file__).resolve().parents[2].parent / "shared" / "evalsets" / "meshes"
SUBSETS = ("quick", "full")


@dataclass
class EvalConfig:
    """Options of one evaluation (the CLI flags of ``pixal3d evaluate``)."""

    views_per_mesh: int = 4
    seed: int = 0
    subset: str = "full"
    baselines: tuple[str, ...] | None = None  # None: both floors beside a model, nothing extra otherwise
    mode: str = "oracle"
    num_views: tuple[int, ...] = (1,)
    image_size: int = 512
    held_out: int = 4
    points: int = M.POINTS
    up: str | None = None  # None: per file from a manifest.json beside the meshes, else +y
    generation_seed: int = 42
    steps: int | None = None
    resolution: int | None = None
    device: str | None = None
    quantize: str = "none"  # "int8": the flows' Linear layers as dynamic int8 (CPU only, opt-in)
    texture_size: int = 1024
    silhouette: bool | None = None  # the model's silhouette constraint; None: its folder's setting
    sheet: bool = True

    def validate(self) -> None:
        if not 1 <= self.views_per_mesh <= 64:
            raise UserError(f"--views-per-mesh must be in 1..64, got {self.views_per_mesh}")
        if self.seed < 0:
            raise UserError(f"--seed must be non-negative, got {self.seed}")
        if self.subset not in SUBSETS:
            raise UserError(f"--subset must be quick or full, got {self.subset!r}")
        if self.mode not in MODES:
            raise UserError(f"--mode must be oracle or heuristic, got {self.mode!r}")
        for name in self.baselines or ():
            if name not in BASELINES:
                raise UserError(f"unknown baseline {name!r} (use one of {', '.join(BASELINES)})")
        if not self.num_views or any(not 1 <= n <= 16 for n in self.num_views):
            raise UserError(f"--num-views must list view counts in 1..16, got {list(self.num_views)}")
        if not 32 <= self.image_size <= 2048:
            raise UserError(f"--image-size must be in 32..2048, got {self.image_size}")
        if not 0 <= self.held_out <= 16:
            raise UserError(f"--held-out must be in 0..16, got {self.held_out}")
        if not 100 <= self.points <= 10_000_000:
            raise UserError(f"--points must be in 100..10000000, got {self.points}")
        if self.quantize not in ("none", "int8"):
            raise UserError(f"--quantize must be none or int8, got {self.quantize!r}")
        if self.up is not None and self.up not in ("+x", "-x", "+y", "-y", "+z", "-z"):
            raise UserError(f"--up must be one of +x -x +y -y +z -z, got {self.up!r}")

    @property
    def views_used(self) -> int:
        return 1 if self.subset == "quick" else self.views_per_mesh


# --------------------------------------------------------------------------------------------------
# meshes


def find_meshes(root: str | Path) -> list[tuple[str, Path]]:
    """``(id, path)`` of every mesh file under ``root`` (a folder, searched recursively, or one file)."""
    from pixal3d.data.build import asset_ids, find_assets
    from pixal3d.mesh.io import MESH_SUFFIXES

    root = Path(root)
    if root.is_file():
        if root.suffix.lower() not in MESH_SUFFIXES:
            raise UserError(f"unsupported mesh format {root.suffix!r} (use one of {', '.join(MESH_SUFFIXES)})")
        return [(re.sub(r"[^A-Za-z0-9._-]", "_", root.stem), root)]
    if not root.is_dir():
        raise UserError(f"mesh folder not found: {root}")
    paths = find_assets(root)
    if not paths:
        raise UserError(f"no mesh files ({' '.join(MESH_SUFFIXES)}) under {root}")
    return list(zip(asset_ids(root, paths), paths))


def select_subset(items: list[tuple[str, Path]], subset: str) -> list[tuple[str, Path]]:
    """``full``: everything; ``quick``: :data:`QUICK_SUBSET` (module constant's rule), never chosen by score."""
    if subset == "full":
        return items
    by_name: dict[str, tuple[str, Path]] = {}
    for item in items:
        by_name.setdefault(item[1].name, item)
    chosen = [by_name[name] for name in QUICK_SUBSET if name in by_name]
    if chosen:
        return chosen
    n = len(items)
    return [items[i * n // QUICK_SIZE] for i in range(min(QUICK_SIZE, n))]


# --------------------------------------------------------------------------------------------------
# scoring


def score(gt: GroundTruthView, pred: Prediction, points: int, gt_points: np.ndarray | None = None
          ) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Every metric of one prediction against one ground-truth view → ``(metrics, prediction renders)``."""
    colour = gt.source.textured
    passes = ("mask", "normal", "depth") + (("shaded", "albedo") if colour else ())
    renders = {"input": render_camera(pred.render_meshes, gt.input, gt.size, passes)}
    renders.update({c.name: render_camera(pred.render_meshes, c, gt.size) for c in gt.held_out})
    image = M.image_scores(gt.renders["input"], renders["input"], colour=colour)
    out: dict[str, Any] = {"iou_input": image.pop("iou"), **image}
    held = [{"camera": c.name, **M.held_out_scores(gt.renders[c.name], renders[c.name])} for c in gt.held_out]
    for key in ("iou", "precision", "recall"):
        out[f"{key}_heldout"] = float(np.mean([h[key] for h in held])) if held else None
    errs = [h["normal_err_mean"] for h in held if h["normal_err_mean"] is not None]
    out["normal_err_heldout"] = float(np.mean(errs)) if errs else None
    if gt_points is None:
        gt_points = M.sample_surface(gt.vertices, gt.faces, points)
    pred_points = M.sample_surface(pred.vertices, pred.faces, points)
    out.update(M.surface_scores(pred_points, gt_points))
    gt_vis = M.visible(gt_points, gt.input, gt.renders["input"]["depth"])
    pred_vis = M.visible(pred_points, gt.input, renders["input"]["depth"]) if len(pred_points) else np.zeros(0, bool)
    out.update({f"{k}_visible": v for k, v in M.surface_scores(pred_points[pred_vis], gt_points[gt_vis]).items()})
    out["points"] = {"gt": int(len(gt_points)), "pred": int(len(pred_points)), "gt_visible": int(gt_vis.sum()),
                     "pred_visible": int(pred_vis.sum())}
    out["heldout"] = held
    return out, renders


def _numeric_keys(rows: list[dict]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        for k, v in row.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys:
                keys.append(k)
    return keys


def aggregate(rows: list[dict], how=np.mean) -> dict[str, float | None]:
    """Per-key ``how`` (mean or median) of the numeric entries of ``rows``, ignoring None."""
    out = {}
    for key in _numeric_keys(rows):
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        out[key] = float(how(values)) if values else None
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


# --------------------------------------------------------------------------------------------------
# driver


def build_methods(config: EvalConfig, model: str | Path | None) -> list[Method]:
    """The model (when given) and the baselines, in table order. Loads the model (:class:`UserError`
    when its folder is missing or incomplete)."""
    methods: list[Method] = []
    if model is not None and config.mode != "oracle" and max(config.num_views) > 1:
        raise UserError("the multi-view protocol needs the true cameras: use --mode oracle with --num-views > 1")
    if model is not None:
        from pixal3d.evaluation.methods import ModelMethod

        methods.append(ModelMethod(model, config.mode, seed=config.generation_seed, steps=config.steps,
                                   resolution=config.resolution, device=config.device, texture_size=config.texture_size,
                                   quantize=config.quantize, silhouette=config.silhouette))
    names = config.baselines if config.baselines is not None else (("sphere", "silhouette_hull") if model is not None else ())
    methods += [make_baseline(n) for n in dict.fromkeys(names)]
    if not methods:
        raise UserError("nothing to evaluate: pass --model FOLDER and/or --baseline NAME")
    for n in config.num_views:
        for m in methods:
            if n > 1 and not m.multi_view:
                raise UserError(f"{m.name} takes one view only (--num-views {n})")
    return methods


def evaluate(meshes: str | Path | None, out: str | Path, config: EvalConfig | None = None,
             model: str | Path | None = None, progress: bool = False, methods: list[Method] | None = None) -> dict:
    """Run the benchmark on every mesh under ``meshes`` (default :data:`DEFAULT_MESHES`) and write
    ``out/results.json``, ``out/results.md``, ``out/sheet.png`` and ``out/glb/*.glb``.

    ``model``: a model folder (the pipeline is loaded once), or None for baselines only. ``methods``
    overrides the method list (tests). Returns the results dictionary. A mesh that cannot be read or
    scored is recorded as failed; :class:`UserError` when there is nothing to evaluate or every mesh
    failed.
    """
    config = config or EvalConfig()
    config.validate()
    started = time.perf_counter()
    root = Path(meshes) if meshes is not None else DEFAULT_MESHES
    items = select_subset(find_meshes(root), config.subset)
    out = Path(out)
    folder = root if root.is_dir() else root.parent
    if out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
        raise UserError(f"output folder {out} is inside the mesh folder {folder}: evaluation meshes are only read")
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder")
    methods = methods if methods is not None else build_methods(config, model)
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        (out / "glb").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {out}: {exc}") from exc
    try:
        return _run(items, out, config, methods, root, folder, started, progress)
    except BaseException:  # nothing written yet: leave no folder behind that this call created
        for path in [out / "glb", *created]:
            with contextlib.suppress(OSError):
                path.rmdir()  # only empty folders go
        raise


def _run(items, out: Path, config: EvalConfig, methods: list[Method], root: Path, folder: Path, started: float,
         progress: bool) -> dict:
    """The measuring loop and the report of :func:`evaluate` (its output folder exists)."""
    ups = up_axes(folder)
    keys = [(m, n) for n in config.num_views for m in methods]
    name_of = {(m.name, n): m.name if n == 1 else f"{m.name} @{n} views" for m, n in keys}
    results: dict[str, dict] = {name_of[(m.name, n)]: {**m.describe(), "method": m.name, "num_views": n, "results": []}
                                for m, n in keys}
    mesh_info: list[dict] = []
    rows: list[list] = []
    held_names: list[str] = []

    from tqdm import tqdm

    bar = tqdm(items, desc="evaluate", unit="mesh", disable=not progress)
    for mesh_id, path in bar:
        bar.set_postfix_str(mesh_id[:30])
        up = config.up or ups.get(path.name, "+y")
        try:
            source = load_source(path, mesh_id, up)
        except Exception as exc:  # one broken mesh is reported, not fatal
            error = _one_line(exc)
            mesh_info.append({"id": mesh_id, "file": path.name, "up": up, "status": "failed", "error": error})
            for entry in results.values():
                entry["results"].append({"mesh": mesh_id, "status": "failed", "error": error, "views": [], "mean": {}})
            continue
        mesh_info.append({**source.info(), "status": "ok", "error": None})
        per_method: dict[str, list] = {name: [] for name in results}
        errors: dict[str, str] = {}
        for k, params in enumerate(eval_views(source.sha256, config.seed, config.views_used)):
            try:
                gt = ground_truth_view(source, k, params, config.image_size, config.held_out)
                gt_points = M.sample_surface(gt.vertices, gt.faces, config.points)
            except Exception as exc:
                for name in results:
                    errors.setdefault(name, f"view {k}: {_one_line(exc)}")
                continue
            held_names = [c.name for c in gt.held_out]
            scored: dict[str, str] = {}  # view-independent method → the row name that scored it on this view
            for method, n in keys:
                name = name_of[(method.name, n)]
                if method.name in scored:  # the same prediction at every view count: its row, not a rerun
                    first = per_method[scored[method.name]][-1]
                    per_method[name].append({**first, "info": {**first["info"], "same_as": scored[method.name]},
                                             "seconds": 0.0})
                    continue
                bar.set_postfix_str(f"{mesh_id[:24]} v{k} {name}")
                t0 = time.perf_counter()
                try:
                    pred = method.predict(gt, n)
                    metrics, renders = score(gt, pred, config.points, gt_points)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # this method failed on this view only
                    errors.setdefault(name, f"view {k}: {_one_line(exc)}")
                    continue
                glb = out / "glb" / f"{mesh_id}_v{k}_{_slug(name)}.glb"
                glb_entry = None
                if pred.write_glb is not None:
                    try:
                        pred.write_glb(glb)
                        glb_entry = f"glb/{glb.name}"
                    except Exception as exc:  # the metrics stand; only the file is missing
                        pred.info["glb_error"] = _one_line(exc)
                per_method[name].append({"view": k, "camera": gt.camera_info(), "metrics": metrics,
                                         "info": pred.info, "glb": glb_entry,
                                         "seconds": round(time.perf_counter() - t0, 2)})
                if method.view_independent:
                    scored[method.name] = name
                if config.sheet and k == 0 and n == 1:
                    shown = [held_names[0], held_names[len(held_names) // 2]] if len(held_names) > 1 else held_names
                    rows.append(report.sheet_row(f"{mesh_id} | {name}", gt.renders, renders, shown))
        for name, views in per_method.items():
            mean = aggregate([v["metrics"] for v in views])
            results[name]["results"].append({"mesh": mesh_id, "status": "ok" if views else "failed",
                                             "error": errors.get(name), "views": views, "mean": mean})
    bar.close()
    if not any(m["status"] == "ok" for m in mesh_info):
        first = mesh_info[0]["error"] if mesh_info else "no meshes"
        raise UserError(f"every mesh failed ({first})" if len(mesh_info) > 1 else str(first))
    for entry in results.values():
        ok = [r for r in entry["results"] if r["status"] == "ok"]
        entry["ok"], entry["failed"] = len(ok), len(entry["results"]) - len(ok)
        entry["mean"] = aggregate([r["mean"] for r in ok])
        entry["median"] = aggregate([r["mean"] for r in ok], np.median)
    model_info = next((m.describe() for m in methods if m.kind == "model"), None)
    data = {
        "format": FORMAT,
        "version": VERSION,
        "config": {**dataclasses.asdict(config), "meshes": str(root), "views_used": config.views_used,
                   "held_out_yaw_deg": list(held_out_yaws(config.held_out))},
        "protocol": _protocol(),
        "model": model_info,
        "software": report.software_versions(),
        "meshes": mesh_info,
        "methods": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    report.write_results_json(out / "results.json", data)
    from pixal3d.utils.files import atomic_output

    with atomic_output(out / "results.md") as tmp:
        tmp.write_text(report.markdown(report.clean_json(data)))
    if config.sheet and rows:
        header = ["input", "GT normals", "predicted normals", "error (0-60°; blue missed, red extra)"] + \
            [f"held-out {n.split('_')[-1]}° (GT outline)" for n in (held_names[:1] + held_names[len(held_names) // 2:][:1])]
        with atomic_output(out / "sheet.png") as tmp:
            report.sheet(rows, header).save(tmp, format="PNG")
    return report.clean_json(data)


def _protocol() -> dict:
    from pixal3d.data import build as B
    from pixal3d.evaluation import baselines as BL
    from pixal3d.evaluation import groundtruth as G

    return {"fov_range": list(B.FOV_RANGE), "elevation_range_deg": list(B.ELEVATION_RANGE_DEG),
            "distance_factor": list(B.DISTANCE_FACTOR), "fill": B.FILL, "supersample": G.SUPERSAMPLE,
            "held_out_supersample": G.HELD_OUT_SUPERSAMPLE,
            "neutral_material": {"base": G.NEUTRAL_MATERIAL[0][:3].tolist(), "metallic": G.NEUTRAL_MATERIAL[1],
                                 "roughness": G.NEUTRAL_MATERIAL[2]},
            "taus": list(M.TAUS), "sample_seed": M.SAMPLE_SEED, "visible_tolerance": M.VISIBLE_TOLERANCE,
            "psnr_cap": M.PSNR_CAP, "sphere_radius": 0.5, "visual_hull_grid": BL.VISUAL_HULL_GRID}


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    return (text.splitlines() or [type(exc).__name__])[0][:300]
