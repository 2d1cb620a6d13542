"""The 1024/1536 cascade: from low-resolution shape coordinates to the high-resolution token set.

Pixal3D's ``run()`` upsamples the 512-resolution shape latent's coordinates through the shape
decoder (grid 32 → 512), then requantises them onto the high-resolution latent grid
``G = R // 16`` with ``round((c + 0.5) / 512 · (G − 1))`` (not TRELLIS.2's ``floor(… · G)``) and
keeps the unique rows. Starting from ``R = 1536`` it steps down by 128 until the token count is
below ``max_num_tokens`` or ``R == 1024``. Token counts are not monotonic in ``R`` because of the
``G − 1`` scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: pipeline types of the official ``run()`` → starting resolution
PIPELINE_TYPES = {"1024_cascade": 1024, "1536_cascade": 1536}
MIN_RESOLUTION = 1024
RESOLUTION_STEP = 128
DEFAULT_MAX_NUM_TOKENS = 49152
UPSAMPLED_GRID = 512


def requantize_coords(coords_512: torch.Tensor, resolution: int) -> torch.Tensor:
    """Map coordinates on the 512-grid to the latent grid of ``resolution``.

    Args:
        coords_512: ``[N, 4]`` int (batch, x, y, z) with x, y, z in ``[0, 512)``.
        resolution: final voxel resolution ``R``; the latent grid is ``G = R // 16``.

    Returns:
        ``[M, 4]`` int32 unique rows in lexicographic order (batch column kept).
    """
    grid = resolution // 16
    spatial = ((coords_512[:, 1:].double() + 0.5) / UPSAMPLED_GRID * (grid - 1)).round().int()
    quantised = torch.cat([coords_512[:, :1].int(), spatial], dim=1)
    return torch.unique(quantised, dim=0)


@dataclass
class CascadeChoice:
    """Outcome of the token-budget loop."""

    resolution: int  # accepted final resolution R
    coords: torch.Tensor  # [M, 4] int32 tokens on the grid R // 16
    token_counts: dict[int, int]  # every R visited → its token count


def choose_cascade_resolution(
    coords_512: torch.Tensor, pipeline_type: str = "1536_cascade", max_num_tokens: int = DEFAULT_MAX_NUM_TOKENS
) -> CascadeChoice:
    """Run the official token-budget loop on upsampled coordinates ``[N, 4]`` (grid 512)."""
    if pipeline_type not in PIPELINE_TYPES:
        raise ValueError(f"unknown pipeline type {pipeline_type!r} (use {', '.join(PIPELINE_TYPES)})")
    resolution = PIPELINE_TYPES[pipeline_type]
    counts: dict[int, int] = {}
    while True:
        coords = requantize_coords(coords_512, resolution)
        counts[resolution] = len(coords)
        if len(coords) < max_num_tokens or resolution == MIN_RESOLUTION:
            return CascadeChoice(resolution, coords, counts)
        resolution -= RESOLUTION_STEP
