"""VAE trainers: the sparse-structure VAE (dense occupancy) — encoder and decoder trained together.

Losses (TRELLIS's sparse-structure VAE recipe): binary cross-entropy on the occupancy logits plus a soft
Dice term ``1 − (2·Σpy + 1)/(Σp + Σy + 1)`` (``p = sigmoid(logits)``), each per item, and the KL divergence
of the diagonal Gaussian posterior to ``N(0, I)``, ``½·mean(μ² + σ² − log σ² − 1)``, weighted by ``lambda_kl``.
The posterior sample uses the item's generator, so runs are reproducible.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pixal3d.training.trainer import Trainer


def encode_posterior(encoder: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, logvar)`` of the encoder's diagonal Gaussian posterior for input ``x``."""
    _, mean, logvar = encoder(x, sample_posterior=False, return_raw=True)
    return mean, logvar


def sample_posterior(mean: torch.Tensor, logvar: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """``μ + σ·ε`` with per-item noise from ``generators`` (dense ``[B, …]`` tensors)."""
    noise = torch.stack([torch.randn(mean.shape[1:], generator=g) for g in generators]).to(mean.device, mean.dtype)
    return mean + torch.exp(0.5 * logvar) * noise


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-item ``½·mean(μ² + e^{logvar} − logvar − 1)`` → ``[B]``."""
    return 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1).flatten(1).mean(1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-item soft Dice loss ``[B]`` of occupancy logits against a 0/1 target."""
    p = torch.sigmoid(logits).flatten(1)
    y = target.flatten(1)
    return 1 - (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1)


def occupancy_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-item IoU ``[B]`` of ``logits > 0`` against ``target > 0.5``."""
    pred, y = (logits > 0).flatten(1), (target > 0.5).flatten(1)
    return (pred & y).sum(1).float() / (pred | y).sum(1).clamp(min=1).float()


class SparseStructureVaeTrainer(Trainer):
    """Trains ``sparse_structure_encoder`` + ``sparse_structure_decoder`` on ``batch['occupancy']`` ``[B,1,R,R,R]``.

    Args: ``lambda_bce`` (1.0), ``lambda_dice`` (1.0), ``lambda_kl`` (1e-3).
    """

    name = "SparseStructureVaeTrainer"
    dataset_fields = ("occupancy",)

    def build(self) -> None:
        self.trainable["sparse_structure_encoder"] = self.build_stage("sparse_structure_encoder")
        self.trainable["sparse_structure_decoder"] = self.build_stage("sparse_structure_decoder")
        self.lambda_bce = float(self.args.get("lambda_bce", 1.0))
        self.lambda_dice = float(self.args.get("lambda_dice", 1.0))
        self.lambda_kl = float(self.args.get("lambda_kl", 1e-3))

    def compute_loss(self, batch, generators):
        x = batch["occupancy"].to(self.device).float()
        mean, logvar = encode_posterior(self.trainable["sparse_structure_encoder"], x)
        z = sample_posterior(mean.float(), logvar.float(), generators)
        logits = self.trainable["sparse_structure_decoder"](z).float()
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).mean(1).mean()
        dice = dice_loss(logits, x).mean()
        kl = kl_divergence(mean.float(), logvar.float()).mean()
        loss = self.lambda_bce * bce + self.lambda_dice * dice + self.lambda_kl * kl
        return loss, {"bce": bce, "dice": dice, "kl": kl, "iou": occupancy_iou(logits.detach(), x).mean()}
