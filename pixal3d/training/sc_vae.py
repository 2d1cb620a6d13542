"""Structured-latent VAE trainers (shape and texture SC-VAEs) and the latents' normalisation statistics.

**Shape** (:class:`ShapeVaeTrainer`, stages ``shape_slat_encoder`` / ``shape_slat_decoder``): the
:class:`~pixal3d.models.sc_vae.FlexiDualGridVaeEncoder` encodes the O-Voxel dual grid (offsets, edge flags) at
grid ``R`` into a Gaussian latent at ``R/16``; a posterior sample (per-item generators) is decoded by the
:class:`~pixal3d.models.sc_vae.FlexiDualGridVaeDecoder` with its up-blocks following the ground-truth subdivisions
(teacher forcing, :func:`~pixal3d.models.sc_vae.subdivision_guides`), so the output voxels are the target voxels.
The TRELLIS.2 ``ShapeVaeTrainer`` terms and default weights: BCE of every up-block's subdivision logits against
the ground truth (``lambda_subdiv`` 0.1 per level), BCE of the 3 edge-intersection logits (``lambda_intersected``
0.1), the squared error of the decoded dual-vertex offset ``(1+2m)·sigmoid(o) − m`` (``lambda_vertice``) and the
KL (``lambda_kl`` 1e-6). Upstream also renders the decoded mesh (mask, depth, normal L1/SSIM/LPIPS), which drives
the vertex precision and is the only supervision of the split weight; there is no differentiable renderer
here, so ``lambda_vertice`` defaults to 1.0 (upstream 0.01 beside the render terms) and the split-weight head
regresses the voxeliser's fitted weights in log space (``lambda_split`` 0.01; upstream has no such term).

**Texture** (:class:`TexVaeTrainer`, stages ``tex_slat_encoder`` / ``tex_slat_decoder``): the
:class:`~pixal3d.models.sc_vae.SparseUnetVaeEncoder` encodes the 6 PBR attributes mapped to ``[−1, 1]``
(``2·attr − 1``, inverted by the pipeline's ``·0.5 + 0.5``); the ``pred_subdiv=False`` decoder is guided by the
ground-truth subdivisions; L1 on the attributes (``lambda_l1`` 1, upstream ``loss_type l1``), optional L2
(``lambda_l2`` 0) and KL (``lambda_kl`` 1e-6). Upstream's render SSIM/LPIPS terms are not reproduced.

Every loss is a mean of per-item means (over voxels), like every trainer here (see :mod:`.trainer`).

**Normalisation**: at every checkpoint the trainer encodes up to ``stats_items`` (64) training items, evenly
spaced over the dataset, with the EMA encoder and writes the per-channel mean/std of the posterior means over all
latent voxels as ``shape_slat_normalization`` / ``tex_slat_normalization`` in ``pipeline.json``
(:func:`latent_statistics`). For an existing pipeline folder::

    pixal3d latents stats --pipeline DIR --data DATA [--kind shape_slat] [--items 64]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from pixal3d.errors import UserError
from pixal3d.models.sc_vae import subdivision_guides
from pixal3d.models.sparse.spatial import ChannelToSpatial
from pixal3d.core.sparse_tensor import SparseTensor
from pixal3d.training.trainer import Trainer
from pixal3d.utils.coords import CoordIndex

#: latent kind → (encoder stage key, decoder stage key)
STAGES = {"shape_slat": ("shape_slat_encoder", "shape_slat_decoder"),
          "tex_slat": ("tex_slat_encoder", "tex_slat_decoder")}
#: smallest std written to ``pipeline.json`` (a dead latent channel must not divide by zero)
MIN_STD = 1e-6


# --------------------------------------------------------------------------------------------------
# batches → encoder inputs → posteriors


def encoder_inputs(kind: str, batch: dict[str, Any], device: torch.device | str) -> tuple[SparseTensor, ...]:
    """The encoder arguments of a :func:`~pixal3d.data.dataset.collate_views` batch.

    ``shape_slat``: ``(vertices [ΣN, 3] float32 offsets, intersected [ΣN, 3] bool)``; ``tex_slat``:
    ``(attrs·2 − 1 [ΣN, 6] float32,)``; all on ``batch['coords']`` ``(b, x, y, z)`` int32.
    """
    coords = batch["coords"].to(device)
    if kind == "shape_slat":
        return (SparseTensor(batch["dual_vertices"].to(device).float(), coords),
                SparseTensor(batch["intersected"].to(device), coords))
    if kind == "tex_slat":
        return (SparseTensor(batch["attrs"].to(device).float() * 2 - 1, coords),)
    raise ValueError(f"unknown latent kind {kind!r} (known: {', '.join(STAGES)})")


def encode_batch(kind: str, encoder: nn.Module, batch: dict[str, Any], device: torch.device | str
                 ) -> tuple[SparseTensor, SparseTensor]:
    """``(mean, logvar)`` sparse tensors ``[M, C]`` of the posterior of ``kind``'s encoder for a collated batch
    (latent coordinates ``unique(coords // 16)``, lexicographic, float32)."""
    _, mean, logvar = encoder(*encoder_inputs(kind, batch, device), return_raw=True)
    return mean.type(torch.float32), logvar.type(torch.float32)


def item_counts(coords: torch.Tensor, num_items: int) -> torch.Tensor:
    """Rows per batch item ``[B]`` int64 of ``(b, x, y, z)`` coordinates (items contiguous)."""
    return torch.bincount(coords[:, 0].long(), minlength=num_items)


def sample_sparse_posterior(mean: SparseTensor, logvar: SparseTensor, generators: Sequence[torch.Generator]) -> SparseTensor:
    """``μ + σ·ε`` on the latent voxels, item ``b``'s noise ``[N_b, C]`` drawn from ``generators[b]`` (CPU)."""
    counts = item_counts(mean.coords, len(generators)).tolist()
    c = mean.feats.shape[1]
    noise = torch.cat([torch.randn(n, c, generator=g) for n, g in zip(counts, generators)])
    return mean.replace(mean.feats + torch.exp(0.5 * logvar.feats) * noise.to(mean.device, mean.feats.dtype))


def per_item_mean(values: torch.Tensor, coords: torch.Tensor, num_items: int) -> torch.Tensor:
    """Mean over each item's rows (and channels) of ``values [N]`` or ``[N, C]`` → ``[B]`` float32."""
    v = values.float().reshape(values.shape[0], -1)
    b = coords[:, 0].long()
    sums = torch.zeros(num_items, device=v.device).index_add(0, b, v.sum(1))
    counts = item_counts(coords, num_items).to(v.device).clamp(min=1) * v.shape[1]
    return sums / counts


def sparse_kl(mean: SparseTensor, logvar: SparseTensor, num_items: int) -> torch.Tensor:
    """Per-item ``½·mean(μ² + e^{logvar} − logvar − 1)`` over latent voxels and channels → ``[B]``."""
    kl = 0.5 * (mean.feats.pow(2) + logvar.feats.exp() - logvar.feats - 1)
    return per_item_mean(kl, mean.coords, num_items)


def ground_truth_subdivisions(latent_coords: torch.Tensor, coords: torch.Tensor, num_up: int
                              ) -> tuple[list[torch.Tensor], list[SparseTensor]]:
    """Ground-truth subdivision masks and the matching logit tensors for the decoders' up-blocks.

    Returns ``(masks, guides)``: ``masks[i]`` ``[N_i, 8]`` bool (:func:`subdivision_guides`) and ``guides[i]`` the
    ±1 float32 logits on the coordinates ``[N_i, 4]`` reaching up-block ``i`` (``guide_subs`` / ``teacher_subs``).
    Following them from ``latent_coords`` reproduces exactly the voxels ``coords`` (at grid ``r·2^num_up``).
    """
    masks = subdivision_guides(latent_coords, coords, num_up)
    guides, level = [], latent_coords.int()
    for mask in masks:
        guides.append(SparseTensor(mask.float() * 2 - 1, level))
        level = ChannelToSpatial(level, mask).coords
    return masks, guides


def target_rows(decoded: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Row of ``coords [N, 4]`` of every decoded voxel ``decoded [M, 4]`` → ``[M]`` int64 (teacher-forced decodes
    land on the targets; a voxel that does not is an error)."""
    rows = CoordIndex(coords).lookup(decoded)
    if (rows < 0).any():
        raise RuntimeError(f"{int((rows < 0).sum())} decoded voxels are not target voxels")
    return rows


def crop_batch(batch: dict[str, Any], size: int, generators: Sequence[torch.Generator], cell: int = 16) -> dict[str, Any]:
    """Each item's voxels inside one random ``size``³ window of its grid (origin a multiple of ``cell``, the
    latent cell, so the window holds whole latent voxels); the window is centred near a voxel drawn from the
    item's generator and kept inside ``[0, R)`` (``R`` = the smallest multiple of ``size`` holding every voxel).

    The SC-VAEs are convolutional, so windows teach them what whole grids do at a fraction of the voxels.
    Returns a shallow copy of ``batch`` with ``coords`` and the per-voxel arrays (``dual_vertices``,
    ``intersected``, ``split_weight``, ``attrs``) restricted to the windows; coordinates are not shifted.
    """
    if size % cell:
        raise UserError(f"crop {size} must be a multiple of the latent cell {cell}")
    coords = batch["coords"]
    grid = max(size, int(math.ceil((int(coords[:, 1:].max()) + 1) / size)) * size)
    keep = torch.zeros(len(coords), dtype=torch.bool)
    starts = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), item_counts(coords, len(generators))]), 0)
    for b, g in enumerate(generators):
        lo, hi = int(starts[b]), int(starts[b + 1])
        if hi == lo:
            continue
        centre = coords[lo + int(torch.randint(hi - lo, (1,), generator=g)), 1:].long()
        origin = ((centre - size // 2).div(cell, rounding_mode="floor") * cell).clamp(0, grid - size)
        inside = ((coords[lo:hi, 1:].long() >= origin) & (coords[lo:hi, 1:].long() < origin + size)).all(1)
        keep[lo:hi] = inside
    out = dict(batch)
    for key in ("coords", "dual_vertices", "intersected", "split_weight", "attrs"):
        if key in batch:
            out[key] = batch[key][keep]
    return out


# --------------------------------------------------------------------------------------------------
# normalisation statistics


@torch.no_grad()
def latent_statistics(kind: str, encoder: nn.Module, dataset: Dataset, collate: Callable, device: torch.device | str = "cpu",
                      max_items: int = 64, batch_size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(mean [C], std [C])`` float32 of the posterior means of ``kind``'s encoder over all latent
    voxels of up to ``max_items`` dataset items (evenly spaced, deterministic); std floored at :data:`MIN_STD`.

    The flows' normalised latents are ``(latent − mean) / std`` (``pipeline.json``'s ``<kind>_normalization``).
    """
    n = len(dataset)
    if n == 0:
        raise UserError("cannot compute latent statistics of an empty dataset")
    indices = torch.linspace(0, n - 1, min(max_items, n)).round().long().unique().tolist()
    was_training = encoder.training
    encoder.eval()
    total = sq = None
    count = 0
    try:
        for start in range(0, len(indices), batch_size):
            batch = collate([dataset[i] for i in indices[start:start + batch_size]])
            mean, _ = encode_batch(kind, encoder, batch, device)
            feats = mean.feats.double()
            total = feats.sum(0) if total is None else total + feats.sum(0)
            sq = feats.square().sum(0) if sq is None else sq + feats.square().sum(0)
            count += feats.shape[0]
    finally:
        encoder.train(was_training)
    mu = total / count
    std = (sq / count - mu.square()).clamp(min=0).sqrt().clamp(min=MIN_STD)
    return mu.float().cpu(), std.float().cpu()


def normalization_entry(mean: torch.Tensor, std: torch.Tensor) -> dict[str, list[float]]:
    """The ``pipeline.json`` entry ``{"mean": [...], "std": [...]}`` (read by ``PipelineFolder.latent_normalization``)."""
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def write_latent_normalization(pipeline: str | Path, dataset: Dataset, collate: Callable, kinds: Sequence[str] | None = None,
                               device: torch.device | str = "cpu", max_items: int = 64, batch_size: int = 4) -> dict[str, dict]:
    """Compute the statistics of the encoders in pipeline folder ``pipeline`` and store them in its ``pipeline.json``.

    ``kinds`` default: every kind whose encoder stage the folder has. Returns the written entries by kind.
    """
    from pixal3d.models.pipeline_folder import PIPELINE_FILE, open_pipeline_folder

    folder = open_pipeline_folder(pipeline)
    kinds = list(kinds) if kinds else [k for k, (enc, _) in STAGES.items() if enc in folder.stages]
    if not kinds:
        raise UserError(f"{folder.path} has no SC-VAE encoder ({' or '.join(enc for enc, _ in STAGES.values())})")
    entries = {}
    for kind in kinds:
        if kind not in STAGES:
            raise UserError(f"unknown latent kind {kind!r} (known: {', '.join(STAGES)})")
        encoder = folder.load(STAGES[kind][0], device=device)
        entries[kind] = normalization_entry(*latent_statistics(kind, encoder, dataset, collate, device, max_items, batch_size))
    folder.config.with_settings({f"{kind}_normalization": entry for kind, entry in entries.items()}).write(
        folder.path / PIPELINE_FILE)
    return entries


# --------------------------------------------------------------------------------------------------
# trainers


class _ScVaeTrainer(Trainer):
    """Shared parts: the two stages of :attr:`kind`, posterior sampling, statistics at checkpoint time.

    Args (besides the subclass's loss weights): ``stats_items`` (64) items encoded for the normalisation
    statistics at every checkpoint (0: none written); ``crop`` (none) trains on one random ``crop``³ window of
    each item's grid (:func:`crop_batch`; statistics always encode whole items).
    """

    kind = ""

    def build(self) -> None:
        enc_key, dec_key = STAGES[self.kind]
        self.trainable[enc_key] = self.build_stage(enc_key)
        self.trainable[dec_key] = self.build_stage(dec_key)
        self.stats_items = int(self.args.get("stats_items", 64))
        self.crop = int(self.args["crop"]) if self.args.get("crop") else None

    def training_batch(self, batch: dict[str, Any], generators: list[torch.Generator]) -> dict[str, Any]:
        """``batch``, or its random windows when the ``crop`` arg is set."""
        return crop_batch(batch, self.crop, generators) if self.crop else batch

    @property
    def encoder(self) -> nn.Module:
        return self.trainable[STAGES[self.kind][0]]

    @property
    def decoder(self) -> nn.Module:
        return self.trainable[STAGES[self.kind][1]]

    def encode(self, batch: dict[str, Any], generators: list[torch.Generator]):
        """``(z, mean, logvar)`` sparse tensors on the latent voxels; ``z`` a per-item-seeded posterior sample."""
        mean, logvar = encode_batch(self.kind, self.encoder, batch, self.device)
        return sample_sparse_posterior(mean, logvar, generators), mean, logvar

    def pipeline_args(self) -> dict[str, Any]:
        if self.stats_items <= 0:
            return {}
        mean, std = latent_statistics(self.kind, self.ema[STAGES[self.kind][0]], self.dataset, self.collate, self.device,
                                      self.stats_items, self.local_batch_size)
        return {f"{self.kind}_normalization": normalization_entry(mean, std)}


class ShapeVaeTrainer(_ScVaeTrainer):
    """Trains ``shape_slat_encoder`` + ``shape_slat_decoder`` on the O-Voxel dual grid (see the module docstring).

    Args: ``lambda_subdiv`` (0.1, per up-block), ``lambda_intersected`` (0.1), ``lambda_vertice`` (1.0),
    ``vertice_loss`` (``"l2"`` or ``"l1"``), ``lambda_split`` (0.01), ``lambda_kl`` (1e-6), ``stats_items`` (64).
    Logged: the terms, ``flag_acc`` (edge flags), ``subdiv_acc`` (all up-blocks' children), ``vertex_err``
    (mean |offset error| in voxels).
    """

    name = "ShapeVaeTrainer"
    dataset_fields = ("voxels",)
    kind = "shape_slat"

    def build(self) -> None:
        super().build()
        a = self.args
        self.lambda_subdiv = float(a.get("lambda_subdiv", 0.1))
        self.lambda_intersected = float(a.get("lambda_intersected", 0.1))
        self.lambda_vertice = float(a.get("lambda_vertice", 1.0))
        self.lambda_split = float(a.get("lambda_split", 0.01))
        self.lambda_kl = float(a.get("lambda_kl", 1e-6))
        self.vertice_loss = str(a.get("vertice_loss", "l2"))
        if self.vertice_loss not in ("l1", "l2"):
            raise UserError(f"{self.name}: vertice_loss must be 'l1' or 'l2', got {self.vertice_loss!r}")

    def compute_loss(self, batch, generators):
        b = len(generators)
        batch = self.training_batch(batch, generators)
        coords = batch["coords"].to(self.device)
        z, mean, logvar = self.encode(batch, generators)
        masks, guides = ground_truth_subdivisions(z.coords, coords, len(self.decoder.blocks) - 1)
        raw, subs = self.decoder(z, teacher_subs=guides)
        rows = target_rows(raw.coords, coords)
        vertices, _, split = self.decoder.heads(raw)
        flag_logits = raw.feats[:, 3:6].float()
        target_v = batch["dual_vertices"].to(self.device).float()[rows]
        target_i = batch["intersected"].to(self.device)[rows].float()
        target_w = batch["split_weight"].to(self.device).float()[rows]
        err = vertices - target_v
        vertex = per_item_mean(err.square() if self.vertice_loss == "l2" else err.abs(), raw.coords, b).mean()
        flags = per_item_mean(F.binary_cross_entropy_with_logits(flag_logits, target_i, reduction="none"), raw.coords, b).mean()
        split_err = torch.log(split[:, 0].clamp(min=1e-12)) - torch.log(target_w.clamp(min=1e-12))
        split_loss = per_item_mean(split_err.square(), raw.coords, b).mean()
        subdiv = sum(per_item_mean(F.binary_cross_entropy_with_logits(s.feats.float(), m.float(), reduction="none"),
                                   s.coords, b).mean() for s, m in zip(subs, masks))
        kl = sparse_kl(mean, logvar, b).mean()
        loss = (self.lambda_vertice * vertex + self.lambda_intersected * flags + self.lambda_subdiv * subdiv
                + self.lambda_split * split_loss + self.lambda_kl * kl)
        with torch.no_grad():
            flag_acc = ((flag_logits > 0) == (target_i > 0.5)).float().mean()
            hits = sum(((s.feats > 0) == m).sum() for s, m in zip(subs, masks))
            subdiv_acc = hits.float() / sum(m.numel() for m in masks)
            vertex_err = err.abs().mean()
        return loss, {"vertex": vertex, "intersected": flags, "subdiv": subdiv, "split": split_loss, "kl": kl,
                      "flag_acc": flag_acc, "subdiv_acc": subdiv_acc, "vertex_err": vertex_err}


class TexVaeTrainer(_ScVaeTrainer):
    """Trains ``tex_slat_encoder`` + ``tex_slat_decoder`` (``pred_subdiv=False``) on the PBR attributes.

    Args: ``lambda_l1`` (1.0), ``lambda_l2`` (0.0), ``lambda_kl`` (1e-6), ``stats_items`` (64). Logged: ``l1``,
    ``l2`` (on the ``[−1, 1]`` attributes), ``kl`` and ``attr_mae`` (mean |error| in ``[0, 1]`` attribute units).
    """

    name = "TexVaeTrainer"
    dataset_fields = ("voxels",)
    kind = "tex_slat"

    def build(self) -> None:
        super().build()
        if getattr(self.decoder, "pred_subdiv", False):
            raise UserError(f"{self.name}: models.tex_slat_decoder must be built with pred_subdiv false (it is guided)")
        a = self.args
        self.lambda_l1 = float(a.get("lambda_l1", 1.0))
        self.lambda_l2 = float(a.get("lambda_l2", 0.0))
        self.lambda_kl = float(a.get("lambda_kl", 1e-6))

    def compute_loss(self, batch, generators):
        b = len(generators)
        batch = self.training_batch(batch, generators)
        coords = batch["coords"].to(self.device)
        z, mean, logvar = self.encode(batch, generators)
        _, guides = ground_truth_subdivisions(z.coords, coords, len(self.decoder.blocks) - 1)
        out = self.decoder(z, guide_subs=guides)
        rows = target_rows(out.coords, coords)
        err = out.feats.float() - (batch["attrs"].to(self.device).float()[rows] * 2 - 1)
        l1 = per_item_mean(err.abs(), out.coords, b).mean()
        l2 = per_item_mean(err.square(), out.coords, b).mean()
        kl = sparse_kl(mean, logvar, b).mean()
        loss = self.lambda_l1 * l1 + self.lambda_l2 * l2 + self.lambda_kl * kl
        return loss, {"l1": l1, "l2": l2, "kl": kl, "attr_mae": (0.5 * err.abs().mean()).detach()}

