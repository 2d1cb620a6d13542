"""Flow-matching trainers (rectified flow with ``σ_min``, the convention of :mod:`pixal3d.sampling.flow_euler`).

Forward process ``x_t = (1−t)·x_0 + (σ_min + (1−σ_min)·t)·ε`` (t=0 data, t=1 noise). Its time derivative is
the regression target ``v = dx_t/dt = (1−σ_min)·ε − x_0``; the sampler's ``x0_from_v`` inverts it exactly. The
network gets ``1000·t``. ``t`` is drawn per item, logit-normal by default (``t = sigmoid(m + s·n)``, ``n ~ N(0,1)``,
TRELLIS's ``logitNormal`` schedule with ``mean=1, std=1``) or uniform. The loss is the per-item mean squared
error, averaged over the batch.

Conditioning is computed on the fly from each item's conditioning view (:class:`TrainingConditioner`); the
image encoder is either trained with the flow (a fresh trainable encoder — ``small_conv``, or the projections of
``efficientnet_lite0`` — saved into the pipeline folder and named in its ``image_encoder``) or the frozen encoder
of the base pipeline folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from pixal3d.conditioning.encoders import build_image_encoder
from pixal3d.errors import UserError
from pixal3d.sampling.flow_euler import SIGMA_MIN
from pixal3d.training.conditioning import TrainingConditioner, drop_mask, drop_projection
from pixal3d.training.trainer import CKPT_DIR, Trainer

ENCODER_KEY = "image_encoder"
ENCODER_FILE = f"{CKPT_DIR}/image_encoder.safetensors"
T_SCHEDULES = ("logit_normal", "uniform")


def sample_t(generators: Sequence[torch.Generator], schedule: str = "logit_normal", mean: float = 1.0,
             std: float = 1.0) -> torch.Tensor:
    """float32 ``[B]`` flow times in (0, 1), one per item from its generator."""
    if schedule == "uniform":
        return torch.stack([torch.rand((), generator=g) for g in generators])
    if schedule == "logit_normal":
        return torch.sigmoid(mean + std * torch.stack([torch.randn((), generator=g) for g in generators]))
    raise UserError(f"t_schedule must be one of {T_SCHEDULES}, got {schedule!r}")


def diffuse(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """``x_t = (1−t)·x_0 + (σ_min + (1−σ_min)·t)·ε``; ``t`` broadcasts against ``x0`` (shape ``[B, 1, …]`` or ``[N, 1]``)."""
    return (1 - t) * x0 + (sigma_min + (1 - sigma_min) * t) * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """``v = dx_t/dt = (1−σ_min)·ε − x_0``."""
    return (1 - sigma_min) * noise - x0


class FlowTrainer(Trainer):
    """Shared parts of the flow trainers: time schedule, conditioner and image-encoder bookkeeping.

    Trainer args: ``base_pipeline`` (folder with the frozen VAE encoders; its stages are carried into the
    checkpoints), ``image_encoder`` (``"base"``: the base folder's, frozen; or a spec ``{"name": "small_conv",
    "args": {...}}`` or ``"efficientnet_lite0"``, trained with the flow), ``image_size`` (S), ``p_uncond`` (0.1), ``t_schedule``
    (``"logit_normal"``), ``t_mean``/``t_std`` (1.0, 1.0), ``sigma_min``, ``cross_tokens`` (``"all"``),
    ``cell_samples`` (0: the official one point per grid index; ``n``: the mean of ``n³`` points inside each cell,
    written into the pipeline's ``image_cond_configs``), ``p_drop_proj`` (0: the probability that an item's
    back-projected features alone are zeroed, its global tokens kept; proj mode only).
    """

    #: the pipeline stage key of the flow and the conditioning stage name of the pipeline
    flow_key = ""
    cond_stage = ""
    #: frozen base stages the trainer encodes its targets with
    target_encoders: tuple[str, ...] = ()

    @classmethod
    def base_requirements(cls, args: dict[str, Any]) -> list[str]:
        needs_encoder = args.get("image_encoder", "base") == "base"
        return [*cls.target_encoders, *(["image_encoder"] if needs_encoder else [])]

    @classmethod
    def products(cls, args: dict[str, Any], models: dict[str, Any]) -> list[str]:
        own_encoder = args.get("image_encoder", "base") != "base"
        return [*models, *args.get("serves", []), *(["image_encoder"] if own_encoder else [])]

    def setup_conditioner(self, flow: nn.Module, grid_resolution: int) -> None:
        args = self.args
        self.p_uncond = float(args.get("p_uncond", 0.1))
        self.p_drop_proj = float(args.get("p_drop_proj", 0.0))
        if not 0.0 <= self.p_drop_proj < 1.0:
            raise UserError(f"p_drop_proj must be in [0, 1), got {self.p_drop_proj}")
        self.sigma_min = float(args.get("sigma_min", SIGMA_MIN))
        self.t_schedule = str(args.get("t_schedule", "logit_normal"))
        if self.t_schedule not in T_SCHEDULES:
            raise UserError(f"t_schedule must be one of {T_SCHEDULES}, got {self.t_schedule!r}")
        self.t_mean, self.t_std = float(args.get("t_mean", 1.0)), float(args.get("t_std", 1.0))
        spec = args.get("image_encoder", "base")
        if spec == "base":
            if self.base is None or self.base.config.image_encoder is None:
                raise UserError(f"{self.name}: image_encoder 'base' needs a base_pipeline that names an image_encoder")
            self.encoder_spec = dict(self.base.config.image_encoder)
            encoder = build_image_encoder(self.encoder_spec, self.base.path)
            trainable = False
        else:
            encoder = build_image_encoder(spec)
            self.encoder_spec = {"name": spec["name"], "args": dict(spec.get("args") or {})}
            trainable = bool(spec.get("trainable", encoder.trainable))
            if trainable and not encoder.trainable:
                raise UserError(f"the {spec['name']} image encoder cannot be trained")
            if trainable:
                self.encoder_spec["args"]["weights"] = ENCODER_FILE
        self.encoder_trainable = trainable
        if encoder.uses_naf:
            raise UserError("training with NAF-upsampled features is not supported; use a non-NAF encoder")
        image_size = int(args.get("image_size", 64))
        mode = getattr(flow, "image_attn_mode", "proj")
        self.conditioner = TrainingConditioner(encoder, image_size, grid_resolution, mode,
                                               str(args.get("cross_tokens", "all")), trainable,
                                               int(args.get("cell_samples", 0)))
        if mode == "proj" and flow.proj_in_channels != encoder.channels:
            raise UserError(f"{self.flow_key}: proj_in_channels {flow.proj_in_channels} != image encoder channels "
                            f"{encoder.channels}")
        if flow.cond_channels != encoder.channels:
            raise UserError(f"{self.flow_key}: cond_channels {flow.cond_channels} != image encoder channels {encoder.channels}")
        if trainable:
            self.trainable[ENCODER_KEY] = encoder
        else:
            self.frozen_encoder = encoder.to(self.device)

    def condition(self, batch: dict[str, Any], generators: Sequence[torch.Generator],
                  coords: torch.Tensor | None = None) -> Any:
        keep = drop_mask(generators, self.p_uncond) if self.p_uncond > 0 else None
        images = batch["image"].to(self.device)
        extra = (batch["extra_images"], batch["extra_cameras"], batch["extra_item"]) if "extra_images" in batch else None
        cond = self.conditioner(images, batch["camera"], coords, keep, extra)
        if self.p_drop_proj > 0 and isinstance(cond, dict):
            cond["proj"] = drop_projection(cond["proj"], drop_mask(generators, self.p_drop_proj))
        return cond

    def times(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        return sample_t(generators, self.t_schedule, self.t_mean, self.t_std).to(self.device)

    def pipeline_args(self) -> dict[str, Any]:
        base_cfgs = dict((self.base.config.image_cond_configs if self.base else None) or {})
        base_cfgs[self.cond_stage] = {"image_size": self.conditioner.image_size,
                                      "grid_resolution": self.conditioner.grid_resolution}
        if self.conditioner.cell_samples:
            base_cfgs[self.cond_stage]["cell_samples"] = self.conditioner.cell_samples
        return {"image_encoder": self.encoder_spec, "image_cond_configs": base_cfgs}

    def write_extras(self, folder: Path, ema: nn.ModuleDict) -> None:
        if self.encoder_trainable:
            (folder / CKPT_DIR).mkdir(parents=True, exist_ok=True)
            ema[ENCODER_KEY].save_weights(folder / ENCODER_FILE)


class SparseStructureFlowTrainer(FlowTrainer):
    """Flow on the dense SS latent: occupancy ``[B, 1, R, R, R]`` → frozen SS encoder (posterior mean) → latent.

    models: ``sparse_structure_flow_model``; base pipeline: ``sparse_structure_encoder``.
    """

    name = "SparseStructureFlowTrainer"
    dataset_fields = ("image", "occupancy")
    flow_key = "sparse_structure_flow_model"
    cond_stage = "ss"
    target_encoders = ("sparse_structure_encoder",)

    def build(self) -> None:
        flow = self.build_stage(self.flow_key)
        self.trainable[self.flow_key] = flow
        self.ss_encoder = self.load_frozen("sparse_structure_encoder")
        self.setup_conditioner(flow, flow.resolution)

    @torch.no_grad()
    def latents(self, occupancy: torch.Tensor) -> torch.Tensor:
        """Posterior means ``[B, C, r, r, r]`` of the occupancy grids."""
        from pixal3d.training.vae import encode_posterior

        return encode_posterior(self.ss_encoder, occupancy.to(self.device).float())[0]

    def compute_loss(self, batch, generators):
        x0 = self.latents(batch["occupancy"])
        noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in generators]).to(self.device)
        t = self.times(generators)
        x_t = diffuse(x0, noise, t.view(-1, 1, 1, 1, 1), self.sigma_min)
        cond = self.condition(batch, generators)
        pred = self.trainable[self.flow_key](x_t, 1000 * t, cond)
        err = (pred.float() - velocity_target(x0, noise, self.sigma_min)) ** 2
        loss = err.flatten(1).mean(1).mean()
        return loss, {"mse": loss}
