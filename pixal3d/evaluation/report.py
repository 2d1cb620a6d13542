"""Outputs of ``pixal3d evaluate``: ``results.json``, ``results.md`` and ``sheet.png``."""

from __future__ import annotations

import math
import platform
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pixal3d.utils.files import write_json

#: headline columns of the per-mesh table: (header, input-side key, other-side key, format)
HEADLINE = (
    ("IoU in / held", "iou_input", "iou_heldout", "{:.3f}"),
    ("normal° in / held", "normal_err_mean", "normal_err_heldout", "{:.1f}"),
    ("F@0.05 full / vis", "fscore@0.05", "fscore@0.05_visible", "{:.3f}"),
    ("CD-L1 full / vis", "chamfer_l1", "chamfer_l1_visible", "{:.4f}"),
)
#: every averaged metric, in table order
METRIC_ORDER = (
    "iou_input", "normal_psnr", "normal_ssim", "normal_err_mean", "normal_err_median", "normal_pct_11_25",
    "normal_pct_22_5", "normal_pct_30", "iou_heldout", "precision_heldout", "recall_heldout",
    "normal_err_heldout",
    "chamfer_l1", "chamfer_l2", "fscore@0.05", "fscore@0.02", "fscore@0.01",
    "chamfer_l1_visible", "chamfer_l2_visible", "fscore@0.05_visible", "fscore@0.02_visible", "fscore@0.01_visible",
    "rgb_psnr", "rgb_ssim", "albedo_psnr",
)
TILE = 192


def clean_json(value):
    """``value`` with NumPy scalars/arrays as Python values and NaN/inf as None (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_results_json(path: Path, data: dict) -> None:
    """Write results atomically, non-finite numbers as ``null`` (:func:`clean_json`)."""
    write_json(path, clean_json(data), indent=1)


def software_versions() -> dict:
    """Python, pixal3d, its main dependencies and the git commit of the checkout (when it is one)."""
    from importlib import metadata

    import pixal3d

    out = {"python": platform.python_version(), "platform": platform.platform(), "pixal3d": pixal3d.__version__}
    for dist in ("numpy", "torch", "trimesh", "scipy", "scikit-image", "pillow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    repo = Path(pixal3d.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip()
            out["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


# --------------------------------------------------------------------------------------------------
# markdown


def _fmt(value, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def _pair(metrics: dict, a: str, b: str, pattern: str) -> str:
    return f"{_fmt(metrics.get(a), pattern)} / {_fmt(metrics.get(b), pattern)}"


def markdown(data: dict) -> str:
    """``results.md``: one row per mesh with the headline metrics of every method side by side, the mean
    row, then every metric's mean (median) per method, and the multi-view table when there is one."""
    cfg = data["config"]
    methods = data["methods"]
    single = {k: m for k, m in methods.items() if m["num_views"] == 1}
    lines = ["# Evaluation results", ""]
    model = data.get("model")
    lines.append(f"* meshes: `{cfg['meshes']}` — subset {cfg['subset']}: {len(data['meshes'])} meshes × "
                 f"{cfg['views_used']} view(s); camera seed {cfg['seed']}; {cfg['image_size']} px renders; "
                 f"{cfg['held_out']} held-out views; {cfg['points']} surface samples")
    lines.append(f"* model: `{model['folder']}` (sha256 `{model['sha256'][:16]}…`), mode {model['mode']}" if model
                 else "* model: none (baselines only)")
    lines.append(f"* wall time {data['seconds']:.0f} s; software: pixal3d {data['software'].get('pixal3d')}, "
                 f"commit `{str(data['software'].get('git_commit', '?'))[:10]}`")
    lines.append("")
    lines.append("Per mesh (mean over its views); *in* = input view, *held* = held-out views, *vis* = surface "
                 "visible from the input camera. ↑ better: IoU, F; ↓ better: normal error (degrees), Chamfer L1.")
    lines.append("")
    header = ["mesh"] + [f"{name}: {h}" for name in single for h, *_ in HEADLINE]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for mesh in data["meshes"]:
        row = [f"`{mesh['id']}`" + ("" if not mesh.get("textured") else " (tex)")]
        for name, method in single.items():
            entry = next((e for e in method["results"] if e["mesh"] == mesh["id"]), None)
            if entry is None or entry["status"] != "ok":
                error = (entry or {}).get("error") or mesh.get("error") or "failed"
                row += [f"failed: {error}"[:80]] + [""] * (len(HEADLINE) - 1)
                continue
            row += [_pair(entry["mean"], a, b, p) for _, a, b, p in HEADLINE]
        lines.append("| " + " | ".join(row) + " |")
    row = ["**mean**"]
    for method in single.values():
        row += [f"**{_pair(method['mean'], a, b, p)}**" for _, a, b, p in HEADLINE]
    lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Every metric, mean (median) over the meshes that succeeded:")
    lines.append("")
    lines.append("| metric | " + " | ".join(single) + " |")
    lines.append("|---|" + "---|" * len(single))
    lines.append("| meshes ok / failed | " + " | ".join(f"{m['ok']} / {m['failed']}" for m in single.values()) + " |")
    for key in METRIC_ORDER:
        cells = []
        for m in single.values():
            mean, median = m["mean"].get(key), m["median"].get(key)
            cells.append("–" if mean is None else f"{mean:.4g} ({median:.4g})")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    multi = [m for m in methods.values() if m["num_views"] > 1]
    if multi:
        lines += ["", "Multi-view protocol (3-D metrics and silhouettes as views are added):", "",
                  "| method | views | IoU input | IoU held-out | CD-L1 | CD-L2 | F@0.05 | F@0.02 | F@0.01 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for m in sorted(methods.values(), key=lambda m: (m["method"], m["num_views"])):
            cells = [_fmt(m["mean"].get(k), "{:.4g}") for k in ("iou_input", "iou_heldout", "chamfer_l1", "chamfer_l2",
                                                                 "fscore@0.05", "fscore@0.02", "fscore@0.01")]
            lines.append(f"| {m['method']} | {m['num_views']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# sheet


def _tile(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image).convert("RGB").resize((TILE, TILE), Image.BILINEAR)


def _rgba_on(rgba: np.ndarray, background=(0.55, 0.55, 0.58)) -> np.ndarray:
    rgba = np.asarray(rgba, np.float64)
    rgb = rgba[..., :3] * rgba[..., 3:] + np.asarray(background) * (1 - rgba[..., 3:])
    return np.round(rgb * 255).astype(np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    m = np.pad(mask, 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask & ~inner


def heat_map(gt: dict, pred: dict, max_deg: float = 60.0) -> np.ndarray:
    """Angular error as colour (magma, 0 – ``max_deg``°) where both masks agree; missed ground truth in
    blue, extra prediction in red, background white."""
    from matplotlib import colormaps

    from pixal3d.evaluation.metrics import error_map

    err = error_map(gt, pred)
    out = np.ones(err.shape + (3,))
    both = np.isfinite(err)
    out[both] = colormaps["magma"](np.clip(err[both] / max_deg, 0, 1))[:, :3]
    out[gt["mask"] & ~pred["mask"]] = (0.2, 0.4, 1.0)
    out[pred["mask"] & ~gt["mask"]] = (1.0, 0.25, 0.2)
    return np.round(out * 255).astype(np.uint8)


def _outlined(rgba: np.ndarray, mask: np.ndarray, background=(1, 1, 1)) -> Image.Image:
    """A render tile with ``mask``'s outline drawn in red (two pixels wide)."""
    img = _rgba_on(rgba, background)
    edge = _outline(mask)
    img[np.maximum(edge, np.roll(edge, 1, 0)) | np.roll(edge, 1, 1)] = (230, 30, 30)
    return _tile(img)


def _labelled(tile: Image.Image, label: str) -> Image.Image:
    draw = ImageDraw.Draw(tile)
    draw.rectangle((0, 0, TILE, 14), fill=(0, 0, 0))
    draw.text((3, 1), label[:40], fill=(255, 255, 255))
    return tile


def sheet_row(label: str, gt_renders: dict, pred_renders: dict, held: list[str]) -> list[Image.Image]:
    """The tiles of one sheet row: input | GT normals | predicted normals | error heat-map | two held-out
    views (predicted normals with the GT silhouette outlined in red)."""
    gi, pi = gt_renders["input"], pred_renders["input"]
    tiles = [_labelled(_tile(_rgba_on(gi["shaded"])), label), _tile(_rgba_on(gi["normal"], (1, 1, 1))),
             _tile(_rgba_on(pi["normal"], (1, 1, 1))), _tile(heat_map(gi, pi))]
    return tiles + [_outlined(pred_renders[name]["normal"], gt_renders[name]["mask"]) for name in held]


def image_row(label: str, picture: np.ndarray, shaded: np.ndarray, mask: np.ndarray) -> list[Image.Image]:
    """The tiles of one row of the image evaluation's sheet: the input ``picture`` (RGB uint8) | the generated
    ``shaded`` render (RGBA float) with the input silhouette ``mask`` outlined in red."""
    return [_labelled(_tile(picture), label), _outlined(shaded, mask, (0.55, 0.55, 0.58))]


def sheet(rows: list[list[Image.Image]], header: list[str]) -> Image.Image:
    """Rows of equal tiles under a header line."""
    cols = max(len(r) for r in rows) if rows else len(header)
    image = Image.new("RGB", (cols * TILE, 18 + max(len(rows), 1) * TILE), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for c, text in enumerate(header):
        draw.text((c * TILE + 4, 3), text, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            image.paste(tile, (c * TILE, 18 + r * TILE))
    return image
