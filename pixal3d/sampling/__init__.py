"""Samplers of the flow models."""

from pixal3d.sampling.flow_euler import (
    SIGMA_MIN,
    STAGE_DEFAULTS,
    FlowEulerGuidanceIntervalSampler,
    SampleResult,
    SamplerParams,
    draw_noise,
    draw_sparse_noise,
    guidance_active,
    time_grid,
)

__all__ = [
    "SIGMA_MIN",
    "STAGE_DEFAULTS",
    "FlowEulerGuidanceIntervalSampler",
    "SampleResult",
    "SamplerParams",
    "draw_noise",
    "draw_sparse_noise",
    "guidance_active",
    "time_grid",
]
