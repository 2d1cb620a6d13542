"""The cascade: from low-resolution shape coordinates to the high-resolution token set.

Pixal3D's ``run()`` upsamples the 512-resolution shape latent's coordinates through the shape
decoder (grid 32 → 512), then requantises them onto the high-resolution latent grid
``G = R // 16`` with ``round((c + 0.5) / 512 · (G − 1))`` (not TRELLIS.2's ``floor(… · G)``) and
keeps the unique rows. Starting from ``R = 1536`` it steps down by 128 until the token count is
below ``max_num_tokens`` or ``R == 1024``. Token counts are not monotonic in ``R`` because of the
``G − 1`` scaling.

The numbers are the official ones by default; a model folder may give others in its
``pipeline.json`` (key ``"cascade"``, see :class:`CascadeConfig`) so smaller models trained by this
project run through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from pixal3d.errors import UserError

DEFAULT_MAX_NUM_TOKENS = 49152


@dataclass(frozen=True)
class CascadeConfig:
    """Geometry of the structure → low-res shape → high-res shape cascade.

    * ``structure_grid``: latent grid of the low-resolution shape stage; the sparse-structure
      occupancy is max-pooled to it (official 32, i.e. resolution 512).
    * ``upsample_times``: shape-decoder up-blocks used to upsample the low-res coordinates; each
      doubles the grid, and a latent voxel covers ``2**upsample_times`` output voxels per axis (official 4).
    * ``pipeline_types``: name → starting final resolution ``R`` (official 1024 / 1536 cascades).
    * ``min_resolution`` / ``resolution_step``: the token-budget loop steps ``R`` down by the step
      until it reaches the minimum (official 1024 / 128).
    """

    structure_grid: int = 32
    upsample_times: int = 4
    pipeline_types: dict[str, int] = field(default_factory=lambda: {"1024_cascade": 1024, "1536_cascade": 1536})
    min_resolution: int = 1024
    resolution_step: int = 128

    @property
    def latent_scale(self) -> int:
        """Output voxels per latent voxel along an axis (16 officially)."""
        return 2 ** self.upsample_times

    @property
    def upsampled_grid(self) -> int:
        """Grid reached by upsampling the low-res coordinates (512 officially)."""
        return self.structure_grid * self.latent_scale

    def pipeline_type_for(self, resolution: int) -> str:
        """The pipeline type starting at final resolution ``resolution`` (e.g. 1536 → ``1536_cascade``)."""
        for name, res in self.pipeline_types.items():
            if res == resolution:
                return name
        raise UserError(f"this model has no {resolution} pipeline (resolutions: "
                        f"{', '.join(map(str, self.pipeline_types.values()))}); pick one of those")

    @classmethod
    def from_args(cls, spec: dict | None) -> "CascadeConfig":
        """From a ``pipeline.json`` ``"cascade"`` entry (missing keys keep the official values)."""
        if not spec:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise UserError(f"unknown cascade settings {unknown} in pipeline.json (known: {sorted(known)})")
        config = cls(**spec)
        if config.structure_grid < 2 or config.upsample_times < 0 or not config.pipeline_types:
            raise UserError(f"invalid cascade settings in pipeline.json: {spec}")
        for name, res in config.pipeline_types.items():
            if res < config.min_resolution or res % config.latent_scale:
                raise UserError(f"pipeline type {name!r}: resolution {res} must be ≥ {config.min_resolution} "
                                f"and a multiple of {config.latent_scale}")
        return config


OFFICIAL_CASCADE = CascadeConfig()
#: official pipeline types → starting resolution
PIPELINE_TYPES = OFFICIAL_CASCADE.pipeline_types


def requantize_coords(coords_up: torch.Tensor, resolution: int, config: CascadeConfig = OFFICIAL_CASCADE) -> torch.Tensor:
    """Map coordinates on the upsampled grid (512 officially) to the latent grid of ``resolution``.

    Args:
        coords_up: ``[N, 4]`` int (batch, x, y, z) with x, y, z in ``[0, config.upsampled_grid)``.
        resolution: final voxel resolution ``R``; the latent grid is ``G = R // config.latent_scale``.

    Returns:
        ``[M, 4]`` int32 unique rows in lexicographic order (batch column kept), on the grid ``G``:
        ``round((c + 0.5) / upsampled_grid · (G − 1))``.
    """
    grid = resolution // config.latent_scale
    spatial = ((coords_up[:, 1:].double() + 0.5) / config.upsampled_grid * (grid - 1)).round().int()
    quantised = torch.cat([coords_up[:, :1].int(), spatial], dim=1)
    return torch.unique(quantised, dim=0)


@dataclass
class CascadeChoice:
    """Outcome of the token-budget loop."""

    resolution: int  # accepted final resolution R
    coords: torch.Tensor  # [M, 4] int32 tokens on the grid R // latent_scale
    token_counts: dict[int, int]  # every R visited → its token count


def choose_cascade_resolution(
    coords_up: torch.Tensor, pipeline_type: str = "1536_cascade", max_num_tokens: int = DEFAULT_MAX_NUM_TOKENS,
    config: CascadeConfig = OFFICIAL_CASCADE,
) -> CascadeChoice:
    """Run the official token-budget loop on upsampled coordinates ``[N, 4]``."""
    if pipeline_type not in config.pipeline_types:
        raise UserError(f"unknown pipeline type {pipeline_type!r} (this model has {', '.join(config.pipeline_types)})")
    resolution = config.pipeline_types[pipeline_type]
    counts: dict[int, int] = {}
    while True:
        coords = requantize_coords(coords_up, resolution, config)
        counts[resolution] = len(coords)
        if len(coords) < max_num_tokens or resolution <= config.min_resolution:
            return CascadeChoice(resolution, coords, counts)
        resolution = max(resolution - config.resolution_step, config.min_resolution)
