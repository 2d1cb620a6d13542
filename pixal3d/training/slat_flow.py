"""Structured-latent flow trainers: the shape SLat flows (512 / 1024 stage keys) and the texture SLat flow.

Targets are computed on the fly from the batch's O-Voxels with the frozen SC-VAE encoders of the base pipeline
folder (posterior mean), normalised per channel with the folder's ``shape_slat_normalization`` /
``tex_slat_normalization`` (what the pipeline's flows output). The flow-matching objective is the one of
:mod:`pixal3d.training.flow_matching` applied row-wise to the sparse latent: ``t``, noise and CFG dropout are
drawn per item from its generator (noise rows of item ``b`` from generator ``b``), and the loss is the mean
squared velocity error per item (over its voxels and channels), averaged over the batch.

Conditioning is the differentiable pixel back-projection of each item's conditioning view onto the latent's
voxels, on the latent grid ``G = R / 2^(levels−1)`` (``R / 16`` for the official 5-level encoders), as the
pipeline conditions the 1024 stage (``grid_resolution = R // 16``).

Stage keys. One trainer serves both shape keys: ``flow_key`` names the key it trains
(``shape_slat_flow_model_1024`` by default, or ``shape_slat_flow_model_512``) and ``serves`` lists further keys
that point at the same checkpoint in the written ``pipeline.json``. A small model trained at one resolution, whose
cascade has ``structure_grid = R / 16`` and a single pipeline type ``R``, runs the 512 and 1024 stages on the
same grid, so ``{"flow_key": "shape_slat_flow_model_1024", "serves": ["shape_slat_flow_model_512"]}`` gives it
both stages from one network, and the trainer then writes that cascade (and ``default_pipeline_type``) into
``pipeline.json`` (``cascade`` in the trainer args overrides it). Official-size models train the two keys as two
runs on data at 512 and at 1024+ (``flow_key`` each) and keep the official cascade. The texture trainer trains ``tex_slat_flow_model_1024`` with
``concat_cond`` = the normalised shape latent of the same voxels (noise first, shape second, as the pipeline).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import ConcatDataset

from pixal3d.core.cascade import CascadeConfig
from pixal3d.errors import UserError
from pixal3d.models.pipeline_folder import StageWeights
from pixal3d.core.sparse_tensor import SparseTensor
from pixal3d.training.flow_matching import FlowTrainer, diffuse, velocity_target
from pixal3d.training.sc_vae import encode_batch, item_counts, per_item_mean
from pixal3d.training.trainer import CKPT_DIR

SHAPE_ENCODER = "shape_slat_encoder"
TEX_ENCODER = "tex_slat_encoder"
#: pipeline stage key → conditioning stage name of the pipeline (:mod:`pixal3d.conditioning.extractor`)
COND_STAGES = {
    "shape_slat_flow_model_512": "shape_512",
    "shape_slat_flow_model_1024": "shape_1024",
    "tex_slat_flow_model_1024": "tex_1024",
}


def encoder_scale(encoder: nn.Module) -> int:
    """Downsampling factor of a sparse U-Net VAE encoder: ``2^(levels − 1)`` (16 for the official encoders)."""
    return 2 ** (len(encoder.blocks) - 1)


def dataset_resolution(dataset: Any) -> int:
    """Voxel resolution ``R`` of a :class:`~pixal3d.data.dataset.ViewDataset` (or a concatenation of them)."""
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    resolutions = {int(getattr(p, "resolution", 0)) for p in parts}
    if len(resolutions) != 1 or 0 in resolutions:
        raise UserError(f"SLat flow training needs datasets of one voxel resolution, got {sorted(resolutions)}")
    return resolutions.pop()


@torch.no_grad()
def posterior_mean(kind: str, encoder: nn.Module, batch: dict[str, Any], device: torch.device) -> SparseTensor:
    """Posterior mean of ``kind``'s SC-VAE encoder (``shape_slat``: dual vertices + edge flags; ``tex_slat``: PBR
    attributes as ``2a − 1``) for a collated batch, float32 on the latent voxels."""
    return encode_batch(kind, encoder, batch, device)[0]


def item_noise(x: SparseTensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Standard normal ``[N, C]`` for the rows of ``x``; item ``b``'s rows (contiguous) from ``generators[b]``."""
    channels = x.feats.shape[1]
    counts = item_counts(x.coords, len(generators)).tolist()
    parts = [torch.randn((n, channels), generator=g) for n, g in zip(counts, generators)]
    return torch.cat(parts).to(x.feats.device)


class SLatFlowTrainer(FlowTrainer):
    """Shared parts of the SLat flow trainers (see the module docstring).

    Trainer args beyond :class:`FlowTrainer`'s: ``flow_key`` (the stage key trained), ``serves`` (further stage
    keys written as pointers to the same checkpoint). ``image_encoder`` must be ``"base"`` when the base folder
    already holds flows: one pipeline has a single image encoder for all its stages.
    """

    allowed_keys: tuple[str, ...] = ()
    latent_kind = ""
    dataset_fields = ("image", "voxels")

    def build(self) -> None:
        self.flow_key = str(self.args.get("flow_key", self.allowed_keys[-1]))
        self.serves = [str(k) for k in self.args.get("serves", [])]
        for key in [self.flow_key, *self.serves]:
            if key not in self.allowed_keys:
                raise UserError(f"{self.name}: stage key {key!r} must be one of {', '.join(self.allowed_keys)}")
        if self.flow_key in self.serves:
            raise UserError(f"{self.name}: serves repeats the trained key {self.flow_key}")
        if self.base is None:
            raise UserError(f"{self.name} needs trainer.args.base_pipeline (a pipeline folder with the SC-VAE encoders)")
        if self.args.get("image_encoder", "base") != "base":
            flows = sorted(k for k in self.base.stages if "flow_model" in k and k not in (self.flow_key, *self.serves))
            if flows:
                raise UserError(f"{self.name}: the base pipeline's flows ({', '.join(flows)}) use its image encoder; "
                                "set image_encoder to \"base\"")
        self.cond_stage = COND_STAGES[self.flow_key]
        flow = self.build_stage(self.flow_key)
        self.trainable[self.flow_key] = flow
        self.encoders = {key: self.load_frozen(key) for key in self.encoder_keys()}
        scales = {encoder_scale(e) for e in self.encoders.values()}
        if len(scales) != 1:
            raise UserError(f"{self.name}: the SC-VAE encoders downsample by different factors {sorted(scales)}")
        resolution, scale = dataset_resolution(self.dataset), scales.pop()
        if resolution % scale:
            raise UserError(f"{self.name}: voxel resolution {resolution} is not a multiple of the encoder's factor {scale}")
        self.resolution, self.scale = resolution, scale
        self.cascade = self.cascade_settings()
        self.check_channels(flow)
        self.norm = {kind: self.base.latent_normalization(kind, self.device) for kind in self.normalizations()}
        self.setup_conditioner(flow, resolution // scale)

    def cascade_settings(self) -> dict[str, Any] | None:
        """The ``pipeline.json`` ``"cascade"`` to write: ``trainer.args.cascade`` when given; else, for one network
        serving both shape stages, the single-resolution cascade of the training data (structure grid = latent
        grid ``R / f``, ``upsample_times = log2 f``, one pipeline type ``"{R}_cascade"``); else none (the base's)."""
        spec = self.args.get("cascade")
        if spec is not None:
            CascadeConfig.from_args(spec)  # UserError when invalid
            return dict(spec)
        if len(self.allowed_keys) < 2 or not set(self.allowed_keys) <= {self.flow_key, *self.serves}:
            return None
        r, f = self.resolution, self.scale
        return {"structure_grid": r // f, "upsample_times": f.bit_length() - 1, "pipeline_types": {f"{r}_cascade": r},
                "min_resolution": r, "resolution_step": f}

    # --- per-trainer parts ---------------------------------------------------------------------------
    def encoder_keys(self) -> list[str]:
        """Base-folder stage keys of the frozen encoders this trainer needs."""
        return list(self.target_encoders)

    def normalizations(self) -> list[str]:
        """Latent kinds whose ``*_normalization`` the base folder must give."""
        raise NotImplementedError

    def check_channels(self, flow: nn.Module) -> None:
        """:class:`UserError` when the flow's channels do not fit the encoders' latents."""
        raise NotImplementedError

    def targets(self, batch: dict[str, Any]) -> tuple[SparseTensor, dict[str, Any]]:
        """``(normalised target latent, extra flow kwargs)`` of a batch."""
        raise NotImplementedError

    # --- shared --------------------------------------------------------------------------------------
    def normalized(self, latent: SparseTensor, kind: str) -> SparseTensor:
        """``(latent − mean) / std`` with the base folder's ``<kind>_normalization``."""
        mean, std = self.norm[kind]
        if mean.numel() != latent.feats.shape[1]:
            raise UserError(f"{kind}_normalization has {mean.numel()} channels, the latent {latent.feats.shape[1]}")
        return latent.replace((latent.feats.float() - mean) / std)

    def compute_loss(self, batch, generators):
        x0, kwargs = self.targets(batch)
        noise = item_noise(x0, generators)
        t = self.times(generators)
        x_t = x0.replace(diffuse(x0.feats, noise, t[x0.batch_index][:, None], self.sigma_min))
        cond = self.condition(batch, generators, coords=x0.coords)
        pred = self.trainable[self.flow_key](x_t, 1000 * t, cond, **kwargs)
        err = (pred.feats.float() - velocity_target(x0.feats, noise, self.sigma_min)) ** 2
        loss = per_item_mean(err, x0.coords, len(generators)).mean()
        return loss, {"mse": loss}

    def pipeline_args(self) -> dict[str, Any]:
        args = super().pipeline_args()
        stage_cfg = args["image_cond_configs"][self.cond_stage]
        for key in self.serves:
            args["image_cond_configs"][COND_STAGES[key]] = dict(stage_cfg)
        if self.serves:
            args["models"] = {key: f"{CKPT_DIR}/{self.flow_key}" for key in self.serves}
        if self.cascade is not None:
            args["cascade"] = self.cascade
            args["default_pipeline_type"] = max(self.cascade["pipeline_types"], key=self.cascade["pipeline_types"].get)
        return args

    def _base_stages(self) -> dict[str, StageWeights]:
        # keys served by the trained checkpoint are pointers, not copies of the base folder's stages
        return {k: v for k, v in super()._base_stages().items() if k not in self.serves}


class ShapeSLatFlowTrainer(SLatFlowTrainer):
    """Shape SLat flow on the frozen ``shape_slat_encoder``'s normalised latents.

    models: ``shape_slat_flow_model_1024`` or ``shape_slat_flow_model_512`` (``flow_key``); base pipeline:
    ``shape_slat_encoder`` and ``shape_slat_normalization``.
    """

    name = "ShapeSLatFlowTrainer"
    allowed_keys = ("shape_slat_flow_model_512", "shape_slat_flow_model_1024")
    target_encoders = (SHAPE_ENCODER,)

    def normalizations(self) -> list[str]:
        return ["shape_slat"]

    def check_channels(self, flow: nn.Module) -> None:
        c = int(self.encoders[SHAPE_ENCODER].latent_channels)
        if flow.in_channels != c or flow.out_channels != c:
            raise UserError(f"{self.flow_key}: in/out channels {flow.in_channels}/{flow.out_channels} must equal the "
                            f"shape latent channels {c}")

    def targets(self, batch):
        return self.normalized(posterior_mean("shape_slat", self.encoders[SHAPE_ENCODER], batch, self.device), "shape_slat"), {}


class TexSLatFlowTrainer(SLatFlowTrainer):
    """Texture SLat flow on the frozen ``tex_slat_encoder``'s normalised latents, with ``concat_cond`` = the
    normalised shape latent of the same voxels (``in_channels`` = texture + shape latent channels).

    models: ``tex_slat_flow_model_1024``; base pipeline: ``shape_slat_encoder``, ``tex_slat_encoder``,
    ``shape_slat_normalization`` and ``tex_slat_normalization``.
    """

    name = "TexSLatFlowTrainer"
    allowed_keys = ("tex_slat_flow_model_1024",)
    target_encoders = (SHAPE_ENCODER, TEX_ENCODER)

    def normalizations(self) -> list[str]:
        return ["shape_slat", "tex_slat"]

    def check_channels(self, flow: nn.Module) -> None:
        cs = int(self.encoders[SHAPE_ENCODER].latent_channels)
        ct = int(self.encoders[TEX_ENCODER].latent_channels)
        if flow.in_channels != ct + cs or flow.out_channels != ct:
            raise UserError(f"{self.flow_key}: in/out channels {flow.in_channels}/{flow.out_channels} must be "
                            f"{ct + cs}/{ct} (texture {ct} ‖ shape {cs} latent channels)")

    def targets(self, batch):
        shape = self.normalized(posterior_mean("shape_slat", self.encoders[SHAPE_ENCODER], batch, self.device), "shape_slat")
        tex = self.normalized(posterior_mean("tex_slat", self.encoders[TEX_ENCODER], batch, self.device), "tex_slat")
        if not torch.equal(shape.coords, tex.coords):
            raise UserError(f"{self.name}: the shape and texture encoders give different latent voxels")
        return tex, {"concat_cond": shape}
