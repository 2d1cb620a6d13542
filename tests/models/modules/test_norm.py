from __future__ import annotations

import torch

from pixal3d.models.modules.norm import LayerNorm32, MultiHeadRMSNorm
from tests.helpers import assert_close


def test_rms_norm_matches_reference(reference):
    misc = reference("misc_ops")
    norm = MultiHeadRMSNorm(128, 12)
    norm.load_state_dict({"gamma": misc["rms.gamma"]})
    assert_close(norm(misc["rms.x"]), misc["rms.out"], 1e-5, "fp32")
    out_bf16 = norm(misc["rms.x_bf16"])
    assert out_bf16.dtype == torch.bfloat16
    assert torch.equal(out_bf16, misc["rms.out_bf16"])


def test_rms_norm_formula():
    norm = MultiHeadRMSNorm(4, 2)
    with torch.no_grad():
        norm.gamma.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]]))
    x = torch.tensor([[[3.0, 0.0, 4.0, 0.0], [1.0, 1.0, 1.0, 1.0]]])  # [1, heads=2, 4]
    # normalize → unit vector, × gamma × sqrt(4)
    expected = torch.tensor([[[1.2, 0.0, 1.6, 0.0], [2.0, 2.0, 2.0, 2.0]]])
    torch.testing.assert_close(norm(x), expected)


def test_layernorm32_computes_in_float32():
    ln = LayerNorm32(64, elementwise_affine=False, eps=1e-6)
    x = (torch.randn(3, 64) * 50 + 1000).bfloat16()
    out = ln(x)
    assert out.dtype == torch.bfloat16
    expected = torch.nn.functional.layer_norm(x.float(), (64,), eps=1e-6).bfloat16()
    assert torch.equal(out, expected)
