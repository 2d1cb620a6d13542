"""The default model's recipe: data, the chain of training runs, and the model folder they make.

A recipe is a JSON file (``configs/train/small/recipe.json`` for ``models/pixal3d-small``)::

    {"format": "pixal3d-recipe",
     "model": "models/pixal3d-small",               # where the final checkpoint goes
     "assets": "assets/small", "data": "data/small", "runs": "runs/small",
     "synth": {"count": 400, "seed": 0},            # procedural assets (pixal3d data synth)
     "sh3f": ["/usr/share/sweethome3d/furniture"],  # furniture catalogues (pixal3d data import-sh3f)
     "build": {"resolution": 128, "views": 4, "image_size": 256, "seed": 0, "up": "+y"},
     "stages": ["ss_vae", "ss_flow", ...],          # configs beside the recipe, trained in this order
     "ablations": ["ss_flow_cross"],                # runs trained after the chain, at the same budget, not exported
     "calibration": {"synth": {"count": 12, "seed": 1}, "biases": [0, 1, 2, 3, 4, 5, 6, 7, 8], "tolerance": 0.01,
                     "image_size": 256, "held_out": 2, "points": 20000},   # the shape decoder's subdivision bias
     "pipeline_settings": {"silhouette_constraint": true}}   # pipeline.json entries the exported model gets

Relative paths are taken from the repository root (the recipe's ``configs/train/<name>/`` grand-parent).
Run ``stages[k]`` writes ``runs/<stage>``; its config's ``base_pipeline`` names an earlier run, which
:func:`pixal3d.training.chain.check_chain` verifies for the whole chain before any step. Every part resumes:
assets and views already built are kept, a run continues from its latest checkpoint and a finished run
(its latest step = ``max_steps``) is skipped, so the recipe can be interrupted and continued over days.

After the export, :func:`calibrate_model` chooses the shape decoder's ``subdivision_bias`` on procedural assets
of another seed than the training data's (:mod:`pixal3d.evaluation.calibration`), keeps the choice in
``runs/calibration.json`` and writes it into the model folder; a later export of the same weights applies it again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pixal3d.core.pipeline_config import PIPELINE_FILE, PipelineConfig
from pixal3d.errors import UserError
from pixal3d.training.chain import ChainRun, base_runs, check_chain
from pixal3d.training.config import load_config
from pixal3d.utils.files import read_json, write_json

#: the default model's recipe, in the checkout
DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "configs" / "train" / "small" / "recipe.json"


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe (module docstring); every path absolute."""

    path: Path
    root: Path
    model: Path
    assets: Path
    data: Path
    runs: Path
    synth: dict[str, Any]
    sh3f: list[Path]
    build: dict[str, Any]
    stages: list[str]
    ablations: list[str]
    calibration: dict[str, Any]
    pipeline_settings: dict[str, Any]

    def chain(self, max_steps: int | None = None) -> list[ChainRun]:
        """The runs of the chain, then the ablations (configs beside the recipe; ``max_steps`` overrides every
        config's)."""
        runs = []
        for stage in self.stages + self.ablations:
            cfg = load_config(self.path.parent / f"{stage}.json")
            if max_steps is not None:
                cfg.max_steps = int(max_steps)
                cfg.save_every = min(cfg.save_every, cfg.max_steps)
            runs.append(ChainRun(stage, cfg, self.runs / stage))
        return runs


def load_recipe(path: str | os.PathLike = DEFAULT_RECIPE) -> Recipe:
    """Parse and check a recipe file; :class:`UserError` (one line) when it is malformed."""
    path = Path(path).resolve()
    data = read_json(path, "recipe")
    if not isinstance(data, dict) or data.get("format") != "pixal3d-recipe":
        raise UserError(f"{path} is not a pixal3d recipe (format must be 'pixal3d-recipe')")
    root = path.parents[3] if len(path.parents) > 3 else path.parent

    def where(key: str) -> Path:
        if not isinstance(data.get(key), str):
            raise UserError(f"recipe {path.name}: {key!r} must be a path")
        p = Path(data[key]).expanduser()
        return p if p.is_absolute() else root / p

    stages = data.get("stages")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, str) for s in stages):
        raise UserError(f"recipe {path.name}: 'stages' must be a non-empty list of config names")
    ablations = data.get("ablations") or []
    if not isinstance(ablations, list) or not all(isinstance(s, str) for s in ablations):
        raise UserError(f"recipe {path.name}: 'ablations' must be a list of config names")
    settings = data.get("pipeline_settings") or {}
    if not isinstance(settings, dict):
        raise UserError(f"recipe {path.name}: 'pipeline_settings' must be an object of pipeline.json entries")
    for stage in stages + ablations:
        if not (path.parent / f"{stage}.json").is_file():
            raise UserError(f"recipe {path.name}: stage {stage!r} has no config {stage}.json beside it")
    return Recipe(path, root, where("model"), where("assets"), where("data"), where("runs"),
                  dict(data.get("synth") or {}), [Path(p) for p in data.get("sh3f") or []],
                  dict(data.get("build") or {}), list(stages), list(ablations), dict(data.get("calibration") or {}),
                  settings)


def build_data(recipe: Recipe, workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Synthesise, import and build the recipe's dataset (each step resumes). Returns the build counts."""
    from pixal3d.data.build import BuildConfig, build_dataset
    from pixal3d.data.furniture import import_catalogs
    from pixal3d.data.synth import synthesize

    if recipe.synth.get("count"):
        synthesize(int(recipe.synth["count"]), recipe.assets / "synth", seed=int(recipe.synth.get("seed", 0)),
                   workers=workers, sheet=True)
    if recipe.sh3f:
        missing = [p for p in recipe.sh3f if not p.exists()]
        if missing:
            raise UserError(f"furniture catalogues not found: {missing[0]} (Debian: apt-get install sweethome3d-furniture)")
        import_catalogs(recipe.sh3f, recipe.assets / "sh3d")
    config = BuildConfig(**recipe.build)
    result = build_dataset(recipe.assets, recipe.data, config, workers=workers, progress=progress)
    return {"built": result.built, "kept": result.kept, "failed": result.failed}


def run_finished(run_dir: Path, max_steps: int) -> bool:
    """Whether ``run_dir``'s latest checkpoint is at ``max_steps``."""
    pointer = run_dir / "ckpts" / "latest"
    return pointer.is_file() and pointer.read_text().strip() == f"step_{max_steps:07d}"


def train_chain(recipe: Recipe, max_steps: int | None = None, num_gpus: int = -1, progress: bool = True,
                jobs: int = 1) -> list[str]:
    """Check the whole chain, then train each unfinished run (``train.py`` in a subprocess, from the repository
    root so the configs' relative bases resolve). A run starts once the runs it stands on have finished; up to
    ``jobs`` runs train at once (in recipe order), each with ``cores // jobs`` torch threads unless
    ``OMP_NUM_THREADS`` is set, and with ``jobs > 1`` each logs to ``runs/<run>.log``. A failed run stops the
    others (``SIGTERM``; they resume from their last checkpoint), and so does stopping this process with ``SIGINT`` or
    ``SIGTERM`` (``kill``): no run is left training on its own. Returns the names of the runs trained."""
    runs = recipe.chain(max_steps)
    check_chain(runs, recipe.root)
    waits = {run.name: base_runs(run, runs, recipe.root) for run in runs}
    done = {run.name for run in runs if run_finished(run.output_dir, run.config.max_steps)}
    pending = [run for run in runs if run.name not in done]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, jobs))))
    running: dict[str, subprocess.Popen] = {}
    trained: list[str] = []
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if on_main_thread else None
    try:
        while pending or running:
            for run in [r for r in pending if all(w in done for w in waits[r.name])][: max(0, jobs - len(running))]:
                pending.remove(run)
                running[run.name] = _start_run(recipe, run, num_gpus, progress and jobs == 1, env, jobs > 1)
            if not running:
                raise UserError(f"runs {', '.join(r.name for r in pending)} wait for runs that did not finish")
            name, code = _wait_any(running)
            if code != 0:
                raise UserError(f"run {name} failed; fix the cause and rerun (finished runs are kept)")
            done.add(name)
            trained.append(name)
    finally:
        for proc in running.values():  # SIGTERM: background jobs of a shell ignore SIGINT
            proc.terminate()
            proc.wait()
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return trained


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """``SIGTERM`` handler: exit through the ``finally`` of :func:`train_chain`, which stops the runs it started."""
    raise SystemExit(128 + signum)


def _start_run(recipe: Recipe, run: ChainRun, num_gpus: int, progress: bool, env: dict[str, str],
               to_log: bool) -> subprocess.Popen:
    config = run.output_dir.parent / f".{run.name}.config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    write_json(config, run.config.as_dict(), indent=1)
    cmd = [sys.executable, str(recipe.root / "train.py"), "--config", str(config), "--output_dir",
           str(run.output_dir), "--data_dir", str(recipe.data), "--num_gpus", str(num_gpus)]
    if not progress:
        cmd.append("--no_progress")
    log = run.output_dir.parent / f"{run.name}.log"
    print(f"train-default: run {run.name} ({run.config.trainer_name}, {run.config.max_steps} steps)"
          + (f", log {log}" if to_log else ""), file=sys.stderr, flush=True)
    out = open(log, "a") if to_log else None
    try:
        return subprocess.Popen(cmd, cwd=recipe.root, env=env, stdout=out, stderr=subprocess.STDOUT if out else None)
    finally:
        if out is not None:
            out.close()


def _wait_any(running: dict[str, subprocess.Popen]) -> tuple[str, int]:
    """Wait until one of ``running`` exits; remove it and return its name and exit code."""
    while True:
        for name, proc in running.items():
            code = proc.poll()
            if code is not None:
                del running[name]
                return name, code
        time.sleep(2.0)


def export_model(recipe: Recipe, half: bool = True, max_steps: int | None = None) -> Path:
    """Copy the last run's latest checkpoint to the recipe's model folder (float weights stored as fp16 when
    ``half``; they load back as float32) with the recipe's ``pipeline_settings`` and the asset credits; every run of the chain must have reached its
    ``max_steps`` (the configs', or the override ``max_steps``). Returns the model folder."""
    from pixal3d.training.trainer import resolve_pipeline

    last = recipe.runs / recipe.stages[-1]
    source = resolve_pipeline(last)
    runs = recipe.chain(max_steps)
    for stage in recipe.stages:
        if not run_finished(recipe.runs / stage, next(r for r in runs if r.name == stage).config.max_steps):
            raise UserError(f"run {stage} has not finished; train the chain first")
    target = recipe.model
    staging = target.with_name(f".{target.name}.staging")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("trainer_state.pt"))
    _store_shared_weights_once(staging)
    if recipe.pipeline_settings:
        PipelineConfig.read(staging / PIPELINE_FILE).with_settings(recipe.pipeline_settings).write(staging / PIPELINE_FILE)
    if half:
        for path in staging.rglob("*.safetensors"):
            _store_half(path)
    credits = recipe.assets / "sh3d" / "CREDITS.md"
    if credits.is_file():
        shutil.copyfile(credits, staging / "CREDITS.md")
    if target.exists():
        keep = [p for p in ("README.md",) if (target / p).is_file()]
        for name in keep:
            shutil.copyfile(target / name, staging / name)
        shutil.rmtree(target)
    staging.rename(target)
    apply_calibration(recipe, target)
    return target


#: the calibration's record, in the recipe's runs folder
CALIBRATION_FILE = "calibration.json"


def _shape_decoder_sha256(folder: Path) -> str:
    from pixal3d.evaluation.calibration import SHAPE_DECODER
    from pixal3d.data.overlap import file_sha256
    from pixal3d.models.pipeline_folder import open_pipeline_folder

    stage = open_pipeline_folder(folder).stage(SHAPE_DECODER)
    if not stage.found:
        raise UserError(stage.missing_message())
    return file_sha256(stage.stem.with_suffix(".safetensors"))


def current_calibration(recipe: Recipe, folder: Path | None = None) -> dict[str, Any] | None:
    """The record of ``runs/calibration.json`` when it was measured on the shape-decoder weights that ``folder``
    (default: the recipe's model) holds, else ``None``."""
    record_path = recipe.runs / CALIBRATION_FILE
    if not record_path.is_file():
        return None
    record = read_json(record_path, "calibration record")
    if record.get("shape_decoder_sha256") != _shape_decoder_sha256(folder or recipe.model):
        return None  # measured on other weights: calibrate again
    return record


def apply_calibration(recipe: Recipe, folder: Path) -> float | None:
    """Write the recorded ``subdivision_bias`` into ``folder`` when ``runs/calibration.json`` was measured on the
    shape-decoder weights ``folder`` holds; returns the bias written (``None``: no matching record)."""
    from pixal3d.evaluation.calibration import write_subdivision_bias

    record = current_calibration(recipe, folder)
    if record is None:
        return None
    write_subdivision_bias(folder, float(record["subdivision_bias"]))
    return float(record["subdivision_bias"])


def calibrate_model(recipe: Recipe, workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Choose the exported model's subdivision bias (module docstring) and write it into the model folder.
    Returns the record written to ``runs/calibration.json``."""
    from pixal3d.data.synth import synthesize
    from pixal3d.evaluation.calibration import calibrate_subdivision_bias
    from pixal3d.evaluation.runner import EvalConfig

    settings = recipe.calibration
    if not settings:
        raise UserError(f"recipe {recipe.path.name} has no 'calibration' entry")
    synth = dict(settings.get("synth") or {})
    seed, count = int(synth.get("seed", 1)), int(synth.get("count", 12))
    if recipe.synth.get("count") and seed == int(recipe.synth.get("seed", 0)):
        raise UserError(f"recipe {recipe.path.name}: the calibration's synth seed {seed} is the training data's; "
                        "held-out assets need another seed")
    if not (recipe.model / PIPELINE_FILE).is_file():
        raise UserError(f"export the model first: {recipe.model} has no pipeline.json")
    assets = recipe.assets.with_name(f"{recipe.assets.name}-calibration")  # beside, never inside, the training assets
    synthesize(count, assets, seed=seed, workers=workers, sheet=False)
    config = EvalConfig(subset="full", views_per_mesh=1, baselines=(), sheet=False,
                        image_size=int(settings.get("image_size", 256)), held_out=int(settings.get("held_out", 2)),
                        points=int(settings.get("points", 20000)))
    calibration = calibrate_subdivision_bias(recipe.model, assets, recipe.runs / "calibration",
                                             [float(b) for b in settings.get("biases", [0, 1, 2, 3, 4])], config,
                                             tolerance=float(settings.get("tolerance", 0.01)), progress=progress)
    record = {**calibration.to_json(), "assets": f"synth seed {seed}, {count} assets",
              "shape_decoder_sha256": _shape_decoder_sha256(recipe.model)}
    write_json(recipe.runs / CALIBRATION_FILE, record)
    apply_calibration(recipe, recipe.model)
    return record


def export_ablation(recipe: Recipe, name: str, max_steps: int | None = None, step: int | None = None) -> Path:
    """The exported model with the stages of run ``name`` swapped in, at ``runs/<name>.model`` — or, with ``step``,
    from that run's checkpoint at ``step`` into ``runs/<name>@<step>.model`` (an equal-budget comparison of an
    ablation and its counterpart run of the chain). For ``pixal3d evaluate``; not shipped. An ablation standing on
    other ablations (``shape_flow_cross`` on ``ss_flow_cross``) swaps in their stages too, from its own checkpoint,
    which carries them. A folder that holds a
    cross-attention flow is marked ``camera_frame_cross_attention`` so that the pipeline runs it on the image tokens. ``name`` is an ablation
    (finished, unless ``step`` is given) or, with ``step``, a run of the chain. The model folder must exist
    (:func:`export_model`)."""
    from pixal3d.models.pipeline_folder import open_pipeline_folder
    from pixal3d.training.trainer import resolve_pipeline

    chain = recipe.chain(max_steps)
    run = next((r for r in chain if r.name == name), None)
    if run is None or (name not in recipe.ablations and step is None):
        raise UserError(f"{name} is not an ablation of recipe {recipe.path.name}")
    if step is None and not run_finished(run.output_dir, run.config.max_steps):
        raise UserError(f"ablation {name} has not finished; train it first")
    checkpoint = run.output_dir / "ckpts" / f"step_{int(step or 0):07d}"
    if step is not None and not (checkpoint / PIPELINE_FILE).is_file():
        raise UserError(f"run {name} has no checkpoint at step {step} ({checkpoint})")
    if not (recipe.model / PIPELINE_FILE).is_file():
        raise UserError(f"export the model first: {recipe.model} has no pipeline.json")
    source = open_pipeline_folder(checkpoint if step is not None else resolve_pipeline(run.output_dir))
    target = recipe.runs / (f"{name}@{step}.model" if step is not None else f"{name}.model")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(recipe.model, target)
    models = PipelineConfig.read(target / PIPELINE_FILE).models
    swapped = [run, *_ablations_below(run, chain, recipe)]
    specs = {key: spec for r in swapped for key, spec in r.config.models.items()}
    for key in specs:
        if key not in models:
            continue  # a stage the model does not hold
        stem = models[key]
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(source.stages[key].stem.with_suffix(suffix), (target / stem).with_suffix(suffix))
        _store_half((target / stem).with_suffix(".safetensors"))  # as the model's own weights
    if any(spec.get("args", {}).get("image_attn_mode") == "cross" for spec in specs.values()):
        config = PipelineConfig.read(target / PIPELINE_FILE)  # flows trained in the camera frame on image tokens
        config.with_settings({"camera_frame_cross_attention": True}).write(target / PIPELINE_FILE)
    return target


def _ablations_below(run: ChainRun, chain: list[ChainRun], recipe: Recipe) -> list[ChainRun]:
    """The ablation runs ``run`` stands on, directly or through other runs."""
    by_name = {r.name: r for r in chain}
    found: list[ChainRun] = []
    todo = base_runs(run, chain, recipe.root)
    while todo:
        below = by_name[todo.pop()]
        if below.name in recipe.ablations and below not in found:
            found.append(below)
        todo.extend(base_runs(below, chain, recipe.root))
    return found


def _store_half(path: Path) -> None:
    """Rewrite a safetensors file with its floating-point tensors in fp16 (they load back as float32)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, path)


def _store_shared_weights_once(folder: Path) -> None:
    """Store stages of pipeline folder ``folder`` that have identical weights once (a flow serving two stages):
    ``pipeline.json``'s ``models`` then names one checkpoint for both. The VAE encoders stay: generation never
    loads them (stages load on first use), and with them a later run can fine-tune the flows on the shipped VAEs."""
    config = PipelineConfig.read(folder / PIPELINE_FILE)
    models = dict(config.models)
    seen: dict[bytes, str] = {}
    for key in list(models):
        stem = folder / models[key]
        weights = stem.with_suffix(".safetensors").read_bytes()
        if weights not in seen:
            seen[weights] = models[key]
            continue
        models[key] = seen[weights]
        for suffix in (".safetensors", ".json"):
            stem.with_suffix(suffix).unlink()
    replace(config, models=models).write(folder / PIPELINE_FILE)
