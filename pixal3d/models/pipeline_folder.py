"""Pipeline folders: ``pipeline.json`` + ``ckpts/`` — the official TRELLIS.2 / Pixal3D layout and this project's.

``pipeline.json`` is parsed once into a :class:`~pixal3d.core.pipeline_config.PipelineConfig` (its
``models``: stage key → checkpoint spec; the samplers, latent normalisation, cascade and image encoder).

Checkpoint specs are resolved like the official loader does, without downloading anything:

* a path relative to the folder (``ckpts/ss_flow_img_dit_1_3B_64_bf16``), or an absolute path;
* a Hugging Face id ``owner/repo/path`` (TRELLIS.2-4B's SS decoder is
  ``microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16``): looked for as
  ``<models root>/<repo>/<path>``, then ``<folder>/<path>`` (a local copy, as TencentARC/Pixal3D ships),
  then ``<folder's parent>/<repo>/<path>``.

TencentARC/Pixal3D has the seven stages of the image → 3D cascade. microsoft/TRELLIS.2-4B adds
``tex_slat_flow_model_512`` and a ``texturing_pipeline.json`` whose extra stages (the SC-VAE
encoders) are listed too, tagged with the file that names them.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from pixal3d import paths
from pixal3d.core.pipeline_config import PIPELINE_FILE, PipelineConfig
from pixal3d.errors import UserError
from pixal3d.models.loading import Checkpoint, check_checkpoint, checkpoint_files, load_model, open_checkpoint, save_model

#: further config files whose ``models`` are listed as extra stages (TRELLIS.2-4B)
EXTRA_CONFIG_FILES = ("texturing_pipeline.json",)

#: stage keys of the Pixal3D image → 3D cascade, in the order they run
PIXAL3D_STAGES = (
    "sparse_structure_flow_model",
    "sparse_structure_decoder",
    "shape_slat_flow_model_512",
    "shape_slat_flow_model_1024",
    "shape_slat_decoder",
    "tex_slat_flow_model_1024",
    "tex_slat_decoder",
)

#: the model classes each stage of the image → 3D cascade may hold; a checkpoint of another kind of
#: stage put under one of these keys is refused by :meth:`PipelineFolder.check`
STAGE_CLASSES = {
    "sparse_structure_flow_model": ("SparseStructureFlowModel",),
    "sparse_structure_decoder": ("SparseStructureDecoder",),
    "shape_slat_flow_model_512": ("SLatFlowModel", "ElasticSLatFlowModel"),
    "shape_slat_flow_model_1024": ("SLatFlowModel", "ElasticSLatFlowModel"),
    "shape_slat_decoder": ("FlexiDualGridVaeDecoder",),
    "tex_slat_flow_model_512": ("SLatFlowModel", "ElasticSLatFlowModel"),
    "tex_slat_flow_model_1024": ("SLatFlowModel", "ElasticSLatFlowModel"),
    "tex_slat_decoder": ("SparseUnetVaeDecoder",),
    "sparse_structure_encoder": ("SparseStructureEncoder",),
    "shape_slat_encoder": ("FlexiDualGridVaeEncoder",),
    "tex_slat_encoder": ("SparseUnetVaeEncoder",),
}


@dataclass
class Stage:
    """One network of a pipeline folder.

    ``spec`` is the string in the config; ``candidates`` the stems tried, in order; ``stem`` the first
    complete one (``None`` if none is); ``source`` the config file naming it.
    """

    key: str
    spec: str
    candidates: list[Path]
    stem: Path | None
    source: str = PIPELINE_FILE
    repo_id: tuple[str, str, Path] | None = None  # (owner, repo, path) when the spec is read as a Hub id

    @property
    def found(self) -> bool:
        return self.stem is not None

    def missing_message(self) -> str:
        """Which files are missing and where to put them (empty when found)."""
        if self.found:
            return ""
        first = self.candidates[0]
        json_path, weights_path = checkpoint_files(first)
        partial = [p for p in self.candidates if checkpoint_files(p)[0].is_file() or checkpoint_files(p)[1].is_file()]
        if partial:
            json_path, weights_path = checkpoint_files(partial[0])
            absent = [p.name for p in (json_path, weights_path) if not p.is_file()]
            return f"{self.key}: {' and '.join(absent)} missing in {json_path.parent}"
        places = self.candidates[1:] if self.repo_id is not None else self.candidates[:1]
        origin = ""
        if self.repo_id is not None:
            owner, repo, rest = self.repo_id
            origin = f" (from huggingface.co/{owner}/{repo}, file {rest}.*)"
        places_text = " or ".join(dict.fromkeys(str(p.parent) for p in places))
        return f"{self.key}: {json_path.name} and {weights_path.name} not found{origin}; put them in {places_text}"


def _complete(stem: Path) -> bool:
    json_path, weights_path = checkpoint_files(stem)
    return json_path.is_file() and weights_path.is_file()


def repo_id_parts(folder: Path, spec: str) -> tuple[str, str, Path] | None:
    """``(owner, repo, path)`` when ``spec`` reads as a Hugging Face id ``owner/repo/path``, else ``None``.

    A spec whose first component is a sub-folder of ``folder`` is a relative path, not an id.
    """
    path = Path(spec)
    if path.is_absolute() or len(path.parts) < 3 or ".." in path.parts or (folder / path.parts[0]).is_dir():
        return None
    return path.parts[0], path.parts[1], Path(*path.parts[2:])


def resolve_checkpoint_spec(folder: Path, spec: str, models_root: Path | None = None) -> list[Path]:
    """Candidate stems for checkpoint ``spec`` of the pipeline in ``folder``, in lookup order."""
    path = Path(spec).expanduser()
    if path.is_absolute():
        return [path]
    candidates = [folder / path]
    repo_id = repo_id_parts(folder, spec)
    if repo_id is not None:
        _, repo, rest = repo_id
        root = models_root if models_root is not None else paths.models_root()
        for candidate in (root / repo / rest, folder / rest, folder.parent / repo / rest):
            if candidate not in candidates:
                candidates.append(candidate)
    return candidates


@dataclass
class PipelineFolder:
    """A parsed pipeline folder: its stages (resolved checkpoint stems) and pipeline settings."""

    path: Path
    config: PipelineConfig
    stages: dict[str, Stage]
    extra_configs: dict[str, PipelineConfig] = field(default_factory=dict)

    def latent_normalization(self, kind: str, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 ``(mean [C], std [C])`` of ``kind`` (``'shape_slat'`` / ``'tex_slat'``): ``latent = x·std + mean``."""
        entry = self.config.normalization.get(kind)
        if entry is None or "mean" not in entry or "std" not in entry:
            raise UserError(f"{self.path / PIPELINE_FILE} has no {kind}_normalization mean/std")
        mean = torch.tensor(entry["mean"], dtype=torch.float32, device=device)
        std = torch.tensor(entry["std"], dtype=torch.float32, device=device)
        if mean.shape != std.shape or mean.ndim != 1:
            raise UserError(f"{self.path / PIPELINE_FILE}: {kind}_normalization mean and std must be equal-length lists")
        return mean, std

    def missing(self, keys: list[str] | None = None) -> list[str]:
        """One line per stage (of ``keys``, default all) whose files are missing, saying where to put them."""
        keys = list(self.stages) if keys is None else keys
        return [self.stage(k).missing_message() for k in keys if not self.stage(k).found]

    def stage(self, key: str) -> Stage:
        if key not in self.stages:
            raise UserError(f"{self.path / PIPELINE_FILE} has no model {key!r} (it has: {', '.join(self.stages)})")
        return self.stages[key]

    def require(self, keys: list[str]) -> None:
        """:class:`UserError` listing every missing file among stages ``keys``."""
        lines = self.missing(keys)
        if lines:
            raise UserError(f"model folder {self.path} is incomplete: " + "; ".join(lines))

    def check(self, keys: list[str]) -> dict[str, tuple[Checkpoint, nn.Module]]:
        """Check stages ``keys`` without reading tensor data: files present and readable (not truncated),
        the class one this stage may hold (:data:`STAGE_CLASSES`), every key, shape and dtype fitting it.

        Returns key → ``(checkpoint, model built on meta)``; :class:`UserError` naming the first problem.
        """
        self.require(keys)
        checked = {}
        for key in keys:
            checkpoint = open_checkpoint(self.stages[key].stem)
            expected = STAGE_CLASSES.get(key)
            if expected and checkpoint.name not in expected:
                raise UserError(f"{key} of {self.path / PIPELINE_FILE} is {checkpoint.json_path.name}, a "
                                f"{checkpoint.name} checkpoint, but this stage holds a {' or '.join(expected)}: it is "
                                f"another stage's checkpoint; point args.models.{key} at the right file")
            model, mismatches = check_checkpoint(checkpoint)
            if not mismatches.ok:
                raise UserError(f"checkpoint {checkpoint.weights_path} does not fit {checkpoint.name}: "
                                f"{mismatches.summary()} (a different model version or a damaged file)")
            checked[key] = (checkpoint, model)
        return checked

    def load(self, key: str, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None) -> nn.Module:
        """Load stage ``key`` strictly (see :func:`pixal3d.models.loading.load_model`)."""
        self.require([key])
        return load_model(self.stages[key].stem, device=device, dtype=dtype)

    def models(self, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None,
               low_memory: bool = False, transform=None) -> "StageModels":
        """A lazy ``key → model`` cache; with ``low_memory`` only one stage stays resident at a time;
        ``transform(key, model) -> model`` is applied to each stage once it is loaded (e.g. int8 quantisation)."""
        return StageModels(self, device, dtype, low_memory, transform)


class StageModels:
    """Loads the stages of a :class:`PipelineFolder` on first use and keeps them.

    In low-memory mode, asking for a stage first releases every other one (references dropped,
    ``gc``, CUDA cache emptied), so at most one network is resident: load → use → release. Loads are
    memory-mapped, so re-loading a stage whose file is in the page cache is cheap.
    """

    def __init__(self, folder: PipelineFolder, device: torch.device | str | None, dtype: torch.dtype | str | None,
                 low_memory: bool, transform=None):
        self.folder = folder
        self.device = device
        self.dtype = dtype
        self.low_memory = low_memory
        self.transform = transform
        self._loaded: dict[str, nn.Module] = {}

    def __getitem__(self, key: str) -> nn.Module:
        if key not in self._loaded:
            if self.low_memory:
                self.release()
            model = self.folder.load(key, self.device, self.dtype)
            self._loaded[key] = self.transform(key, model) if self.transform is not None else model
        return self._loaded[key]

    def __contains__(self, key: str) -> bool:
        return key in self._loaded

    @property
    def resident(self) -> list[str]:
        """Keys of the stages currently loaded."""
        return list(self._loaded)

    def release(self, key: str | None = None) -> None:
        """Drop stage ``key`` (all stages when ``None``) and return its memory."""
        for k in [key] if key is not None else list(self._loaded):
            self._loaded.pop(k, None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @contextmanager
    def use(self, key: str) -> Iterator[nn.Module]:
        """``with models.use(key) as net:`` — the stage, released afterwards in low-memory mode."""
        try:
            yield self[key]
        finally:
            if self.low_memory:
                self.release(key)


def is_pipeline_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a ``pipeline.json``."""
    return (Path(path) / PIPELINE_FILE).is_file()


def open_pipeline_folder(path: str | os.PathLike, models_root: str | os.PathLike | None = None) -> PipelineFolder:
    """Parse ``path/pipeline.json`` (and ``texturing_pipeline.json`` if present) and resolve every checkpoint."""
    folder = Path(path).expanduser().resolve()
    config_path = folder / PIPELINE_FILE
    if not config_path.is_file():
        raise UserError(f"{folder} is not a model folder: {PIPELINE_FILE} is missing (see README, 'Model folders')")
    root = Path(models_root).expanduser() if models_root is not None else None
    config = PipelineConfig.read(config_path)
    stages: dict[str, Stage] = {}
    extra = {name: PipelineConfig.read(folder / name) for name in EXTRA_CONFIG_FILES if (folder / name).is_file()}
    for source, source_config in [(PIPELINE_FILE, config), *extra.items()]:
        for key, spec in source_config.models.items():
            if key in stages:
                continue
            candidates = resolve_checkpoint_spec(folder, spec, root)
            stem = next((c for c in candidates if _complete(c)), None)
            stages[key] = Stage(key, spec, candidates, stem, source, repo_id_parts(folder, spec))
    return PipelineFolder(folder, config, stages, extra)


def resolve_model_folder(spec: str | os.PathLike | None, default: str = "pixal3d-small") -> Path:
    """The model folder ``--model`` names: a path, a folder under the models root, or a component name.

    ``None`` means component ``default``. A spec with a path separator (or ``~``, ``.``) is a path;
    a bare name is looked up as ``<models root>/<name>``, then as a component of
    :data:`pixal3d.paths.COMPONENTS` (``pixal3d``, ``trellis2``, ...), then as a pipeline folder in
    the current directory. Raises :class:`UserError` listing what was tried when nothing matches.
    """
    text = str(default if spec is None else spec)
    as_path = Path(text).expanduser()
    if os.sep in text or "/" in text or text.startswith((".", "~")) or as_path.is_absolute():
        if as_path.exists():
            return as_path
        raise UserError(f"model folder {as_path} not found; pass the folder that holds pipeline.json and ckpts/")
    root = paths.models_root()
    candidates = [root / text]
    if text in paths.COMPONENTS:
        candidates.append(paths.component_path(text))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    if is_pipeline_folder(as_path):
        return as_path
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise UserError(f"model folder {text!r} not found (tried {tried}; set ${paths.ENV_VAR} to the folder that "
                    f"holds the model folders, or pass --model FOLDER)")


@dataclass
class StageWeights:
    """What :func:`write_pipeline_folder` writes for one stage: a model (or state dict) and its class config."""

    weights: nn.Module | Mapping[str, torch.Tensor]
    name: str
    args: dict
    stem: str | None = None  # path relative to the folder; default ckpts/<stage key>


def write_pipeline_folder(path: str | os.PathLike, stages: Mapping[str, StageWeights],
                          config: PipelineConfig | None = None) -> PipelineFolder:
    """Write a pipeline folder: every stage as ``ckpts/<stem>.{safetensors,json}``, then ``pipeline.json``.

    ``config`` holds the pipeline settings (samplers, normalisation, ``default_pipeline_type``, image
    encoder ...; default: none); the written stages are added to its ``models``. Every file is written
    atomically and ``pipeline.json`` last. Returns the folder, opened.
    """
    folder = Path(path)
    config = config or PipelineConfig()
    models = dict(config.models)
    for key, stage in stages.items():
        stem = stage.stem or f"ckpts/{key}"
        save_model(stage.weights, folder / stem, stage.name, stage.args)
        models[key] = stem
    replace(config, models=models).write(folder / PIPELINE_FILE)
    return open_pipeline_folder(folder)
