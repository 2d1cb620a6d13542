"""The cascade: from low-resolution shape coordinates to the high-resolution token set.

Pixal3D's ``run()`` upsamples the 512-resolution shape latent's coordinates through the shape
decoder (grid 32 → 512), then requantises them onto the high-resolution latent grid
``G = R // 16`` with ``round((c + 0.5) / 512 · (G − 1))`` (not TRELLIS.2's ``floor(… · G)``) and
keeps the unique rows. Starting from ``R = 1536`` it steps down by 128 until the token count is
below ``max_num_tokens`` or ``R == 1024``. Token counts are not monotonic in ``R`` because of the
``G − 1`` scaling.

The numbers are the official ones by default; a model folder may give others in its
``pipeline.json`` (key ``"cascade"``, see :class:`pixal3d.core.cascade.CascadeConfig`) so smaller models
trained by this project run through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pixal3d.core.cascade import DEFAULT_MAX_NUM_TOKENS, OFFICIAL_CASCADE, CascadeConfig
from pixal3d.errors import UserError


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
