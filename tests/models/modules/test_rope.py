from __future__ import annotations

import torch

from pixal3d.models.modules.rope import RotaryEmbedder3D
from tests.helpers import assert_close


def test_phases_and_rotation_match_reference(reference):
    misc = reference("misc_ops")
    for hd in (128, 16):
        rope = RotaryEmbedder3D(hd)
        pos = misc[f"rope_hd{hd}.positions"]
        phases = rope.phases(pos)
        assert_close(phases[..., 0], misc[f"rope_hd{hd}.phases_real"], 1e-6, f"hd{hd} cos")
        assert_close(phases[..., 1], misc[f"rope_hd{hd}.phases_imag"], 1e-6, f"hd{hd} sin")
        complex_phases = rope.complex_phases(pos)
        assert_close(complex_phases.real, misc[f"rope_hd{hd}.phases_real"], 1e-6, f"hd{hd} complex")
        # q [1, L, H, hd] with phases [L, hd/2]: broadcast over batch and heads
        q_rot = RotaryEmbedder3D.rotate(misc[f"rope_hd{hd}.q"], phases)
        assert_close(q_rot, misc[f"rope_hd{hd}.q_rotated"], 1e-5, f"hd{hd} rotated")


def test_sparse_rope_uses_voxel_coords(reference):
    misc = reference("misc_ops")
    rope = RotaryEmbedder3D(128)
    phases = rope.phases(misc["sparse_rope.coords"][:, 1:])
    assert_close(RotaryEmbedder3D.rotate(misc["sparse_rope.q"], phases), misc["sparse_rope.q_rot"], 1e-5, "q")
    assert_close(RotaryEmbedder3D.rotate(misc["sparse_rope.k"], phases), misc["sparse_rope.k_rot"], 1e-5, "k")


def test_layout_21_freqs_per_axis_and_zero_pad():
    rope = RotaryEmbedder3D(128)
    assert rope.freq_dim == 21
    ang = rope.angles(torch.tensor([[1, 2, 3]]))[0]
    f = 1.0 / 10000 ** (torch.arange(21, dtype=torch.float64) / 21)
    torch.testing.assert_close(ang[:21].double(), f, rtol=1e-6, atol=0)
    torch.testing.assert_close(ang[21:42].double(), 2 * f, rtol=1e-6, atol=0)
    torch.testing.assert_close(ang[42:63].double(), 3 * f, rtol=1e-6, atol=0)
    assert ang[63] == 0


def test_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    rope = RotaryEmbedder3D(48)
    q, k = torch.randn(1, 1, 48, dtype=torch.float64), torch.randn(1, 1, 48, dtype=torch.float64)

    def score(p: list[int], r: list[int]) -> float:
        qp = RotaryEmbedder3D.rotate(q, rope.phases(torch.tensor([p])).double())
        kr = RotaryEmbedder3D.rotate(k, rope.phases(torch.tensor([r])).double())
        return float((qp * kr).sum())

    base = score([3, 5, 7], [1, 2, 9])
    assert abs(score([13, 25, 17], [11, 22, 19]) - base) < 1e-5
    assert abs(score([3, 5, 7], [1, 2, 10]) - base) > 1e-3  # a different offset changes the score
    # norm-preserving rotation
    rotated = RotaryEmbedder3D.rotate(q, rope.phases(torch.tensor([[40, 3, 77]])).double())
    torch.testing.assert_close(rotated.norm(), q.norm())


def test_rotation_keeps_bf16_dtype_and_computes_in_float32():
    rope = RotaryEmbedder3D(16)
    x = torch.randn(4, 2, 16).bfloat16()
    phases = rope.phases(torch.randint(0, 9, (4, 3)))
    out = RotaryEmbedder3D.rotate(x, phases)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, RotaryEmbedder3D.rotate(x.float(), phases).bfloat16())
