"""NAF upsampler: the ``naf_tiny`` reference run (natten 9×9 dilated attention) and a naive loop reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pixal3d.conditioning.naf import NAF
from pixal3d.errors import UserError
from tests.helpers import assert_close


@pytest.fixture(scope="module")
def fixture(request):
    return request.getfixturevalue("reference")("naf_tiny")


@pytest.fixture(scope="module")
def naf(fixture):
    return NAF.from_state_dict(fixture.weights("w."))


def test_guidance_encoder_rope_matches_reference(fixture, naf):
    encoded = naf.image_encoder(fixture["imageA"], 64)
    assert encoded.shape == (1, 256, 64, 64)
    assert_close(encoded[:, :, :8, :8], fixture["inter.encA_rope_crop8"], 1e-5, "RoPE'd guidance map")


def test_full_maps_match_reference(fixture, naf):
    assert_close(naf(fixture["imageA"], fixture["featsA"], 64), fixture["outA_T64"], 1e-5, "outA_T64 (S=T, d=4)")
    assert_close(naf(fixture["imageB"], fixture["featsB"], 80), fixture["outB_T80"], 1e-5, "outB_T80 (S=2T, d=8)")


def test_pixels_only_match_full_map(fixture, naf):
    guide = naf.guide(fixture["imageB"], 80, (10, 10))
    gen = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 80, (500,), generator=gen)
    cols = torch.randint(0, 80, (500,), generator=gen)
    # a tiny budget forces many chunks with different padded counts
    out = naf.upsample_at(guide, fixture["featsB"], rows, cols, budget_bytes=1 << 16)
    assert out.shape == (1, 16, 500)
    assert_close(out, fixture["outB_T80"][0][:, rows, cols][None], 1e-5, "upsample_at vs reference map")


def _window(i: int, size: int, kernel: int, dilation: int) -> list[int]:
    """NATTEN's dilated window for position i: the dilation group of i, shifted inward at borders."""
    group, index = i % dilation, i // dilation
    length = len(range(group, size, dilation))
    start = min(max(index - kernel // 2, 0), length - kernel)
    return [group + (start + t) * dilation for t in range(kernel)]


def _naive_naf(naf: NAF, image: torch.Tensor, feats: torch.Tensor, size: int) -> torch.Tensor:
    """NAF written the obvious way: full-resolution q/k/v and an explicit loop over output pixels."""
    heads, kernel = 4, 9
    h = feats.shape[-1]
    dilation = size // h
    q = naf.image_encoder(image, size)[0]
    k = F.interpolate(F.adaptive_avg_pool2d(q[None], (h, h)), size=(size, size), mode="nearest-exact")[0]
    v = F.interpolate(feats, size=(size, size), mode="nearest-exact")[0]
    q, k = q.reshape(heads, 64, size, size), k.reshape(heads, 64, size, size)
    v = v.reshape(heads, -1, size, size)
    out = torch.zeros_like(v)
    for i in range(size):
        wr = _window(i, size, kernel, dilation)
        for j in range(size):
            wc = _window(j, size, kernel, dilation)
            keys = k[:, :, wr][:, :, :, wc].reshape(heads, 64, -1)
            vals = v[:, :, wr][:, :, :, wc].reshape(heads, v.shape[1], -1)
            weights = torch.softmax(torch.einsum("nd,ndk->nk", q[:, :, i, j], keys) / 8.0, dim=-1)
            out[:, :, i, j] = torch.einsum("nk,nck->nc", weights, vals)
    return out.reshape(1, -1, size, size)


@pytest.mark.parametrize("lr,size,image_size", [(10, 20, 20), (9, 18, 36)])
def test_matches_naive_neighbourhood_attention(naf, lr, size, image_size):
    gen = torch.Generator().manual_seed(lr)
    image = torch.rand(1, 3, image_size, image_size, generator=gen)
    feats = torch.randn(1, 8, lr, lr, generator=gen)
    assert_close(naf(image, feats, size), _naive_naf(naf, image, feats, size), 1e-5, f"naive h={lr} T={size}")


def test_from_file_strict_rng_free_and_missing(fixture, tmp_path, monkeypatch):
    monkeypatch.setenv("PIXAL3D_MODELS", str(tmp_path))
    with pytest.raises(UserError, match="naf_release.pth"):
        NAF.from_file()
    (tmp_path / "naf").mkdir()
    torch.save(fixture.weights("w."), tmp_path / "naf" / "naf_release.pth")
    torch.manual_seed(7)
    state = torch.get_rng_state()
    naf = NAF.from_file()
    assert torch.equal(state, torch.get_rng_state()), "loading NAF consumed the global RNG"
    assert_close(naf(fixture["imageA"], fixture["featsA"], 64), fixture["outA_T64"], 1e-5, "from_file")
    bad = dict(fixture.weights("w."))
    bad.pop("image_encoder.rope.periods")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="not a NAF checkpoint"):
        NAF.from_file(tmp_path / "bad.pth")


def test_rejects_unsupported_sizes(naf):
    with pytest.raises(ValueError, match="at least 9"):
        naf.guide(torch.rand(1, 3, 32, 32), 32, (8, 8))
    with pytest.raises(ValueError, match="multiple"):
        naf.guide(torch.rand(1, 3, 30, 30), 30, (10, 12))
