from __future__ import annotations

import math

import torch

from pixal3d.models.modules.timestep import TimestepEmbedder, timestep_sinusoid
from tests.helpers import assert_close


def test_sinusoid_matches_reference(reference):
    misc = reference("misc_ops")
    # float32 as the official; the vector exp/cos/sin libraries round differently across CPUs (MKL dispatches on the
    # CPU model), and one float32 ulp of t·f at t = 1000 moves cos by up to 1000·2⁻²⁴ ≈ 6e-5 (2.9e-5 seen on an Intel
    # Xeon, < 1e-6 on an AMD EPYC); a wrong frequency, order or period is off by O(1)
    assert_close(timestep_sinusoid(misc["temb.t"], 256), misc["temb.sinusoid256"], 1e-4, "dim 256")
    assert_close(timestep_sinusoid(misc["temb.t"], 7), misc["temb.sinusoid_odd7"], 1e-4, "dim 7")


def test_sinusoid_layout_cos_first_and_odd_pad():
    t = torch.tensor([2.0])
    emb = timestep_sinusoid(t, 7)
    freqs = [math.exp(-math.log(10000) * i / 3) for i in range(3)]
    expected = [math.cos(2 * f) for f in freqs] + [math.sin(2 * f) for f in freqs] + [0.0]
    torch.testing.assert_close(emb[0], torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_embedder_mlp_keys_and_shape():
    emb = TimestepEmbedder(32)
    assert sorted(emb.state_dict()) == ["mlp.0.bias", "mlp.0.weight", "mlp.2.bias", "mlp.2.weight"]
    assert emb.mlp[0].in_features == 256
    t = torch.tensor([0.0, 500.0, 1000.0])
    out = emb(t)
    assert out.shape == (3, 32)
    expected = emb.mlp[2](torch.nn.functional.silu(emb.mlp[0](timestep_sinusoid(t, 256))))
    torch.testing.assert_close(out, expected)
