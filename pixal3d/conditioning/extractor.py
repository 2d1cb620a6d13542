"""Per-stage image conditions: image features (DINOv3 + NAF, or another encoder) back-projected into the grid.

Stage table (official ``IMAGE_COND_CONFIGS``): image size S, grid resolution G, NAF output size T.

======================  =====  ===========  =========  ==============================
stage                   S      G            NAF → T    ``proj`` channels
======================  =====  ===========  =========  ==============================
``ss``                  512    16           —          C (dense ``[1, G³, C]``)
``shape_512``           512    32           512        2C = ``[lr ‖ hr]``
``shape_1024``          1024   res/16       512        2C
``tex_1024``            1024   res/16       1024       2C
======================  =====  ===========  =========  ==============================

One encoder is shared by all stages; for the current image the global tokens, the LR patch map and
the NAF guidance state are cached per S (and T). HR features are never computed as a full map: NAF is
evaluated only at the bilinear taps of the projected points and combined with the bilinear weights,
which equals ``grid_sample`` of the full HR map.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from pixal3d.conditioning.backprojection import (backproject_dense, backproject_sparse, bilinear_taps,
                                                 pool_cell_samples, sampling_grid)
from pixal3d.conditioning.encoders import ImageEncoder, build_image_encoder, image_to_tensor, image_tokens
from pixal3d.conditioning.naf import NAF, NAFGuide
from pixal3d.core.camera import Camera
from pixal3d.errors import UserError
from pixal3d.core.sparse_tensor import SparseTensor


@dataclass(frozen=True)
class StageConfig:
    """Image size ``S``, default grid resolution ``G``, NAF output size ``T`` (``None``: no NAF) and the
    back-projection's ``cell_samples`` (0: the official grid point; see :mod:`pixal3d.conditioning.backprojection`)."""

    image_size: int
    grid_resolution: int
    naf_target: int | None
    cell_samples: int = 0


STAGES: dict[str, StageConfig] = {
    "ss": StageConfig(512, 16, None),
    "shape_512": StageConfig(512, 32, 512),
    "shape_1024": StageConfig(1024, 64, 512),
    "tex_1024": StageConfig(1024, 64, 1024),
}


class ConditionExtractor:
    """Builds ``{'global': [1, K, C], 'proj': ...}`` conditions for one image at a time.

    ``encoder``: an :class:`ImageEncoder` (DINOv3 or the small conv encoder). ``naf``: the NAF
    upsampler, required when the encoder ``uses_naf`` and a stage has a NAF target. ``stages``
    overrides entries of :data:`STAGES` (the tiny reference runs use other sizes).
    """

    def __init__(self, encoder: ImageEncoder, naf: NAF | None = None, stages: dict[str, StageConfig] | None = None,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        self.naf = naf.to(self.device).eval() if naf is not None else None
        self.stages = {**STAGES, **(stages or {})}
        self._images: tuple[Image.Image, ...] = ()
        self._features: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._guides: dict[tuple[int, int, int], NAFGuide] = {}

    @classmethod
    def for_folder(cls, folder: Any, device: torch.device | str = "cpu") -> "ConditionExtractor":
        """Extractor for a pipeline folder: its ``image_encoder`` spec (default DINOv3 from the models root).

        NAF (``<models>/naf/naf_release.pth``, or ``image_encoder.naf`` relative to the folder) is loaded
        here, before any seeding, when the encoder uses it. ``image_cond_configs`` in the folder's
        arguments (``{stage: {image_size, grid_resolution, naf_target_size, cell_samples}}``) overrides the table.
        """
        spec = folder.config.image_encoder or {"name": "dinov3"}
        encoder = build_image_encoder(spec, folder.path)
        naf = None
        if encoder.uses_naf:
            naf = NAF.from_file(Path(folder.path) / spec["naf"] if "naf" in spec else None)
        stages = {}
        for name, cfg in (folder.config.image_cond_configs or {}).items():
            target = cfg.get("naf_target_size") if cfg.get("use_naf_upsample", "naf_target_size" in cfg) else None
            stages[name] = StageConfig(int(cfg["image_size"]), int(cfg["grid_resolution"]),
                                       int(target) if target else None, int(cfg.get("cell_samples", 0)))
        return cls(encoder, naf, stages, device)

    # --- cached features ---------------------------------------------------------------------
    def _use(self, images: tuple[Image.Image, ...]) -> None:
        """Make ``images`` (the views of one object) the cached set; any other set drops the cache."""
        if len(images) != len(self._images) or any(a is not b for a, b in zip(images, self._images)):
            self.clear_cache()
            self._images = images

    def _view(self, image: Image.Image) -> int:
        for i, known in enumerate(self._images):
            if known is image:
                return i
        self._use((image,))
        return 0

    def clear_cache(self) -> None:
        """Drop the cached features of the current image(s)."""
        self._images = ()
        self._features.clear()
        self._guides.clear()

    def features(self, image: Image.Image, image_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(image_01 [1,3,S,S], global [1,K,C], patch_map [1,C,S/p,S/p])`` float32 on the device, cached per
        (view of the current set, S)."""
        key = (self._view(image), image_size)
        if key not in self._features:
            image_01 = image_to_tensor(image, image_size).to(self.device)
            glob, patch = self.encoder.encode(image_01)
            self._features[key] = (image_01, glob.float(), patch.float())
        return self._features[key]

    def guide(self, image: Image.Image, image_size: int, target: int) -> NAFGuide:
        """NAF guidance state (encoding pooled to ``T`` and LR keys) for this image, cached per (view, S, T)."""
        if self.naf is None:
            raise UserError("this stage needs NAF: put naf_release.pth in the models folder's naf/ sub-folder")
        image_01, _, patch = self.features(image, image_size)
        key = (self._view(image), image_size, target)
        if key not in self._guides:
            self._guides[key] = self.naf.guide(image_01, target, tuple(patch.shape[-2:]))
        return self._guides[key]

    # --- conditions --------------------------------------------------------------------------
    def stage_config(self, stage: str | StageConfig, grid_resolution: int | None = None) -> StageConfig:
        """The stage's :class:`StageConfig`, with ``G`` overridden when ``grid_resolution`` is given."""
        if isinstance(stage, StageConfig):
            cfg = stage
        elif stage in self.stages:
            cfg = self.stages[stage]
        else:
            raise UserError(f"unknown conditioning stage {stage!r} (known: {', '.join(self.stages)})")
        return replace(cfg, grid_resolution=int(grid_resolution)) if grid_resolution is not None else cfg

    @torch.no_grad()
    def condition(self, stage: str | StageConfig, image: Image.Image | Sequence[Image.Image],
                  camera: Camera | Sequence[Camera],
                  coords: torch.Tensor | None = None, grid_resolution: int | None = None) -> dict[str, Any]:
        """Condition of ``stage`` for ``image`` seen by ``camera``, or for several views of one object.

        Dense (``coords=None``): ``{'global': [1,K,C], 'proj': [1, G³, C']}`` with grid points in
        official order. Sparse (``coords [N,4]`` int (batch 0, x, y, z) on the ``G`` grid):
        ``'proj'`` = :class:`SparseTensor` with feats ``[N, C']`` row-aligned with ``coords``.
        ``C' = 2C`` (``[lr ‖ hr]``) for NAF stages of a NAF encoder, else ``C``. All float32.

        Multi-view (lists of V images and V cameras in the canonical frame of view 0, see
        :func:`~pixal3d.core.camera.canonicalize_views`): every view's condition is computed as for
        one image and the views are averaged (``proj`` and ``global``, unweighted, out-of-view samples
        border-clamped: the official ``multiview_fusion="average"``), so shapes do not depend on V and
        the flows are unchanged. One view given as a list is exactly the single-view condition.
        """
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        cameras = list(camera) if isinstance(camera, (list, tuple)) else [camera]
        if len(images) != len(cameras) or not images:
            raise UserError(f"got {len(images)} images for {len(cameras)} cameras")
        if len(images) == 1:
            return self._condition_one(stage, images[0], cameras[0], coords, grid_resolution)
        self._use(tuple(images))
        views = [self._condition_one(stage, im, cam, coords, grid_resolution) for im, cam in zip(images, cameras)]
        glob = torch.stack([v["global"] for v in views]).mean(0)
        if coords is None:
            return {"global": glob, "proj": torch.stack([v["proj"] for v in views]).mean(0)}
        feats = torch.stack([v["proj"].feats for v in views]).mean(0)
        return {"global": glob, "proj": views[0]["proj"].replace(feats)}

    @torch.no_grad()
    def tokens(self, stage: str | StageConfig, image: Image.Image | Sequence[Image.Image]) -> torch.Tensor:
        """Cross-attention condition of ``stage`` (no back-projection, so no camera): the image tokens
        ``[1, K + (S/p)², C]`` of :func:`~pixal3d.conditioning.encoders.image_tokens` at the stage's image size
        ``S``, float32; several views of one object are averaged token by token. For cross-attention flows
        (this project's ablations)."""
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        if not images:
            raise UserError("got no image to condition on")
        if len(images) > 1:
            self._use(tuple(images))
        size = self.stage_config(stage).image_size
        views = [image_tokens(*self.features(im, size)[1:]) for im in images]
        return views[0] if len(views) == 1 else torch.stack(views).mean(0)

    def _condition_one(self, stage: str | StageConfig, image: Image.Image, camera: Camera,
                       coords: torch.Tensor | None, grid_resolution: int | None) -> dict[str, Any]:
        cfg = self.stage_config(stage, grid_resolution)
        s, g = cfg.image_size, cfg.grid_resolution
        image_01, glob, patch = self.features(image, s)
        if coords is None:
            lr = backproject_dense(patch, camera, g, s, cell_samples=cfg.cell_samples)[0]
        else:
            lr = backproject_sparse(patch, camera, coords.to(self.device), g, s, cell_samples=cfg.cell_samples)
        parts = [lr]
        if cfg.naf_target is not None and self.encoder.uses_naf:
            parts.append(self._hr_features(image, cfg, camera, coords))
        feats = torch.cat(parts, dim=-1) if len(parts) > 1 else lr
        if coords is None:
            return {"global": glob, "proj": feats[None]}
        return {"global": glob, "proj": SparseTensor(feats, coords.to(self.device))}

    def _hr_features(self, image: Image.Image, cfg: StageConfig, camera, coords: torch.Tensor | None) -> torch.Tensor:
        """NAF features ``[M, C]`` at the projected points: NAF at the unique bilinear taps, then combined."""
        t = cfg.naf_target
        guide = self.guide(image, cfg.image_size, t)
        patch = self.features(image, cfg.image_size)[2]
        grid = sampling_grid(coords.to(self.device) if coords is not None else None, camera,
                             cfg.grid_resolution, cfg.image_size, device=self.device, cell_samples=cfg.cell_samples)[0]
        rows, cols, weights = bilinear_taps(grid, t, t)
        pixels, inverse = torch.unique(rows * t + cols, return_inverse=True)
        values = self.naf.upsample_at(guide, patch, pixels // t, pixels % t)[0].t().contiguous()  # [U, C]
        feats = F.embedding_bag(inverse.reshape(-1, 4), values, per_sample_weights=weights.to(values.dtype), mode="sum")
        return pool_cell_samples(feats, cfg.cell_samples)

    @staticmethod
    def negative(cond: dict[str, Any] | torch.Tensor) -> dict[str, Any] | torch.Tensor:
        """The CFG negative condition: zeros of identical shapes (a sparse ``proj`` keeps its coords; a token
        tensor of :meth:`tokens` gives zero tokens)."""
        if isinstance(cond, torch.Tensor):
            return torch.zeros_like(cond)
        proj = cond["proj"]
        zero_proj = proj.replace(torch.zeros_like(proj.feats)) if isinstance(proj, SparseTensor) else torch.zeros_like(proj)
        return {"global": torch.zeros_like(cond["global"]), "proj": zero_proj}
