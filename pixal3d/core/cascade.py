"""The cascade's geometry as a model folder states it (``pipeline.json`` key ``"cascade"``): grids, upsampling,
pipeline types and the token budget. Plain configuration, read by the pipeline (:mod:`pixal3d.pipelines.cascade`
runs the cascade) and checked by the trainers that write model folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

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

    def to_args(self) -> dict:
        """The ``pipeline.json`` ``"cascade"`` entry stating every field (read back by :meth:`from_args`)."""
        return {f.name: dict(v) if isinstance(v := getattr(self, f.name), dict) else v for f in fields(self)}

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
