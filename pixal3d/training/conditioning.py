"""Image conditions computed on the fly during training, differentiably (Pixal3D's ``image_conditioned_proj``).

For a batch of conditioning views (images in ``[0, 1]`` with their true cameras) the image encoder gives
global tokens and a patch map; the patch map is back-projected into the flow's grid with
:func:`~pixal3d.conditioning.backprojection.backproject_dense` (SS stage, every grid point) or
:func:`~pixal3d.conditioning.backprojection.backproject_sparse` (SLat stages, the latent's voxels). Both are
differentiable, so a trainable encoder (``small_conv``, ``efficientnet_lite0``'s projections) learns end to
end through the projection. This matches what :class:`~pixal3d.conditioning.extractor.ConditionExtractor` gives
the pipeline at inference for a non-NAF encoder.

``mode='cross'`` is the ablation without back-projection: the flow (built with ``image_attn_mode='cross'``)
cross-attends to the image tokens only (``tokens='all'``: global tokens followed by every patch token, as
TRELLIS.2 conditions on all DINO tokens; ``'global'``: the global tokens alone).

Multi-view items (extra views of the same asset with their cameras in the item's frame, see
:class:`~pixal3d.data.dataset.ViewDataset` ``num_views``) get the unweighted mean over their views of the global
tokens and of the back-projected features (or of the image tokens for ``'cross'``), as
:meth:`~pixal3d.conditioning.extractor.ConditionExtractor.condition` averages the views of a generation.

Classifier-free guidance dropout replaces an item's whole condition by zeros (the inference negative).
:func:`drop_projection` zeros the back-projected features alone of some items (their global tokens kept), so that
a back-projection flow also learns to place the shape from the global tokens (trainer arg ``p_drop_proj``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pixal3d.conditioning.backprojection import backproject_dense, backproject_sparse
from pixal3d.conditioning.encoders import ImageEncoder, image_tokens
from pixal3d.core.camera import Camera
from pixal3d.errors import UserError
from pixal3d.core.sparse_tensor import SparseTensor

MODES = ("proj", "cross")
CROSS_TOKENS = ("all", "global")


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, 3, H, W]`` in ``[0, 1]`` → ``[B, 3, size, size]`` (antialiased bilinear, clamped); identity if equal."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def drop_mask(generators: Sequence[torch.Generator], p_uncond: float) -> torch.Tensor:
    """float32 ``[B]``: 0 for items whose condition is dropped (probability ``p_uncond``), else 1."""
    draws = torch.stack([torch.rand((), generator=g) for g in generators])
    return (draws >= p_uncond).float()


def drop_projection(proj: torch.Tensor | SparseTensor, keep: torch.Tensor) -> torch.Tensor | SparseTensor:
    """A ``proj`` condition with the rows of the items where ``keep`` ``[B]`` is 0 set to zero: dense ``[B, G³, C]``
    or sparse (feats ``[N, C]``, batch index in ``coords[:, 0]``)."""
    if isinstance(proj, SparseTensor):
        rows = keep.to(proj.feats.device, proj.feats.dtype)[proj.coords[:, 0].long().to(proj.feats.device)]
        return proj.replace(proj.feats * rows[:, None])
    return proj * keep.to(proj.device, proj.dtype)[:, None, None]


def proj_condition(glob: torch.Tensor, proj: torch.Tensor | SparseTensor, keep: torch.Tensor | None) -> dict:
    """A proj-mode ``cond`` ``{"global": [B, K, C], "proj": ...}`` with CFG dropout: the items where ``keep`` ``[B]``
    is 0 get zeros in both (``keep`` None: nothing dropped)."""
    if keep is not None:
        glob, proj = glob * keep.to(glob.device, glob.dtype)[:, None, None], drop_projection(proj, keep)
    return {"global": glob, "proj": proj}


class TrainingConditioner(nn.Module):
    """Conditions for a batch, from an image encoder (trainable or frozen) and the stage's ``S`` and ``G``."""

    def __init__(self, encoder: ImageEncoder, image_size: int, grid_resolution: int, mode: str = "proj",
                 tokens: str = "all", trainable: bool = True, cell_samples: int = 0):
        super().__init__()
        if mode not in MODES:
            raise UserError(f"image_attn_mode must be one of {MODES}, got {mode!r}")
        if tokens not in CROSS_TOKENS:
            raise UserError(f"cross_tokens must be one of {CROSS_TOKENS}, got {tokens!r}")
        if image_size % encoder.patch_size:
            raise UserError(f"image_size {image_size} is not a multiple of the encoder patch size {encoder.patch_size}")
        self.encoder = encoder
        self.image_size, self.grid_resolution = int(image_size), int(grid_resolution)
        self.mode, self.tokens, self.trainable = mode, tokens, trainable
        self.cell_samples = int(cell_samples)
        if not trainable:
            self.encoder.requires_grad_(False).eval()

    @property
    def channels(self) -> int:
        return int(self.encoder.channels)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(global [B, K, C], patch_map [B, C, h, w])`` of images ``[B, 3, H, W]`` in ``[0, 1]``."""
        x = resize_images(images.float(), self.image_size)
        if self.trainable:
            return self.encoder.encode(x)
        with torch.no_grad():
            return self.encoder.encode(x)

    def forward(self, images: torch.Tensor, cameras: Sequence[Camera], coords: torch.Tensor | None = None,
                keep: torch.Tensor | None = None, extra: tuple[torch.Tensor, Sequence[Camera], torch.Tensor] | None = None
                ) -> Any:
        """The flow's ``cond`` for the batch.

        ``coords`` ``[N, 4]`` (batch, x, y, z) on the ``G`` grid for sparse stages, ``None`` for the dense SS
        stage. ``keep`` ``[B]`` (1 keep, 0 drop → zeros) applies CFG dropout. ``extra``: ``(images [E,3,H,W],
        cameras (E), item [E] int64)``, more views of the items, averaged with their own.
        """
        if extra is not None and len(extra[1]):
            return self._multiview(images, cameras, coords, keep, extra)
        glob, patch = self.encode(images)
        if keep is not None:
            keep = keep.to(glob.device, glob.dtype)
        if self.mode == "cross":
            ctx = glob if self.tokens == "global" else image_tokens(glob, patch)
            return ctx * keep[:, None, None] if keep is not None else ctx
        cams = list(cameras)
        if coords is None:
            proj = backproject_dense(patch, cams, self.grid_resolution, self.image_size,
                                     cell_samples=self.cell_samples)
            return proj_condition(glob, proj, keep)
        feats = backproject_sparse(patch, cams, coords, self.grid_resolution, self.image_size,
                                   cell_samples=self.cell_samples)
        return proj_condition(glob, SparseTensor(feats, coords), keep)

    def _multiview(self, images: torch.Tensor, cameras: Sequence[Camera], coords: torch.Tensor | None,
                   keep: torch.Tensor | None, extra: tuple[torch.Tensor, Sequence[Camera], torch.Tensor]) -> Any:
        """:meth:`forward` for items with extra views: every view encoded and projected, then averaged per item."""
        B = images.shape[0]
        extra_images, extra_cameras, extra_item = extra
        owner = torch.cat([torch.arange(B), extra_item.long().cpu()])  # view v belongs to item owner[v]
        glob, patch = self.encode(torch.cat([images, extra_images.to(images.device)]))
        owner_d = owner.to(glob.device)
        counts = torch.bincount(owner_d, minlength=B).to(glob.dtype)

        def item_mean(x: torch.Tensor) -> torch.Tensor:  # [V, ...] → [B, ...]
            out = x.new_zeros(B, *x.shape[1:]).index_add_(0, owner_d, x)
            return out / counts.view(-1, *[1] * (x.ndim - 1))

        keep = keep.to(glob.device, glob.dtype) if keep is not None else None
        if self.mode == "cross":
            ctx = item_mean(glob if self.tokens == "global" else image_tokens(glob, patch))
            return ctx * keep[:, None, None] if keep is not None else ctx
        glob = item_mean(glob)
        cams = list(cameras) + list(extra_cameras)
        if coords is None:
            proj = item_mean(backproject_dense(patch, cams, self.grid_resolution, self.image_size,
                                               cell_samples=self.cell_samples))
            return proj_condition(glob, proj, keep)
        # every view projects the voxels of its item: view v gets its item's rows with batch index v
        item_of_row = coords[:, 0].long()
        rows = [torch.nonzero(item_of_row == int(b)).squeeze(1) for b in owner.tolist()]
        view_coords = torch.cat([torch.cat([torch.full_like(coords[r, :1], v), coords[r, 1:]], 1)
                                 for v, r in enumerate(rows)])
        feats = backproject_sparse(patch, cams, view_coords, self.grid_resolution, self.image_size,
                                   cell_samples=self.cell_samples)
        summed = feats.new_zeros(coords.shape[0], feats.shape[1]).index_add_(0, torch.cat(rows).to(feats.device), feats)
        feats = summed / counts[item_of_row.to(counts.device)][:, None]
        return proj_condition(glob, SparseTensor(feats, coords), keep)
