"""The default model's card: what each stage is, what it was trained on and how long, read off the runs.

:func:`model_facts` collects, from a recipe's finished runs and its dataset, the numbers a model card states
(parameters and class per stage, steps, batch, samples seen, training wall-clock, last logged loss terms,
data counts per source and licence); :func:`card_tables` renders them as markdown tables and
:func:`plot_losses` draws every run's loss curve in one figure. ``pixal3d train-default --steps card`` (:func:`write_card`)
writes both into the model folder, between the markers of its hand-written ``README.md``.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixal3d.training.recipe import Recipe, current_calibration
from pixal3d.training.trainer import LOG_FILE, resolve_pipeline


@dataclass
class RunFacts:
    """One finished run: its trainer, the stages it trained, and its training history."""

    name: str
    trainer: str
    stages: dict[str, dict[str, Any]]  # stage key → {"class", "params"}
    steps: int
    batch_size: int
    seconds: float  # training steps only (from log.csv's samples/s per logging window; checkpoints excluded)
    last: dict[str, float] = field(default_factory=dict)  # last logged loss terms

    @property
    def samples(self) -> int:
        return self.steps * self.batch_size


def _log_rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / LOG_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_facts(run_dir: Path, config) -> RunFacts:
    """:class:`RunFacts` of a finished run folder trained with ``config`` (a :class:`TrainConfig`)."""
    folder = resolve_pipeline(run_dir)
    stages = {key: {"class": spec["name"], "params": _parameter_count(folder / "ckpts" / f"{key}.safetensors")}
              for key, spec in config.models.items()}
    encoder = config.trainer_args.get("image_encoder")
    if isinstance(encoder, dict) and (folder / "ckpts" / "image_encoder.safetensors").is_file():  # trained here
        stages["image_encoder"] = {"class": encoder.get("name", "?"),
                                   "params": _parameter_count(folder / "ckpts" / "image_encoder.safetensors")}
    rows = _log_rows(run_dir)
    seconds, previous = 0.0, 0
    for row in rows:
        step = int(row["step"])
        rate = float(row.get("samples_per_s") or 0)
        if rate > 0:
            seconds += (step - previous) * config.batch_size / rate
        previous = step
    skip = {"step", "lr", "grad_norm", "samples_per_s"}
    last = {k: float(v) for k, v in (rows[-1] if rows else {}).items() if k not in skip and v not in ("", None)}
    return RunFacts(run_dir.name, config.trainer_name, stages, config.max_steps, config.batch_size, seconds, last)


def _parameter_count(path: Path) -> int:
    """Number of values stored in a safetensors file (read from its header)."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        return sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())


def data_facts(recipe: Recipe) -> dict[str, Any]:
    """Counts of the recipe's dataset: assets and views built per source folder, and imported models per licence."""
    from pixal3d.data.build import load_manifest

    manifest = load_manifest(recipe.data)
    per_source: Counter = Counter()
    views = 0
    for asset in manifest["assets"].values():
        if asset.get("status") != "ok":
            continue
        parts = Path(asset["source"]).parts
        per_source[parts[0] if len(parts) > 1 else "."] += 1
        views += len(asset.get("views", []))
    licences: Counter = Counter()
    sources = recipe.assets / "sh3d" / "sources.json"
    if sources.is_file():
        for entry in json.loads(sources.read_text()).get("assets", []):
            licences[entry.get("licence", "unknown")] += 1
    return {"assets": sum(per_source.values()), "views": views, "per_source": dict(per_source),
            "licences": dict(licences), "config": manifest.get("config", {})}


def model_facts(recipe: Recipe, max_steps: int | None = None) -> tuple[list[RunFacts], dict[str, Any]]:
    """Facts of every finished run of the recipe (chain, then ablations; ``max_steps`` as in
    :meth:`Recipe.chain`) and of its data."""
    from pixal3d.training.recipe import run_finished

    runs = [run_facts(run.output_dir, run.config) for run in recipe.chain(max_steps)
            if run_finished(run.output_dir, run.config.max_steps)]
    return runs, data_facts(recipe)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def card_tables(runs: list[RunFacts], data: dict[str, Any], ablations: list[str],
                calibration: dict[str, Any] | None = None) -> str:
    """Markdown: one row per trained stage, one per run, the data counts and, when given, the calibration record
    (``runs/calibration.json``) with one row per candidate subdivision bias."""
    lines = ["| stage | class | parameters | trained in |", "|---|---|---|---|"]
    for run in runs:
        if run.name in ablations:
            continue
        for key, stage in run.stages.items():
            lines.append(f"| `{key}` | `{stage['class']}` | {stage['params'] / 1e6:.2f} M | `{run.name}` |")
    lines += ["", "| run | trainer | steps × batch | samples seen | wall-clock (steps) | last logged terms |",
              "|---|---|---|---|---|---|"]
    for run in runs:
        terms = ", ".join(f"{k} {v:.3g}" for k, v in run.last.items())
        tag = " (ablation)" if run.name in ablations else ""
        lines.append(f"| `{run.name}`{tag} | {run.trainer} | {run.steps} × {run.batch_size} | {run.samples:,} | "
                     f"{_minutes(run.seconds)} | {terms} |")
    cfg = data["config"]
    sources = ", ".join(f"{n} from `{s}`" for s, n in sorted(data["per_source"].items()))
    licences = ", ".join(f"{n} {lic}" for lic, n in sorted(data["licences"].items()))
    lines += ["", f"Data: {data['assets']} assets ({sources}), {data['views']} views; R = {cfg.get('resolution')}, "
                  f"{cfg.get('views')} views of {cfg.get('image_size')}² per asset. Imported models by licence: {licences}."]
    if calibration:
        lines += ["", calibration_table(calibration)]
    return "\n".join(lines) + "\n"


def calibration_table(calibration: dict[str, Any]) -> str:
    """Markdown: the chosen subdivision bias and one row per candidate of a calibration record
    (``runs/calibration.json``)."""
    chosen = calibration["subdivision_bias"]
    lines = [f"Shape decoder subdivision bias {chosen:+g}, chosen by `--steps calibrate` on "
             f"{calibration['meshes']} held-out assets ({calibration.get('assets', 'procedural')}):", "",
             "| bias | mean score | IoU input | IoU held-out | F@0.05 | CD-L1 | voxels | generation (s) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in calibration["candidates"]:
        mark = "**" if row["bias"] == chosen else ""
        lines.append(f"| {mark}{row['bias']:+g}{mark} | {row['score']:.3f} | {row['iou_input']:.3f} | "
                     f"{row['iou_heldout']:.3f} | {row['fscore@0.05']:.3f} | {row['chamfer_l1']:.4f} | "
                     f"{row['voxels']:,.0f} | {row['seconds']:.1f} |")
    return "\n".join(lines)


def plot_losses(recipe: Recipe, path: Path) -> Path:
    """Every finished run's logged loss against the step, one panel per run, written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in recipe.chain() if _log_rows(r.output_dir)]
    cols = 4
    rows = max(1, (len(runs) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, run in zip(axes.flat, runs):
        log = _log_rows(run.output_dir)
        steps = [int(r["step"]) for r in log]
        ax.plot(steps, [float(r["loss"]) for r in log])
        ax.set_yscale("log")
        ax.set_title(run.name, fontsize=10)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def sample_sheet(model: Path, images: list[Path], out: Path, size: int = 160, seed: int = 42) -> Path:
    """Generate every image of ``images`` with the model folder ``model`` (default options, ``seed``) and write a PNG
    sheet to ``out``: one row per image — the input, the GLB rendered through the input camera, and from the side
    (90° about the up axis). Returns ``out``."""
    import tempfile

    import numpy as np
    from PIL import Image, ImageDraw

    from pixal3d.core.render import glb_camera, load_render_meshes, render, turntable_cameras
    from pixal3d.pipelines.pixal3d import GenerationOptions, Pixal3DPipeline
    from pixal3d.utils.files import atomic_output

    pipe = Pixal3DPipeline.from_pretrained(model)
    sheet = Image.new("RGB", (3 * size, len(images) * size), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    with tempfile.TemporaryDirectory() as tmp:
        for row, image in enumerate(images):
            result = pipe.generate(str(image), GenerationOptions(seed=seed), progress=False)
            glb = Path(tmp) / f"{row}.glb"
            result.save_glb(glb, progress=False)
            meshes = load_render_meshes(glb)
            tiles = [np.asarray(result.image.convert("RGB").resize((size, size)), dtype=np.float32) / 255,
                     render(meshes, glb_camera(glb), size)[..., :3],
                     render(meshes, turntable_cameras(meshes, 4)[1], size)[..., :3]]
            for col, tile in enumerate(tiles):
                sheet.paste(Image.fromarray(np.round(np.clip(tile, 0, 1) * 255).astype(np.uint8)), (col * size, row * size))
            draw.text((3, row * size + 2), image.name[:28], fill=(255, 80, 40))
    with atomic_output(out) as tmp_out:
        sheet.save(tmp_out, format="PNG")
    return out


#: the generated part of the model card's README.md lies between these lines
FACTS_BEGIN, FACTS_END = "<!-- facts: written by pixal3d train-default --steps card -->", "<!-- /facts -->"


def write_card(recipe: Recipe, max_steps: int | None = None) -> Path:
    """Refresh the facts block of ``<model>/README.md`` (which must hold the two :data:`FACTS_BEGIN` /
    :data:`FACTS_END` lines) and ``<model>/loss.png``. Returns the README's path."""
    from pixal3d.errors import UserError
    from pixal3d.utils.files import atomic_output

    readme = recipe.model / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    if FACTS_BEGIN not in text or FACTS_END not in text:
        raise UserError(f"{readme} has no facts block ({FACTS_BEGIN} … {FACTS_END}); add the two lines where the tables go")
    runs, data = model_facts(recipe, max_steps)
    calibration = current_calibration(recipe)
    head, rest = text.split(FACTS_BEGIN, 1)
    _, tail = rest.split(FACTS_END, 1)
    plot_losses(recipe, recipe.model / "loss.png")
    with atomic_output(readme) as tmp:
        tmp.write_text(f"{head}{FACTS_BEGIN}\n{card_tables(runs, data, recipe.ablations, calibration)}\n"
                       "![loss curves](loss.png)\n"
                       f"{FACTS_END}{tail}")
    return readme
