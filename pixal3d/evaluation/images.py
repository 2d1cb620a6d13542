"""Real photos without ground truth: how well a model reproduces each input silhouette.

For every image of a folder (default: the evaluation set's object photos, ``../shared/evalsets/images``) the
pipeline runs as a user runs it — its own cut-out, the official crop, the default (or MoGe-2) camera — and the raw
generated surface (before the silhouette constraint) is rendered through that camera at the crop's size. The score
is its mask IoU against the cut-out (alpha ≥ 0.5), with precision and recall: the input-view IoU of the mesh
benchmark, on real pictures. ``iou_held`` is the IoU of the same generation with the silhouette constraint
(:mod:`pixal3d.core.silhouette`: structure and decoder levels completed, spill removed), so what it misses is recall. A photo the
pipeline cannot use (nothing found by the background removal) is recorded as failed. No image here is ever a
training input (:mod:`pixal3d.data.overlap` refuses the evaluation sets).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from pixal3d.errors import UserError
from pixal3d.evaluation import report
from pixal3d.evaluation.groundtruth import input_camera, render_camera
from pixal3d.evaluation.methods import folder_hash, plain_prediction
from pixal3d.evaluation.metrics import mask_scores
from pixal3d.utils.files import atomic_output

#: the default photo folder (``../shared/evalsets/images`` beside the checkout)
DEFAULT_IMAGES = Path(__file__).resolve().parents[2].parent / "shared" / "evalsets" / "images"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: side of the renders the masks are compared at (the crop is resized to it)
SCORE_SIZE = 256
SCORES = ("iou", "precision", "recall", "iou_held")


def find_images(root: str | Path) -> list[Path]:
    """The images of folder ``root`` (or the one file ``root``), sorted by name; :class:`UserError` when none."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    found = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    return found


def _drawn(asset, size: int, passes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``passes`` of ``asset``'s surface rendered through its input camera at ``size``²."""
    from pixal3d.export.glb import asset_surface

    vertices, faces = asset_surface(asset)
    cam = asset.camera
    camera = input_camera(cam.fov_x, cam.distance * cam.mesh_scale)
    return render_camera(plain_prediction(vertices, faces).render_meshes, camera, size, passes)


def evaluate_images(model: str | Path, images: str | Path | None, out: str | Path, seed: int = 42,
                    steps: int | None = None, device: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Score ``model`` on every photo of ``images`` (module docstring); write ``out/results.json``,
    ``out/results.md`` and ``out/sheet.png`` (input | raw surface through the camera, the input silhouette in red).
    Returns the results dictionary."""
    from PIL import Image
    from tqdm import tqdm

    from pixal3d.pipelines.pixal3d import GenerationOptions, Pixal3DPipeline, prepare_image

    started = time.perf_counter()
    paths = find_images(images if images is not None else DEFAULT_IMAGES)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder")
    pipeline = Pixal3DPipeline.from_pretrained(model, device=device)
    rows, tiles = [], []
    for path in tqdm(paths, desc="evaluate images", unit="image", disable=not progress):
        t0 = time.perf_counter()
        try:
            prepared = prepare_image(path, device=pipeline.device)
            result = pipeline.generate(prepared, GenerationOptions(seed=seed, steps=steps, silhouette=False),
                                       progress=False)
            held = pipeline.generate(prepared, GenerationOptions(seed=seed, steps=steps, camera=result.camera,
                                                                 silhouette=True), progress=False)
        except UserError as exc:
            rows.append({"image": path.name, "status": "failed", "error": str(exc)})
            continue
        mask = np.asarray(Image.fromarray(prepared.mask).resize((SCORE_SIZE, SCORE_SIZE), Image.Resampling.NEAREST))
        raw = _drawn(result.asset, SCORE_SIZE, ("mask", "shaded"))
        scores = mask_scores(mask, raw["mask"])
        scores["iou_held"] = mask_scores(mask, _drawn(held.asset, SCORE_SIZE, ("mask",))["mask"])["iou"]
        rows.append({"image": path.name, "status": "ok", "camera": result.info.get("camera"),
                     "background": result.info.get("background"), **scores,
                     "seconds": round(time.perf_counter() - t0, 2)})
        if len(tiles) < 24:
            picture = np.asarray(prepared.image.resize((SCORE_SIZE, SCORE_SIZE)))
            tiles.append(report.image_row(path.name, picture, raw["shaded"], mask))
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        raise UserError(f"every image failed ({rows[0]['error']})")
    data = {"format": "pixal3d-image-eval", "version": 1, "images": str(Path(images or DEFAULT_IMAGES)),
            "model": {"folder": str(model), "sha256": folder_hash(model), "seed": seed, "steps": steps},
            "software": report.software_versions(), "rows": rows,
            "mean": {k: float(np.mean([r[k] for r in ok])) for k in SCORES},
            "median": {k: float(np.median([r[k] for r in ok])) for k in SCORES},
            "ok": len(ok), "failed": len(rows) - len(ok), "seconds": round(time.perf_counter() - started, 1)}
    out.mkdir(parents=True, exist_ok=True)
    report.write_results_json(out / "results.json", data)
    with atomic_output(out / "results.md") as tmp:
        tmp.write_text(_markdown(data))
    sheet = report.sheet(tiles, ["input (crop)", "model, raw surface"])
    with atomic_output(out / "sheet.png") as tmp:
        sheet.save(tmp, format="PNG")
    return data


def _markdown(data: dict) -> str:
    lines = ["# Image evaluation (input silhouettes of real photos)", "",
             f"* images: `{data['images']}` — {data['ok']} ok, {data['failed']} failed; {data['seconds']} s",
             f"* model: `{data['model']['folder']}` (sha256 `{data['model']['sha256'][:16]}…`), seed {data['model']['seed']}",
             "* IoU / precision / recall: the raw surface through the pipeline's camera against the cut-out; "
             "held: IoU after the silhouette constraint", "",
             "| image | IoU | precision | recall | IoU held |", "|---|---:|---:|---:|---:|"]
    for r in data["rows"]:
        if r["status"] != "ok":
            lines.append(f"| `{r['image']}` | failed: {r['error']} | | | |")
            continue
        lines.append(f"| `{r['image']}` | {r['iou']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['iou_held']:.3f} |")
    m, md = data["mean"], data["median"]
    lines.append("| **mean (median)** | " + " | ".join(f"**{m[k]:.3f}** ({md[k]:.3f})" for k in SCORES) + " |")
    return "\n".join(lines) + "\n"
