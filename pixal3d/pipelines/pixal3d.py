"""The image-to-3D pipeline: one image → pixel-aligned PBR voxels and mesh → GLB.

Stages (official ``Pixal3DImageTo3DPipeline.run``; the stage table of docs/architecture.md):

1. preprocess (alpha or background removal, square crop ×1.1 on black) and the camera;
2. a CPU ``torch.Generator`` seeded with ``seed``; every stage's noise is drawn from it in stage order (SS, LR
   shape, HR shape, texture) — the stream upstream draws after ``torch.manual_seed(seed)``, so a seed means the
   same thing as there (and the global generator is left alone);
3. sparse structure: flow on the dense 16³ latent → decoder → 64³ occupancy → max-pool to the
   512-stage latent grid (32³) → coordinates;
4. shape flow at 512 (grid 32), then the cascade: decoder upsampling to the 512-grid, requantised to
   ``R // 16`` under the token budget (:mod:`pixal3d.pipelines.cascade`), shape flow at 1024/1536;
5. texture flow on the same coordinates, conditioned on the normalised shape latent;
6. decoders: shape → dual-grid attributes at ``R³`` + subdivisions; texture (guided by those
   subdivisions) → 6 PBR channels ``×0.5 + 0.5``.

The result is a :class:`~pixal3d.core.asset.VoxelAsset` in the input camera's voxel frame (x right,
y up, z toward the camera, unit cube) that :func:`pixal3d.export.glb.asset_to_glb` turns into a GLB.
Every stage's conditioning is the pixel back-projection of the image features
(:class:`pixal3d.conditioning.extractor.ConditionExtractor`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pixal3d.core.asset import VoxelAsset
from pixal3d.core.camera import DEFAULT_FOV_X, Camera, canonicalize_views
from pixal3d.core.cascade import DEFAULT_MAX_NUM_TOKENS
from pixal3d.devices import select_device
from pixal3d.errors import UserError
from pixal3d.models.loading import read_model_config
from pixal3d.models.pipeline_folder import PipelineFolder, open_pipeline_folder
from pixal3d.core.sparse_tensor import SparseTensor
from pixal3d.pipelines.cascade import CascadeChoice, choose_cascade_resolution
from pixal3d.sampling.flow_euler import (
    STAGE_DEFAULTS,
    FlowEulerGuidanceIntervalSampler,
    SamplerParams,
    draw_noise,
    draw_sparse_noise,
)
from pixal3d.utils.failpoints import failpoint

#: most sampling steps accepted (the official models use 12; beyond a few hundred only time changes)
MAX_STEPS = 500
#: largest guidance strength accepted (official 7.5; far above, the samples only saturate)
MAX_GUIDANCE = 100.0
#: seeds are unsigned 64-bit integers (what ``torch.Generator.manual_seed`` takes)
MAX_SEED = 2**64 - 1

#: ``progress`` of :meth:`Pixal3DPipeline.generate` / :meth:`~Pixal3DPipeline.run` / :meth:`GenerationResult.save_glb`:
#: ``True`` shows tqdm bars, ``False`` nothing, or a callable ``(stage, done, total)`` called when a stage starts
#: (``done = 0``) and after each of its ``total`` steps. Stages in order: ``preprocess``, ``sparse structure``,
#: ``shape 512``, ``shape <R>`` (the final resolution), ``texture``, ``decode``, and ``export`` for the GLB.
#: The callable draws no random numbers, so it changes no result.
Progress = Union[bool, Callable[[str, int, int], None]]


@dataclass
class GenerationOptions:
    """User-facing options of one generation (``None`` = the model folder's / official default).

    :meth:`validate` (called by :meth:`Pixal3DPipeline.generate`, and by the CLI and app before any model
    is loaded) refuses values out of range with one :class:`UserError`.
    """

    seed: int = 42
    fov: float | None = None  # horizontal FOV, radians; None → estimated (MoGe-2) or the official default
    camera: Camera | None = None  # a full camera overrides ``fov``
    #: multi-view: one world-frame camera per image (e.g. :func:`~pixal3d.core.camera.read_transforms` or
    #: :func:`~pixal3d.core.camera.orbit_cameras`); the output is in the first view's camera frame
    cameras: list[Camera] | None = None
    pipeline_type: str | None = None  # '1024_cascade' or '1536_cascade'
    steps: int | None = None  # every flow
    guidance: float | None = None  # structure and shape flows
    max_num_tokens: int | None = None
    preprocess: bool = True
    #: hold the voxels to the input silhouettes (:mod:`pixal3d.core.silhouette`: carve what lies outside every
    #: view's mask, snap the rim onto it); None → the model folder's ``silhouette_constraint`` (off officially)
    silhouette: bool | None = None
    sampler_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage → SamplerParams fields

    def validate(self) -> "GenerationOptions":
        """:class:`UserError` naming the first option out of range; returns ``self``."""
        def is_int(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if not is_int(self.seed) or not 0 <= int(self.seed) <= MAX_SEED:
            raise UserError(f"seed must be an integer between 0 and 2**64-1, got {self.seed!r}")
        if self.steps is not None and (not is_int(self.steps) or not 1 <= int(self.steps) <= MAX_STEPS):
            raise UserError(f"steps must be between 1 and {MAX_STEPS}, got {self.steps!r} (the official models use 12)")
        if self.guidance is not None and not (isinstance(self.guidance, (int, float)) and
                                              0.0 <= float(self.guidance) <= MAX_GUIDANCE):
            raise UserError(f"guidance must be between 0 and {MAX_GUIDANCE:g}, got {self.guidance!r} (official 7.5)")
        if self.fov is not None and not (isinstance(self.fov, (int, float)) and 0.0 < float(self.fov) < np.pi):
            raise UserError(f"fov must be between 0 and pi radians (0 and 180 degrees, exclusive), got {self.fov!r}")
        if self.max_num_tokens is not None and (not is_int(self.max_num_tokens) or int(self.max_num_tokens) < 1):
            raise UserError(f"max_num_tokens must be a positive integer, got {self.max_num_tokens!r}")
        return self


@dataclass
class PreparedImage:
    """An input image already loaded and preprocessed (:func:`prepare_image`): the RGB picture the pipeline
    conditions on (a square crop; a multi-view view keeps its whole canvas), what preprocessing did
    (``info['background']`` …) and the object's silhouette ``mask [H, W]`` bool in that picture (``None`` when
    unknown: an opaque picture given without preprocessing)."""

    image: Image.Image
    info: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = None


def prepare_image(image: "str | Path | Image.Image | PreparedImage", preprocess: bool = True,
                  crop: bool = True, device: str | torch.device = "cpu") -> PreparedImage:
    """Load (once) and preprocess an input image without any model of the pipeline, so a bad image fails before
    anything is loaded; a :class:`PreparedImage` is returned as is. :class:`UserError` for a bad image.

    ``crop=True``: alpha or background removal and the official square crop (:func:`preprocess_image`), or with
    ``preprocess=False`` the loaded picture as is (a transparent one composited on black, its alpha the mask).
    ``crop=False`` (a view of a multi-view capture, whose camera a crop would misalign): the whole canvas,
    background removed, on black (:func:`cut_out_canvas`). The mask is the cut-out's alpha ≥ 0.5
    (:func:`split_alpha`). The background-removal model runs on ``device`` (:mod:`pixal3d.image.background`).
    """
    from pixal3d.image.io import load_image
    from pixal3d.image.preprocess import crop_cutout, cut_out_canvas, split_alpha

    if isinstance(image, PreparedImage):
        return image
    if not crop:
        cutout, info = cut_out_canvas(image, device=str(device))
    elif not preprocess:
        picture = load_image(image)
        if picture.mode != "RGBA" or bool(np.all(np.asarray(picture.getchannel("A")) == 255)):
            return PreparedImage(picture.convert("RGB"), {})
        cutout, info = picture, {}
    else:
        cutout, info = crop_cutout(image, device=str(device))
    rgb, mask = split_alpha(cutout)
    return PreparedImage(rgb, info, mask)


@dataclass
class GenerationResult:
    """What one generation produced: the asset, the input, per-stage timings and every stage's tensors (``stages``)."""

    asset: VoxelAsset
    image: Image.Image  # the preprocessed RGB input (multi-view: the first view)
    camera: Camera
    timings: dict[str, float]
    info: dict[str, Any]
    stages: GenerationOutput | None = field(default=None, repr=False)

    def save_glb(self, path: str | Path, options=None, progress: Progress = True):
        """Clean up/simplify/unwrap/bake and write the GLB atomically with ``options``
        (:class:`~pixal3d.export.glb.ExportOptions`, default ones if ``None``) → ``ExportResult``.
        ``progress``: see :data:`Progress` (stage ``export``, one step per export stage)."""
        from pixal3d.export.glb import asset_to_glb

        started = time.perf_counter()
        result = asset_to_glb(self.asset, path, options, progress=progress)
        self.timings["export"] = time.perf_counter() - started
        return result

    def save_preview(self, path: str | Path, glb_path: str | Path, size: int = 512) -> None:
        """Render the written GLB through its input camera to a PNG (written atomically)."""
        from pixal3d.core.render import render_glb, save_png

        save_png(render_glb(glb_path, camera="input", size=size), path)

    def summary(self, total_seconds: float | None = None) -> str:
        """A per-stage time table and the facts of the run (resolution, tokens, camera, background)."""
        lines = [f"{'stage':<22}{'seconds':>10}"]
        lines += [f"{name:<22}{sec:>10.1f}" for name, sec in self.timings.items()]
        if total_seconds is not None:
            lines.append(f"{'total':<22}{total_seconds:>10.1f}")
        facts = ", ".join(f"{k}={v}" for k, v in self.info.items())
        return "\n".join(lines + [facts])


def stage_sampler_params(folder_samplers: dict[str, dict], options: GenerationOptions) -> dict[str, SamplerParams]:
    """Sampler settings per stage: official defaults ← the folder's ``pipeline.json`` ← user options.

    ``folder_samplers`` is a model folder's ``config.samplers``
    (:class:`~pixal3d.core.pipeline_config.PipelineConfig`: ``{'sparse_structure': {'params': {...}}, ...}``).
    """
    params = {}
    for stage, default in STAGE_DEFAULTS.items():
        stored = dict((folder_samplers.get(stage) or {}).get("params") or {})
        if "guidance_interval" in stored:
            stored["guidance_interval"] = tuple(stored["guidance_interval"])
        known = {k: v for k, v in stored.items() if k in SamplerParams.__dataclass_fields__}
        p = default.with_overrides(**known).with_overrides(steps=options.steps)
        if stage != "tex_slat":
            p = p.with_overrides(guidance_strength=options.guidance)
        params[stage] = p.with_overrides(**options.sampler_overrides.get(stage, {}))
    return params


def occupancy_to_coords(occupied: torch.Tensor, grid: int) -> torch.Tensor:
    """Occupancy ``[B, 1, D, D, D]`` bool (the sparse-structure decoder's ``logits > 0``) → coords ``[N, 4]`` int32 on
    a ``grid³`` lattice.

    When ``D > grid`` the occupancy is max-pooled by ``D // grid`` first (64³ → 32³ for the official cascade).
    Order = ``argwhere`` (lexicographic batch, x, y, z).
    """
    occupied = occupied.float()
    if occupied.shape[-1] != grid:
        factor = occupied.shape[-1] // grid
        occupied = F.max_pool3d(occupied, factor, factor)
    return torch.argwhere(occupied[:, 0] > 0.5).int()


@dataclass(frozen=True)
class Stage:
    """One flow stage of a generation: the pipeline-folder key of its ``flow``, its ``sampler`` settings key
    (:func:`stage_sampler_params`), its ``condition`` key (``image_cond_configs``) and its progress ``label``."""

    flow: str
    sampler: str
    condition: str
    label: str


#: the four flow stages in sampling order (the random stream draws their noise in this order)
STAGES = {
    "structure": Stage("sparse_structure_flow_model", "sparse_structure", "ss", "sparse structure"),
    "shape_lr": Stage("shape_slat_flow_model_512", "shape_slat", "shape_512", "shape 512"),
    "shape_hr": Stage("shape_slat_flow_model_1024", "shape_slat", "shape_1024", "shape 1024"),
    "texture": Stage("tex_slat_flow_model_1024", "tex_slat", "tex_1024", "texture"),
}


@dataclass
class FlowSample:
    """What one flow stage drew and produced: ``noise`` (dense ``[1, C, r, r, r]`` or a SparseTensor), ``cond``
    (the conditioning dict: ``global``, ``proj``; image tokens ``[1, M, C]`` for a cross-attention flow),
    ``samples`` (the normalised sample, same layout as ``noise``),
    ``slat`` (the denormalised latent of a sparse stage) and ``concat_cond`` (the texture stage's normalised
    shape latent)."""

    noise: torch.Tensor | SparseTensor
    cond: dict[str, Any] | torch.Tensor
    samples: torch.Tensor | SparseTensor
    slat: SparseTensor | None = None
    concat_cond: SparseTensor | None = None

    @property
    def coords(self) -> torch.Tensor:
        """``[N, 4]`` int32 (batch, x, y, z) coordinates of a sparse stage."""
        return self.noise.coords


@dataclass
class StructureSample(FlowSample):
    """The sparse-structure stage: also the decoder's occupancy ``logits [1, 1, D, D, D]`` and the occupied
    ``occupied [N, 4]`` int32 coordinates on the structure grid (the first shape stage's tokens)."""

    logits: torch.Tensor | None = None
    occupied: torch.Tensor | None = None


@dataclass
class DecodedVoxels:
    """The decoders' output at ``R³``: ``shape_raw`` (7-channel SparseTensor), ``dual_grid`` (its heads: dual-vertex
    offsets ``[N, 3]``, edge flags ``[N, 3]`` bool, split weights ``[N, 1]``), ``subdivisions`` (one SparseTensor of
    child logits per up-block) and ``pbr`` (6 channels in [0, 1]: base RGB, metallic, roughness, alpha)."""

    shape_raw: SparseTensor
    dual_grid: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    subdivisions: list[SparseTensor]
    pbr: SparseTensor


@dataclass
class GenerationOutput:
    """Everything :meth:`Pixal3DPipeline.run` computed, one entry per stage in order: ``structure``, ``shape_lr``,
    ``coords_512`` (the low-res latent upsampled by the shape decoder, ``[M, 4]``), ``cascade`` (the resolution
    chosen under the token budget), ``shape_hr``, ``texture``, ``decoded``, and ``timings`` (seconds per stage)."""

    structure: StructureSample
    shape_lr: FlowSample
    coords_512: torch.Tensor
    cascade: CascadeChoice
    shape_hr: FlowSample
    texture: FlowSample
    decoded: DecodedVoxels
    timings: dict[str, float]

    @property
    def resolution(self) -> int:
        """The final voxel resolution ``R``."""
        return int(self.cascade.resolution)


class Pixal3DPipeline:
    """Pixal3D image-to-3D from a model folder (official Pixal3D layout or this project's own models).

    Use :meth:`from_pretrained`, then :meth:`generate` (image file or PIL image → :class:`GenerationResult`)
    or the lower-level :meth:`run` (preprocessed image + camera → latents and decoded asset).
    """

    #: pipeline keys the cascade needs: the flows of :data:`STAGES` and the three decoders
    REQUIRED_STAGES = (*(stage.flow for stage in STAGES.values()),
                       "sparse_structure_decoder", "shape_slat_decoder", "tex_slat_decoder")

    def __init__(self, folder: PipelineFolder, conditioner, device: torch.device, low_vram: bool = False,
                 quantize: str | None = None):
        from pixal3d.models.quantize import stage_transform

        self.folder = folder
        self.conditioner = conditioner
        self.device = device
        self.low_vram = low_vram
        self.quantize = quantize or "none"
        self.sampler = FlowEulerGuidanceIntervalSampler()
        self.models = folder.models(device=device, low_memory=low_vram, transform=stage_transform(quantize))
        self.cascade_config = folder.config.cascade_config

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path | PipelineFolder, device: str | torch.device | None = None,
                        low_vram: bool = False, quantize: str | None = None) -> "Pixal3DPipeline":
        """Open a model folder (``pipeline.json`` + ``ckpts/``; path or opened) and its image encoder.

        ``quantize="int8"``: the flows' Linear layers run as dynamically quantised int8 on the CPU
        (:mod:`pixal3d.models.quantize`; opt-in, changes the numbers). Default: exact float weights.

        A path is opened and checked first (:meth:`open_folder`, headers only); an opened folder is one
        :meth:`open_folder` returned. Without ``low_vram`` every stage is loaded now (NaN/Inf weights are refused
        before any sampling); with it, each loads when used.
        """
        from pixal3d.conditioning.extractor import ConditionExtractor

        device = select_device(str(device) if device is not None else None)
        if quantize not in (None, "none") and device.type != "cpu":
            raise UserError(f"--quantize {quantize} runs on the CPU only (PyTorch has no {device.type} int8 kernels); "
                            "drop it or use --device cpu")
        folder = path if isinstance(path, PipelineFolder) else cls.open_folder(path)
        conditioner = ConditionExtractor.for_folder(folder, device=device)
        pipeline = cls(folder, conditioner, device, low_vram, quantize)
        if not low_vram:  # every stage stays resident anyway: load now, so a bad weight fails before any sampling
            for key in cls.REQUIRED_STAGES:
                pipeline.models[key]
        return pipeline

    @classmethod
    def open_folder(cls, path: str | Path) -> PipelineFolder:
        """Open a model folder and check it for Pixal3D generation without reading tensor data — the one
        validation of a model folder: ``pipeline.json`` read (:func:`open_pipeline_folder`), every required stage
        present and fitting its class (:meth:`PipelineFolder.check`), pixel back-projection flows, and the
        stages' latent channels fitting each other and the folder's normalisation. :class:`UserError` otherwise."""
        folder = open_pipeline_folder(path)
        checked = folder.check(list(cls.REQUIRED_STAGES))
        for key, (checkpoint, model) in checked.items():
            if getattr(model, "image_attn_mode", "proj") != "proj" and not folder.config.camera_frame_cross_attention:
                raise UserError(f"{key} ({checkpoint.json_path.name}) is a cross-attention flow (TRELLIS.2); Pixal3D "
                                "generation needs pixel back-projection ('proj') flows: use TencentARC/Pixal3D's model folder")

        def channels(key: str, arg: str) -> int | None:
            value = checked[key][0].args.get(arg)
            return int(value) if isinstance(value, int) else None

        shape_c, tex_c = channels("shape_slat_decoder", "latent_channels"), channels("tex_slat_decoder", "latent_channels")
        norms = {kind: len(entry.get("mean", [])) for kind, entry in folder.config.normalization.items()}
        rules = [
            ("sparse_structure_flow_model", "out_channels", channels("sparse_structure_decoder", "latent_channels"),
             "the sparse-structure decoder's latent channels"),
            ("shape_slat_flow_model_512", "out_channels", shape_c, "the shape decoder's latent channels"),
            ("shape_slat_flow_model_1024", "out_channels", shape_c, "the shape decoder's latent channels"),
            ("shape_slat_flow_model_512", "in_channels", shape_c, "the shape decoder's latent channels"),
            ("shape_slat_flow_model_1024", "in_channels", shape_c, "the shape decoder's latent channels"),
            ("tex_slat_flow_model_1024", "out_channels", tex_c, "the texture decoder's latent channels"),
            ("tex_slat_flow_model_1024", "in_channels", (tex_c + shape_c) if tex_c and shape_c else None,
             "texture + shape latent channels"),
            ("shape_slat_decoder", "latent_channels", norms.get("shape_slat"), "shape_slat_normalization"),
            ("tex_slat_decoder", "latent_channels", norms.get("tex_slat"), "tex_slat_normalization"),
        ]
        for key, arg, expected, what in rules:
            have = channels(key, arg)
            if have is not None and expected and have != expected:
                raise UserError(f"{key} ({checked[key][0].json_path.name}) has {arg}={have}, but {what} are {expected}: "
                                f"the stages do not belong together (another stage's or another model's checkpoint?)")
        return folder

    # --- the stages ------------------------------------------------------------------------------
    # Each stage method draws its noise from ``generator`` (the CPU generator :meth:`run` seeds; the global one
    # when None), so calling them in order with one generator reproduces the official random stream.
    def _condition(self, stage: Stage, image, camera, coords: torch.Tensor | None = None,
                   grid_resolution: int | None = None) -> dict[str, Any] | torch.Tensor:
        """The condition of ``stage``'s flow: the back-projected image features (``proj`` flows), or the image
        tokens for a cross-attention flow, which only a folder marked ``camera_frame_cross_attention`` may hold
        (this project's ablations; TRELLIS.2's canonical-frame flows are refused)."""
        if read_model_config(self.folder.stage(stage.flow).stem)[1].get("image_attn_mode", "proj") == "proj":
            return self.conditioner.condition(stage.condition, image, camera, coords=coords,
                                              grid_resolution=grid_resolution)
        if not self.folder.config.camera_frame_cross_attention:
            raise UserError(f"{stage.flow} is a cross-attention flow (TRELLIS.2); Pixal3D generation needs "
                            "pixel back-projection ('proj') flows such as TencentARC/Pixal3D's")
        return self.conditioner.tokens(stage.condition, image)

    def _sample(self, key: str, label: str, noise, cond: dict[str, Any] | torch.Tensor, params: SamplerParams,
                progress: Progress, **model_kwargs):
        neg = self.conditioner.negative(cond)
        steps = progress
        if callable(progress):  # the stage's own callback: (label, done, total) after every Euler step
            progress(label, 0, params.steps)
            steps = lambda done, total: progress(label, done, total)  # noqa: E731
        with self.models.use(key) as flow:
            return self.sampler.sample(flow, noise, cond, neg, **params.as_kwargs(), progress=steps,
                                       desc=f"{label} ({params.steps} steps)", **model_kwargs).samples

    def _out_channels(self, key: str) -> int:
        with self.models.use(key) as flow:
            return int(flow.out_channels)

    @torch.no_grad()
    def sample_sparse_structure(self, image: Image.Image, camera: Camera, params: SamplerParams,
                                progress: Progress = True, generator: torch.Generator | None = None,
                                silhouettes: list | None = None) -> StructureSample:
        """Dense flow on the 16³ latent → decoder logits → occupied coords ``[N, 4]`` on the structure grid (32³).

        ``silhouettes`` (:class:`~pixal3d.core.silhouette.SilhouetteView` per view, the silhouette constraint): the
        occupancy is completed so that every mask pixel's ray meets an occupied cell
        (:func:`~pixal3d.core.silhouette.complete_occupancy`)."""
        stage = STAGES["structure"]
        cond = self._condition(stage, image, camera)
        with self.models.use(stage.flow) as flow:
            r = flow.resolution
            noise = draw_noise((1, flow.out_channels, r, r, r), self.device, generator)
        z = self._sample(stage.flow, stage.label, noise, cond, params, progress)
        with self.models.use("sparse_structure_decoder") as decoder:
            logits = decoder(z)
        occupancy = logits > 0
        if silhouettes:
            from pixal3d.core.silhouette import complete_occupancy

            filled = complete_occupancy(logits[0, 0].float().cpu().numpy(), silhouettes,
                                        silhouettes[0].camera.mesh_scale)
            occupancy = torch.from_numpy(filled)[None, None].to(logits.device)
        occupied = occupancy_to_coords(occupancy, self.cascade_config.structure_grid)
        if len(occupied) == 0:
            raise UserError("the sparse-structure stage found no occupied voxels (try another seed or image)")
        return StructureSample(noise, cond, z, logits=logits, occupied=occupied)

    @torch.no_grad()
    def sample_shape(self, stage: str, image: Image.Image, camera: Camera, coords: torch.Tensor, params: SamplerParams,
                     grid_resolution: int | None = None, progress: Progress = True,
                     generator: torch.Generator | None = None) -> FlowSample:
        """Shape flow of ``stage`` (``"shape_lr"`` or ``"shape_hr"`` of :data:`STAGES`) on ``coords [N, 4]``."""
        spec = STAGES[stage]
        mean, std = self.folder.latent_normalization("shape_slat", self.device)
        cond = self._condition(spec, image, camera, coords=coords, grid_resolution=grid_resolution)
        noise = draw_sparse_noise(coords, self._out_channels(spec.flow), self.device, generator)
        scale = self.cascade_config.latent_scale
        label = f"shape {(grid_resolution or self.cascade_config.structure_grid) * scale}"
        samples = self._sample(spec.flow, label, noise, cond, params, progress)
        return FlowSample(noise, cond, samples, slat=samples.replace(samples.feats * std + mean))

    @torch.no_grad()
    def cascade(self, shape_lr: SparseTensor, pipeline_type: str, max_num_tokens: int) -> tuple[torch.Tensor, CascadeChoice]:
        """Upsample the denormalised low-res shape latent (to the 512-grid officially) and choose ``R`` under the token budget."""
        config = self.cascade_config
        with self.models.use("shape_slat_decoder") as decoder:
            coords_up = decoder.upsample(shape_lr, upsample_times=config.upsample_times)
        return coords_up, choose_cascade_resolution(coords_up.cpu(), pipeline_type, max_num_tokens, config)

    @torch.no_grad()
    def sample_texture(self, image: Image.Image, camera: Camera, shape_slat: SparseTensor, grid_resolution: int,
                       params: SamplerParams, progress: Progress = True,
                       generator: torch.Generator | None = None) -> FlowSample:
        """Texture flow on the shape's coords, conditioned on the normalised shape latent (noise first)."""
        stage = STAGES["texture"]
        shape_mean, shape_std = self.folder.latent_normalization("shape_slat", self.device)
        tex_mean, tex_std = self.folder.latent_normalization("tex_slat", self.device)
        cond = self._condition(stage, image, camera, coords=shape_slat.coords, grid_resolution=grid_resolution)
        noise = draw_sparse_noise(shape_slat.coords, self._out_channels(stage.flow), self.device, generator)
        concat = shape_slat.replace((shape_slat.feats - shape_mean) / shape_std)
        samples = self._sample(stage.flow, stage.label, noise, cond, params, progress, concat_cond=concat)
        return FlowSample(noise, cond, samples, slat=samples.replace(samples.feats * tex_std + tex_mean), concat_cond=concat)

    @torch.no_grad()
    def decode(self, shape_slat: SparseTensor, tex_slat: SparseTensor, resolution: int,
               silhouettes: list | None = None) -> DecodedVoxels:
        """Decoders at ``resolution``: 7-channel shape output, its heads, subdivisions, PBR (×0.5+0.5).
        ``silhouettes`` (the silhouette constraint): every subdivision the shape decoder decides is held to the
        masks (:func:`~pixal3d.core.silhouette.constrain_subdivisions`); the texture decoder follows the result."""
        with self.models.use("shape_slat_decoder") as decoder:
            decoder.set_resolution(resolution)
            if silhouettes:
                from pixal3d.core.silhouette import constrain_subdivisions

                scale = silhouettes[0].camera.mesh_scale

                def hold(parents: torch.Tensor, logits: torch.Tensor, grid: int) -> torch.Tensor:
                    held = constrain_subdivisions(parents.cpu().numpy(), logits.float().cpu().numpy(), grid,
                                                  silhouettes, scale)
                    return torch.from_numpy(held).to(logits)

                decoder.set_subdivision_filter(hold)
            try:
                shape_raw, subdivisions = decoder(shape_slat)
            finally:
                decoder.set_subdivision_filter(None)
            dual_grid = decoder.heads(shape_raw)
        with self.models.use("tex_slat_decoder") as decoder:
            pbr = decoder(tex_slat, guide_subs=subdivisions)
        return DecodedVoxels(shape_raw, dual_grid, subdivisions, pbr.replace(pbr.feats * 0.5 + 0.5))

    def run(
        self,
        image: Image.Image,
        camera: Camera,
        seed: int = 42,
        pipeline_type: str = "1536_cascade",
        max_num_tokens: int = DEFAULT_MAX_NUM_TOKENS,
        sampler_params: dict[str, SamplerParams] | None = None,
        progress: Progress = True,
        silhouettes: list | None = None,
    ) -> GenerationOutput:
        """All generation stages on a preprocessed RGB ``image`` seen by ``camera`` — or on lists of views and their
        cameras in the canonical frame of view 0 (multi-view; one view in a list is the single-view result).
        ``silhouettes``: the views' masks when the silhouette constraint is on (the structure is completed to cover
        them, :meth:`sample_sparse_structure`, and so is every subdivision of the shape decoder, :meth:`decode`;
        :meth:`generate` carves and snaps the decoded asset).

        Returns a :class:`GenerationOutput` (one entry per stage; timings in seconds). The noise comes from a CPU
        ``torch.Generator`` seeded with ``seed`` (the global generator is untouched). ``progress``: see
        :data:`Progress`.
        """
        if pipeline_type not in self.cascade_config.pipeline_types:
            raise UserError(f"unknown pipeline type {pipeline_type!r} (this model has {', '.join(self.cascade_config.pipeline_types)})")
        params = sampler_params or stage_sampler_params(self.folder.config.samplers, GenerationOptions())
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = now - clock
            clock = now
            failpoint("generate.stage")

        generator = torch.Generator("cpu").manual_seed(int(seed))
        structure = self.sample_sparse_structure(image, camera, params[STAGES["structure"].sampler], progress, generator,
                                                 silhouettes)
        lap(STAGES["structure"].label)
        lr = self.sample_shape("shape_lr", image, camera, structure.occupied, params[STAGES["shape_lr"].sampler],
                               progress=progress, generator=generator)
        lap(STAGES["shape_lr"].label)
        coords_512, choice = self.cascade(lr.slat, pipeline_type, max_num_tokens)
        grid_hr = choice.resolution // self.cascade_config.latent_scale
        hr = self.sample_shape("shape_hr", image, camera, choice.coords.to(self.device), params[STAGES["shape_hr"].sampler],
                               grid_resolution=grid_hr, progress=progress, generator=generator)
        lap(f"shape {choice.resolution}")
        tex = self.sample_texture(image, camera, hr.slat, grid_hr, params[STAGES["texture"].sampler], progress, generator)
        lap(STAGES["texture"].label)
        if callable(progress):
            progress("decode", 0, 1)
        decoded = self.decode(hr.slat, tex.slat, choice.resolution, silhouettes)
        lap("decode")
        if callable(progress):
            progress("decode", 1, 1)
        return GenerationOutput(structure, lr, coords_512, choice, hr, tex, decoded, timings)

    # --- from an image file to a result ------------------------------------------------------------
    def default_pipeline_type(self) -> str:
        """The folder's ``default_pipeline_type`` (official: ``1536_cascade``; ``1024_cascade`` in low-memory mode)."""
        types = self.cascade_config.pipeline_types
        if self.low_vram and "1024_cascade" in types:
            return "1024_cascade"
        default = self.folder.config.default_pipeline_type
        return default if default in types else max(types, key=types.get)

    def pipeline_type_for(self, resolution: int) -> str:
        """The pipeline type starting at final resolution ``resolution`` (e.g. 1536 → ``1536_cascade``)."""
        return self.cascade_config.pipeline_type_for(resolution)

    def silhouette_enabled(self, options: GenerationOptions) -> bool:
        """Whether a generation holds its voxels to the input silhouettes: ``options.silhouette``, else the folder's
        ``silhouette_constraint`` (this project's models set it; the official pipeline does not carve)."""
        if options.silhouette is not None:
            return bool(options.silhouette)
        return bool(self.folder.config.silhouette_constraint)

    def choose_camera(self, image: Image.Image, options: GenerationOptions) -> tuple[Camera, str]:
        """The camera to use and where it came from (``given``, ``manual fov``, ``MoGe-2``, ``default fov``)."""
        if options.camera is not None:
            return options.camera, "given"
        if options.fov is not None:
            return Camera.front(options.fov), "manual fov"
        from pixal3d.conditioning.camera_estimation import estimate_fov

        fov = estimate_fov(image, self.device)
        if fov is not None:
            return Camera.front(fov), "MoGe-2"
        return Camera.front(DEFAULT_FOV_X), "default fov"

    def _multiview_inputs(self, images: list, options: GenerationOptions
                          ) -> tuple[list[PreparedImage], list[Camera], Camera, dict[str, Any]]:
        """Multi-view: every image cut out and composited on black without a crop (its camera stays exact;
        :func:`prepare_image` with ``crop=False``), the cameras mapped into view 0's canonical frame, and view 0's
        camera as the output camera."""
        cameras = options.cameras
        if cameras is None:
            raise UserError("several images need their cameras: give a cameras file (transforms.json) or turntable azimuths")
        if len(cameras) != len(images):
            raise UserError(f"got {len(images)} images but {len(cameras)} cameras")
        prepared = [prepare_image(im, crop=False, device=self.device) for im in images]
        views = [p.image for p in prepared]
        if len({v.size for v in views}) > 1:
            raise UserError("multi-view images must all have the same size, got "
                            + ", ".join(f"{v.width}x{v.height}" for v in views))
        used = [p.info.get("background", "given") for p in prepared]  # a PreparedImage may come cut out already
        canonical = canonicalize_views(cameras)
        first = canonical[0]
        fov0 = first.fov_x
        output_camera = Camera.front(fov0, first.distance, first.mesh_scale)
        info = {"views": len(views), "background": ",".join(sorted(set(used))),
                "camera": f"view 0 of {len(views)} (fov {fov0:.4f} rad, distance {output_camera.distance:.4f})"}
        return prepared, canonical, output_camera, info

    def generate(self, image: str | Path | Image.Image | PreparedImage | list, options: GenerationOptions | None = None,
                 progress: Progress = True) -> GenerationResult:
        """Preprocess ``image`` (unless it is a :class:`PreparedImage`), pick the camera, run every stage and
        decode → :class:`GenerationResult`.

        Multi-view: ``image`` a list of views of one object and ``options.cameras`` their world-frame cameras;
        the views are not cropped, every stage's condition is the average of the views' back-projections,
        and the result lies in the first view's camera frame (pixel-aligned with the first image).
        ``progress``: see :data:`Progress`.
        """
        options = (options or GenerationOptions()).validate()
        started = time.perf_counter()
        if callable(progress):
            progress("preprocess", 0, 1)
        info: dict[str, Any] = {}
        if isinstance(image, (list, tuple)) or options.cameras is not None:
            views, camera_arg, camera, info = self._multiview_inputs(list(image) if isinstance(image, (list, tuple))
                                                                     else [image], options)
            picture, cameras = [v.image for v in views], list(camera_arg)
        else:
            prepared = prepare_image(image, options.preprocess, device=self.device)
            picture, views = prepared.image, [prepared]
            if "background" in prepared.info:
                info["background"] = prepared.info["background"]
            camera, camera_source = self.choose_camera(picture, options)
            camera_arg, cameras = camera, [camera]
            info.update({"camera": f"{camera_source} (fov {camera.fov_x:.4f} rad, distance {camera.distance:.4f})"})
        silhouettes = None
        if self.silhouette_enabled(options):
            silhouettes = silhouette_views(views, cameras, required=bool(options.silhouette))
            if silhouettes is None:
                info["silhouette"] = "off (no mask: an opaque picture without preprocessing)"
        preprocess_seconds = time.perf_counter() - started
        if callable(progress):
            progress("preprocess", 1, 1)

        out = self.run(
            picture, camera_arg, seed=options.seed,
            pipeline_type=options.pipeline_type or self.default_pipeline_type(),
            max_num_tokens=options.max_num_tokens or DEFAULT_MAX_NUM_TOKENS,
            sampler_params=stage_sampler_params(self.folder.config.samplers, options), progress=progress,
            silhouettes=silhouettes,
        )
        info.update({"resolution": out.resolution, "tokens": len(out.cascade.coords), "seed": options.seed})
        asset = decoded_asset(out, camera, source={"model": str(self.folder.path), "seed": options.seed})
        timings = {"preprocess + camera": preprocess_seconds, **out.timings}
        if silhouettes:
            from pixal3d.core.silhouette import constrain_to_silhouettes

            started = time.perf_counter()
            asset, counts = constrain_to_silhouettes(asset, silhouettes)
            info["silhouette"] = f"{counts['carved']} voxels carved, {counts['snapped']} vertices snapped"
            timings["silhouette"] = time.perf_counter() - started
        first = picture[0] if isinstance(picture, list) else picture
        return GenerationResult(asset, first, camera, timings, info, stages=out)


def silhouette_views(views: list[PreparedImage], cameras: list[Camera], required: bool = False) -> list | None:
    """The silhouette constraint's views (:class:`~pixal3d.core.silhouette.SilhouetteView`: each prepared view's
    mask with its camera, the frame the generation conditions in), or ``None`` when a view has no mask (an opaque
    picture given without preprocessing) — :class:`UserError` then if the constraint was asked for (``required``)."""
    from pixal3d.core.silhouette import SilhouetteView

    if any(view.mask is None for view in views):
        if required:
            raise UserError("the silhouette constraint needs the object's mask: give a transparent (RGBA) cut-out, "
                            "or let preprocessing remove the background")
        return None
    return [SilhouetteView(view.mask, cam) for view, cam in zip(views, cameras)]


def decoded_asset(out: GenerationOutput, camera: Camera, source: dict | None = None) -> VoxelAsset:
    """The :class:`VoxelAsset` of a :meth:`Pixal3DPipeline.run` output (dual-grid shape + PBR voxels)."""
    raw, pbr = out.decoded.shape_raw, out.decoded.pbr
    if not torch.equal(raw.coords, pbr.coords):
        raise RuntimeError("shape and texture decoders produced different voxels")
    dual_vertices, intersected, split_weight = out.decoded.dual_grid
    return VoxelAsset(
        resolution=out.resolution,
        coords=raw.coords[:, 1:].cpu().numpy().astype(np.int32),
        attrs=pbr.feats.float().cpu().numpy().astype(np.float32),
        dual_vertices=dual_vertices.cpu().numpy().astype(np.float32),
        intersected=intersected.cpu().numpy(),
        split_weight=split_weight[:, 0].cpu().numpy().astype(np.float32),
        camera=camera,
        source=source or {},
    )
