from __future__ import annotations

import pytest
import torch

from pixal3d.models.slat_flow import ElasticSLatFlowModel
from pixal3d.core.sparse_tensor import SparseTensor
from pixal3d.models.ss_flow import SparseStructureFlowModel
from pixal3d.sampling import (
    SIGMA_MIN,
    STAGE_DEFAULTS,
    FlowEulerGuidanceIntervalSampler,
    draw_noise,
    draw_sparse_noise,
    guidance_active,
    time_grid,
)
from tests.helpers import assert_close


class Recorder:
    """Wraps a model and records (t_model, cond tag) of every call."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, x, t, cond, **kwargs):
        self.calls.append((round(float(t[0]), 3), "neg" if float(cond["global"].abs().sum()) == 0 else "pos"))
        return self.model(x, t, cond, **kwargs)


def _expected_calls(meta) -> list[tuple[float, str]]:
    return [(round(c["t_model"][0], 3), "pos" if c["cond"] == "pos" else "neg") for c in meta["model_calls_in_order"]]


def test_dense_sparse_structure_sampling(reference):
    f, w = reference("sampler_dense_ss"), reference("ss_flow_tiny_proj")
    model = SparseStructureFlowModel(**w.meta["args"])
    model.load_state_dict(w.weights())
    cond = {"global": f["cond_global"], "proj": f["cond_proj"]}
    neg = {k: torch.zeros_like(v) for k, v in cond.items()}
    rec = Recorder(model)
    out = FlowEulerGuidanceIntervalSampler(1e-5).sample(rec, f["noise"], cond, neg, keep_trajectory=True,
                                                        **f.meta["params"])
    assert rec.calls == _expected_calls(f.meta)
    assert time_grid(4, 5.0) == f.meta["t_seq_float64"]
    for k in range(4):
        assert_close(out.pred_x_prev[k], f[f"step{k}_pred_x_prev"], 1e-4, f"step{k} x_prev")
        assert_close(out.pred_x_0[k], f[f"step{k}_pred_x_0"], 1e-4, f"step{k} x_0")
    assert_close(out.samples, f["samples"], 1e-4, "samples")


def _slat(name: str) -> ElasticSLatFlowModel:
    from tests.helpers import Fixture

    w = Fixture(name)
    model = ElasticSLatFlowModel(**w.meta["args"])
    model.load_state_dict(w.weights())
    return model


def test_sparse_shape_sampling(reference):
    f = reference("sampler_sparse_shape")
    coords = f["coords"]
    cond = {"global": f["cond_global"], "proj": SparseTensor(f["cond_proj_feats"], coords)}
    neg = {"global": torch.zeros_like(f["cond_global"]), "proj": SparseTensor(torch.zeros_like(f["cond_proj_feats"]), coords)}
    rec = Recorder(_slat("slat_flow_tiny_proj"))
    out = FlowEulerGuidanceIntervalSampler().sample(rec, SparseTensor(f["noise_feats"], coords), cond, neg,
                                                    keep_trajectory=True, **f.meta["params"])
    assert rec.calls == _expected_calls(f.meta)  # last step (t=0.5) outside the interval: one pass
    for k in range(4):
        assert_close(out.pred_x_prev[k].feats, f[f"step{k}_pred_x_prev_feats"], 1e-4, f"step{k} x_prev")
        assert_close(out.pred_x_0[k].feats, f[f"step{k}_pred_x_0_feats"], 1e-4, f"step{k} x_0")
    assert torch.equal(out.samples.coords, coords)
    assert_close(out.samples.feats, f["samples_feats"], 1e-4, "samples")


def test_sparse_texture_sampling_with_concat_cond(reference):
    f, w = reference("sampler_sparse_tex"), reference("slat_flow_tiny_tex")
    coords = f["coords"]
    n = coords.shape[0]
    cond = {"global": w["cond_global"][:1], "proj": SparseTensor(w["cond_proj_feats"][:n], coords)}
    rec = Recorder(_slat("slat_flow_tiny_tex"))
    out = FlowEulerGuidanceIntervalSampler().sample(
        rec, SparseTensor(f["noise_feats"], coords), cond, None,
        concat_cond=SparseTensor(f["concat_cond_feats"], coords), **f.meta["params"],
    )
    assert rec.calls == _expected_calls(f.meta)
    assert_close(out.samples.feats, f["samples_feats"], 1e-4, "samples")


def test_euler_reaches_analytic_endpoint():
    """With the exact velocity of the straight path x_t = (1-t)x0 + (σ+(1-σ)t)ε, Euler is exact for any grid.

    The model only sees float32 ``1000·t``, so the endpoint is exact up to that rounding (~1e-7).
    """
    torch.manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)
    sampler = FlowEulerGuidanceIntervalSampler()

    def velocity(x, t, cond):
        s = SIGMA_MIN + (1 - SIGMA_MIN) * (t.double()[:, None, None] / 1000)
        return ((1 - SIGMA_MIN) * x - x0) / s

    for steps, r in ((1, 1.0), (5, 3.0), (12, 5.0)):
        out = sampler.sample(velocity, eps.clone(), None, steps=steps, rescale_t=r, keep_trajectory=True)
        torch.testing.assert_close(out.samples, x0 + SIGMA_MIN * eps, rtol=0, atol=1e-6)
        assert (out.samples - x0).abs().max() > 1e-7  # the σ_min·ε remainder is really there
        for x0_pred in out.pred_x_0:
            torch.testing.assert_close(x0_pred, x0, rtol=0, atol=1e-5)


def test_cfg_combination_and_rescale():
    sampler = FlowEulerGuidanceIntervalSampler()
    x = torch.randn(1, 2, 5, generator=torch.Generator().manual_seed(3))
    v_pos, v_neg = torch.full_like(x, 0.3), torch.linspace(-1, 1, 10).reshape(1, 2, 5)
    model = lambda x_t, t, c: v_pos if c == "pos" else v_neg  # noqa: E731
    v = sampler.velocity(model, x, 0.8, "pos", "neg", 7.5, 0.0, (0.6, 1.0))
    torch.testing.assert_close(v, 7.5 * v_pos - 6.5 * v_neg)
    assert torch.equal(sampler.velocity(model, x, 0.8, "pos", "neg", 0.0, 0.0, (0.6, 1.0)), v_neg)
    assert torch.equal(sampler.velocity(model, x, 0.5, "pos", "neg", 7.5, 0.7, (0.6, 1.0)), v_pos)
    # rescale 1: the x0 of the guided velocity has the std of the positive x0
    v_r = sampler.velocity(model, x, 0.8, "pos", "neg", 7.5, 1.0, (0.6, 1.0))
    x0_r, x0_pos = sampler.x0_from_v(x, 0.8, v_r), sampler.x0_from_v(x, 0.8, v_pos)
    torch.testing.assert_close(x0_r.std(), x0_pos.std(), rtol=1e-5, atol=0)
    with pytest.raises(ValueError):
        sampler.velocity(model, x, 0.8, "pos", None, 7.5, 0.0, (0.6, 1.0))


def test_sparse_rescale_is_per_item():
    sampler = FlowEulerGuidanceIntervalSampler()
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [1, 0, 1, 0]], dtype=torch.int32)
    x = SparseTensor(torch.randn(5, 3, generator=torch.Generator().manual_seed(4)), coords)
    v_pos = torch.randn(5, 3, generator=torch.Generator().manual_seed(5))
    v_pos[3:] *= 10
    v_neg = torch.zeros(5, 3)
    model = lambda x_t, t, c: x_t.replace(v_pos if c == "pos" else v_neg)  # noqa: E731
    v = sampler.velocity(model, x, 0.9, "pos", "neg", 3.0, 1.0, (0.0, 1.0))
    for rows in (slice(0, 3), slice(3, 5)):
        std_r = sampler.x0_from_v(x.feats[rows], 0.9, v[rows]).std(unbiased=False)
        std_p = sampler.x0_from_v(x.feats[rows], 0.9, v_pos[rows]).std(unbiased=False)
        torch.testing.assert_close(std_r, std_p, rtol=1e-5, atol=0)


def test_guidance_interval_boundaries_and_stage_defaults():
    ss, shape, tex = STAGE_DEFAULTS["sparse_structure"], STAGE_DEFAULTS["shape_slat"], STAGE_DEFAULTS["tex_slat"]
    assert (ss.steps, ss.guidance_strength, ss.guidance_rescale, ss.guidance_interval, ss.rescale_t) == (12, 7.5, 0.7, (0.6, 1.0), 5.0)
    assert (shape.guidance_rescale, shape.rescale_t) == (0.5, 3.0)
    assert (tex.guidance_strength, tex.guidance_interval) == (1.0, (0.6, 0.9))
    active = lambda p: [i for i, t in enumerate(time_grid(p.steps, p.rescale_t)[:-1]) if guidance_active(t, p.guidance_interval)]  # noqa: E731
    assert active(ss) == list(range(10))
    assert time_grid(12, 3.0)[8] == 0.6  # closed interval: included
    assert active(shape) == list(range(9))
    assert not guidance_active(1.0 + 1e-12, (0.6, 1.0))
    assert shape.with_overrides(steps=4, guidance_strength=None).steps == 4
    assert shape.as_kwargs()["guidance_interval"] == (0.6, 1.0)


def test_progress_callback_and_noise_order():
    sampler = FlowEulerGuidanceIntervalSampler()
    seen = []
    sampler.sample(lambda x, t, c: torch.zeros_like(x), torch.zeros(1, 2), None, steps=3, progress=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    torch.manual_seed(42)
    a = draw_noise((1, 8, 2, 2, 2))
    b = draw_sparse_noise(torch.zeros(3, 4, dtype=torch.int32), 4)
    torch.manual_seed(42)
    assert torch.equal(a, torch.randn(1, 8, 2, 2, 2)) and torch.equal(b.feats, torch.randn(3, 4))
    assert b.coords.dtype == torch.int32


def test_condition_projections_computed_once_are_bit_identical(reference):
    """The flows' per-block projections of the condition are computed once per stage (issue 15, no per-step
    recomputation of what does not change) and give the very numbers of the per-step path."""
    from pixal3d.models.modules.blocks import PROJECTED_KEY

    f = reference("sampler_sparse_shape")
    coords = f["coords"]
    cond = {"global": f["cond_global"], "proj": SparseTensor(f["cond_proj_feats"], coords)}
    neg = {"global": torch.zeros_like(f["cond_global"]), "proj": SparseTensor(torch.zeros_like(f["cond_proj_feats"]), coords)}
    model = _slat("slat_flow_tiny_proj").eval()
    prepared = model.prepare_condition(cond)
    assert len(prepared[PROJECTED_KEY]) == len(model.blocks)
    assert model.prepare_condition(cond, budget_bytes=0) is cond  # over the memory budget: per step, as before
    sampler = FlowEulerGuidanceIntervalSampler()
    once = sampler.sample(model, SparseTensor(f["noise_feats"], coords), cond, neg, **f.meta["params"]).samples
    per_step = sampler.sample(Recorder(model), SparseTensor(f["noise_feats"], coords), cond, neg,  # no prepare_condition
                              **f.meta["params"]).samples
    assert torch.equal(once.feats, per_step.feats)
