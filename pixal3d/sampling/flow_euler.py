"""Flow-matching Euler sampler with classifier-free guidance inside a time interval.

Official ``FlowEulerGuidanceIntervalSampler(sigma_min=1e-5)``. Convention: ``x_t = (1-t)·x_0 +
(σ_min + (1-σ_min)·t)·ε`` (t=1 noise, t=0 data); the model predicts the velocity ``v`` and receives
``1000·t`` (float32, one value per batch item). Works on dense tensors ``[B, ...]`` and SparseTensors.
Noise is drawn by the caller (see :func:`draw_noise`, :func:`draw_sparse_noise`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from pixal3d.core.sparse_tensor import SparseTensor

Sample = Union[torch.Tensor, SparseTensor]

SIGMA_MIN = 1e-5


@dataclass(frozen=True)
class SamplerParams:
    """Sampling settings of one stage (names as the official ``*_sampler_params``)."""

    steps: int
    guidance_strength: float
    guidance_rescale: float
    guidance_interval: tuple[float, float]
    rescale_t: float

    def with_overrides(self, **overrides: Any) -> "SamplerParams":
        """A copy with the given fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`FlowEulerGuidanceIntervalSampler.sample`."""
        return {
            "steps": self.steps, "guidance_strength": self.guidance_strength,
            "guidance_rescale": self.guidance_rescale, "guidance_interval": self.guidance_interval,
            "rescale_t": self.rescale_t,
        }


#: official per-stage defaults (``inference.py`` overrides + ``pipeline.json`` guidance intervals)
STAGE_DEFAULTS: dict[str, SamplerParams] = {
    "sparse_structure": SamplerParams(12, 7.5, 0.7, (0.6, 1.0), 5.0),
    "shape_slat": SamplerParams(12, 7.5, 0.5, (0.6, 1.0), 3.0),
    "tex_slat": SamplerParams(12, 1.0, 0.0, (0.6, 0.9), 3.0),
}


def time_grid(steps: int, rescale_t: float = 1.0) -> list[float]:
    """float64 times ``t_0 = 1 > … > t_steps = 0``: ``r·s / (1 + (r-1)·s)`` over ``s = linspace(1, 0, steps+1)``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    s = np.linspace(1, 0, steps + 1)
    return (rescale_t * s / (1 + (rescale_t - 1) * s)).tolist()


def guidance_active(t: float, guidance_interval: tuple[float, float]) -> bool:
    """Whether CFG applies at float64 time ``t`` (closed interval ``[lo, hi]``)."""
    return guidance_interval[0] <= t <= guidance_interval[1]


def draw_noise(shape: tuple[int, ...], device: torch.device | str | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal float32 ``shape`` drawn on the CPU generator (global one if ``generator`` is None), then moved.

    Matches the official RNG consumption: after ``torch.manual_seed(seed)`` the pipeline draws the SS noise
    ``[1, 8, 16, 16, 16]``, then LR shape ``[N_lr, 32]``, HR shape ``[N_hr, 32]`` and texture ``[N_hr, 32]`` noise.
    """
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    return noise.to(device) if device is not None else noise


def draw_sparse_noise(coords: torch.Tensor, channels: int, device: torch.device | str | None = None,
                      generator: torch.Generator | None = None) -> SparseTensor:
    """SparseTensor noise: feats ``[N, channels]`` from :func:`draw_noise` at ``coords [N, 4]`` int32."""
    feats = draw_noise((coords.shape[0], channels), device, generator)
    return SparseTensor(feats, coords.to(feats.device))


@dataclass
class SampleResult:
    """``samples`` = the final ``x``; with ``keep_trajectory`` the per-step ``pred_x_prev`` and ``pred_x_0``."""

    samples: Sample
    pred_x_prev: list[Sample] = field(default_factory=list)
    pred_x_0: list[Sample] = field(default_factory=list)


def _feats(x: Sample) -> torch.Tensor:
    return x.feats if isinstance(x, SparseTensor) else x


def _like(x: Sample, feats: torch.Tensor) -> Sample:
    return x.replace(feats) if isinstance(x, SparseTensor) else feats


def _batch_size(x: Sample) -> int:
    return x.batch_size if isinstance(x, SparseTensor) else x.shape[0]


def _std_ratio(x_ref: Sample, x: Sample) -> torch.Tensor:
    """Per-item ``std(x_ref) / std(x)`` shaped to broadcast against ``_feats(x)``.

    Dense: unbiased std over all non-batch elements. Sparse: population std over the item's
    tokens × channels as ``sqrt(E[f²] - E[f]²)`` (the official varlen reduction).
    """
    if not isinstance(x, SparseTensor):
        dims = list(range(1, x.ndim))
        return x_ref.std(dim=dims, keepdim=True) / x.std(dim=dims, keepdim=True)

    def item_std(f: torch.Tensor) -> torch.Tensor:
        idx, b = x.batch_index, x.batch_size
        count = torch.bincount(idx, minlength=b).to(f.dtype)
        m1 = torch.zeros(b, dtype=f.dtype, device=f.device).index_add_(0, idx, f.mean(dim=1)) / count
        m2 = torch.zeros(b, dtype=f.dtype, device=f.device).index_add_(0, idx, (f * f).mean(dim=1)) / count
        return (m2 - m1 * m1).sqrt()

    ratio = item_std(_feats(x_ref)) / item_std(_feats(x))
    return x.per_item(ratio)[:, None]


class FlowEulerGuidanceIntervalSampler:
    """Euler integration of ``dx/dt = v`` from ``t=1`` to ``0`` with interval CFG and guidance rescale."""

    def __init__(self, sigma_min: float = SIGMA_MIN):
        self.sigma_min = sigma_min

    def _sigma(self, t: float) -> float:
        return self.sigma_min + (1 - self.sigma_min) * t

    def x0_from_v(self, x_t: torch.Tensor, t: float, v: torch.Tensor) -> torch.Tensor:
        """``x_0 = (1-σ_min)·x_t - (σ_min + (1-σ_min)·t)·v``."""
        return (1 - self.sigma_min) * x_t - self._sigma(t) * v

    def v_from_x0(self, x_t: torch.Tensor, t: float, x_0: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`x0_from_v`: ``v = ((1-σ_min)·x_t - x_0) / (σ_min + (1-σ_min)·t)``."""
        return ((1 - self.sigma_min) * x_t - x_0) / self._sigma(t)

    @staticmethod
    def _call(model: Callable[..., Sample], x_t: Sample, t: float, cond: Any, model_kwargs: Mapping[str, Any]) -> torch.Tensor:
        t_model = torch.tensor([1000 * t] * _batch_size(x_t), device=_feats(x_t).device, dtype=torch.float32)
        return _feats(model(x_t, t_model, cond, **model_kwargs))

    def velocity(
        self, model: Callable[..., Sample], x_t: Sample, t: float, cond: Any, neg_cond: Any,
        guidance_strength: float, guidance_rescale: float, guidance_interval: tuple[float, float],
        **model_kwargs: Any,
    ) -> torch.Tensor:
        """Guided velocity feats at float64 time ``t`` (one model pass when guidance is off, else pos then neg)."""
        g = guidance_strength if guidance_active(t, guidance_interval) else 1.0
        if g == 1:
            return self._call(model, x_t, t, cond, model_kwargs)
        if neg_cond is None:
            raise ValueError("classifier-free guidance needs neg_cond")
        if g == 0:
            return self._call(model, x_t, t, neg_cond, model_kwargs)
        v_pos = self._call(model, x_t, t, cond, model_kwargs)
        v_neg = self._call(model, x_t, t, neg_cond, model_kwargs)
        v = g * v_pos + (1 - g) * v_neg
        if guidance_rescale > 0:
            xt = _feats(x_t)
            x0_pos = self.x0_from_v(xt, t, v_pos)
            x0_cfg = self.x0_from_v(xt, t, v)
            ratio = _std_ratio(_like(x_t, x0_pos), _like(x_t, x0_cfg))
            x0 = guidance_rescale * (x0_cfg * ratio) + (1 - guidance_rescale) * x0_cfg
            v = self.v_from_x0(xt, t, x0)
        return v

    @torch.no_grad()
    def sample(
        self,
        model: Callable[..., Sample],
        noise: Sample,
        cond: Any,
        neg_cond: Any = None,
        *,
        steps: int = 12,
        guidance_strength: float = 1.0,
        guidance_rescale: float = 0.0,
        guidance_interval: tuple[float, float] = (0.0, 1.0),
        rescale_t: float = 1.0,
        keep_trajectory: bool = False,
        progress: bool | Callable[[int, int], None] = False,
        desc: str = "Sampling",
        **model_kwargs: Any,
    ) -> SampleResult:
        """Integrate from ``noise`` (t=1) to t=0 in ``steps`` Euler steps; returns :class:`SampleResult`.

        ``model(x_t, 1000·t [B] float32, cond, **model_kwargs)`` returns the velocity (same type as ``x_t``);
        ``model_kwargs`` carries e.g. ``concat_cond``. A model with ``prepare_condition`` (the flows) gets each
        condition through it once, before the first step. ``progress=True`` shows a tqdm bar; a callable gets
        ``(step_done, steps)`` after every step.
        """
        prepare = getattr(model, "prepare_condition", None)
        if prepare is not None:  # what depends only on the condition is computed once per stage, not per step
            cond = prepare(cond)
            neg_cond = prepare(neg_cond) if neg_cond is not None else None
        ts = time_grid(steps, rescale_t)
        pairs = list(zip(ts[:-1], ts[1:]))
        result = SampleResult(samples=noise)
        x = noise
        bar = tqdm(pairs, desc=desc) if progress is True else None
        try:  # the bar ends its line even when a step fails or is interrupted
            for i, (t, t_prev) in enumerate(bar if bar is not None else pairs):
                v = self.velocity(model, x, t, cond, neg_cond, guidance_strength, guidance_rescale, guidance_interval,
                                  **model_kwargs)
                xt = _feats(x)
                x_next = _like(x, xt - (t - t_prev) * v)
                if keep_trajectory:
                    result.pred_x_prev.append(x_next)
                    result.pred_x_0.append(_like(x, self.x0_from_v(xt, t, v)))
                x = x_next
                if callable(progress):
                    progress(i + 1, steps)
        finally:
            if bar is not None:
                bar.close()
        result.samples = x
        return result
