"""Shared primitives: attention (masks, bias), 3D RoPE (Wan layout), timestep embedding, norms."""

from __future__ import annotations

import math

import pytest
import torch

from kinema.nn.attention import Attention, attention
from kinema.nn.embeddings import TimestepEmbedder, timestep_embedding
from kinema.nn.norms import FP32LayerNorm, RMSNorm, modulate
from kinema.nn.rope import apply_rope, rope_3d, rope_axis_pairs

torch.set_num_threads(1)


def naive_attention(q, k, v, mask=None, bias=None):
    """softmax(q k^T / sqrt(d) + bias) v, masked keys excluded, written out by hand."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


# ---------------------------------------------------------------- attention


def test_attention_matches_naive_softmax_with_mask_and_bias():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 5, 8, generator=g)
    k = torch.randn(2, 3, 7, 8, generator=g)
    v = torch.randn(2, 3, 7, 8, generator=g)
    mask = torch.tensor([[1, 1, 0, 1, 0, 1, 1], [0, 1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    bias = torch.randn(1, 3, 5, 7, generator=g)
    torch.testing.assert_close(attention(q, k, v), naive_attention(q, k, v))
    torch.testing.assert_close(attention(q, k, v, mask=mask), naive_attention(q, k, v, mask=mask))
    torch.testing.assert_close(attention(q, k, v, bias=bias), naive_attention(q, k, v, bias=bias))
    torch.testing.assert_close(
        attention(q, k, v, mask=mask, bias=bias), naive_attention(q, k, v, mask=mask, bias=bias)
    )


def test_attention_fully_masked_rows_give_zeros_not_nan():
    q, k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 3, 8), torch.randn(2, 2, 3, 8)
    mask = torch.tensor([[False, False, False], [True, False, True]])
    for bias in (None, torch.randn(2, 2, 4, 3)):
        out = attention(q, k, v, mask=mask, bias=bias)
        assert torch.isfinite(out).all()
        assert torch.equal(out[0], torch.zeros_like(out[0]))
        torch.testing.assert_close(out[1:], naive_attention(q[1:], k[1:], v[1:], mask=mask[1:], bias=None if bias is None else bias[1:]))


def test_attention_layer_self_and_cross_shapes_and_mask():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 32)
    self_attn = Attention(32, 4)
    assert self_attn(x).shape == (2, 6, 32)
    cross = Attention(32, 4, context_dim=20)
    ctx = torch.randn(2, 9, 20)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[:, 5:] = False
    out = cross(x, ctx, mask)
    assert out.shape == (2, 6, 32)
    # Masked keys do not matter: replace them with garbage.
    garbage = ctx.clone()
    garbage[:, 5:] = 1e3 * torch.randn(2, 4, 20)
    torch.testing.assert_close(cross(x, garbage, mask), out)
    torch.testing.assert_close(cross(x, ctx[:, :5]), out)


def test_attention_layer_matches_manual_computation_with_qk_norm_and_rope():
    torch.manual_seed(0)
    layer = Attention(24, 2, qk_norm=True)
    with torch.no_grad():
        layer.norm_q.weight.uniform_(0.5, 1.5)
        layer.norm_k.weight.uniform_(0.5, 1.5)
    x = torch.randn(1, 2 * 2 * 3, 24)
    rope = rope_3d((2, 2, 3), 12)

    def rms(z, w):
        return z / torch.sqrt(z.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    q = rms(layer.to_q(x), layer.norm_q.weight).view(1, -1, 2, 12).transpose(1, 2)
    k = rms(layer.to_k(x), layer.norm_k.weight).view(1, -1, 2, 12).transpose(1, 2)
    v = layer.to_v(x).view(1, -1, 2, 12).transpose(1, 2)
    o = naive_attention(apply_rope(q, rope), apply_rope(k, rope), v)
    expected = layer.to_out(o.transpose(1, 2).reshape(1, -1, 24))
    torch.testing.assert_close(layer(x, rope=rope), expected)


# ---------------------------------------------------------------- rope


def wan_rope_apply(x, grid, theta=10000.0):
    """Wan 2.1's rope_params + rope_apply for one sample, re-stated: x (L, heads, d)."""
    d = x.shape[-1]

    def rope_params(n, dim):
        freqs = torch.outer(
            torch.arange(n, dtype=torch.float64),
            1.0 / torch.pow(theta, torch.arange(0, dim, 2, dtype=torch.float64) / dim),
        )
        return torch.polar(torch.ones_like(freqs), freqs)

    freqs = torch.cat([rope_params(64, d - 4 * (d // 6)), rope_params(64, 2 * (d // 6)), rope_params(64, 2 * (d // 6))], 1)
    c = d // 2
    f_t, f_h, f_w = freqs.split([c - 2 * (c // 3), c // 3, c // 3], dim=1)
    f, h, w = grid
    seq = f * h * w
    xc = torch.view_as_complex(x.to(torch.float64).reshape(seq, x.shape[1], -1, 2))
    table = torch.cat(
        [
            f_t[:f].view(f, 1, 1, -1).expand(f, h, w, -1),
            f_h[:h].view(1, h, 1, -1).expand(f, h, w, -1),
            f_w[:w].view(1, 1, w, -1).expand(f, h, w, -1),
        ],
        dim=-1,
    ).reshape(seq, 1, -1)
    return torch.view_as_real(xc * table).flatten(2).float()


@pytest.mark.parametrize("head_dim", [12, 16, 64, 128])
def test_rope_matches_wan_rope_apply(head_dim):
    grid = (3, 4, 5)
    x = torch.randn(1, 2, 60, head_dim)  # (B, heads, L, d)
    ours = apply_rope(x, rope_3d(grid, head_dim))
    wan = wan_rope_apply(x[0].transpose(0, 1), grid).transpose(0, 1)[None]
    torch.testing.assert_close(ours, wan, atol=1e-5, rtol=1e-5)


def test_rope_axis_split_matches_wan_for_real_head_width():
    assert rope_axis_pairs(128) == (22, 21, 21)  # Wan 2.1: 44 / 42 / 42 channels
    with pytest.raises(ValueError):
        rope_axis_pairs(4)


def test_rope_scores_depend_only_on_position_differences():
    """q.k after rotation at positions (p, r) equals the same at (p + s, r + s), per axis."""
    torch.manual_seed(0)
    d = 24
    grid = (6, 7, 8)
    cos, sin = rope_3d(grid, d)
    q, k = torch.randn(d), torch.randn(d)

    def idx(t, h, w):
        return (t * grid[1] + h) * grid[2] + w

    def score(pq, pk):
        rq = apply_rope(q[None], (cos[idx(*pq)][None], sin[idx(*pq)][None]))
        rk = apply_rope(k[None], (cos[idx(*pk)][None], sin[idx(*pk)][None]))
        return (rq * rk).sum()

    base = score((1, 2, 0), (3, 1, 4))
    torch.testing.assert_close(score((2, 4, 3), (4, 3, 7)), base)  # both shifted by (1, 2, 3)
    torch.testing.assert_close(score((3, 5, 1), (5, 4, 5)), base)
    assert not torch.allclose(score((1, 2, 0), (4, 1, 4)), base)  # a different offset differs
    # Rotation preserves norms.
    torch.testing.assert_close(apply_rope(q[None], (cos[:1], sin[:1])).norm(), q.norm())


def test_rope_works_for_unseen_grid_sizes_and_is_cached():
    small, large = rope_3d((2, 3, 4), 16), rope_3d((9, 11, 13), 16)
    assert small[0].shape == (24, 8) and large[0].shape == (9 * 11 * 13, 8)
    # Position (t, h, w) has the same rotation in any grid that contains it.
    cs = small[0].view(2, 3, 4, 8)
    cl = large[0].view(9, 11, 13, 8)
    torch.testing.assert_close(cl[:2, :3, :4], cs)
    assert rope_3d((2, 3, 4), 16)[0] is small[0]


def test_rope_tables_built_under_inference_mode_are_usable_for_training():
    with torch.inference_mode():
        rope_3d((2, 2, 2), 10)
    q = torch.randn(1, 1, 8, 10, requires_grad=True)
    apply_rope(q, rope_3d((2, 2, 2), 10)).sum().backward()
    assert q.grad is not None


# ---------------------------------------------------------------- embeddings, norms


def test_timestep_embedding_matches_diffusers_timesteps():
    from diffusers.models.embeddings import Timesteps

    t = torch.tensor([0.0, 1.5, 250.0, 999.0])
    ref = Timesteps(num_channels=64, flip_sin_to_cos=True, downscale_freq_shift=0)(t)
    ours = timestep_embedding(t, 64)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref)
    # Any leading shape; odd widths are zero-padded.
    assert timestep_embedding(torch.rand(2, 3) * 1000, 7).shape == (2, 3, 7)
    assert torch.equal(timestep_embedding(t, 7)[:, -1], torch.zeros(4))


def test_timestep_embedder_shapes_and_names():
    emb = TimestepEmbedder(32, freq_dim=16)
    assert emb(torch.rand(2, 5) * 1000).shape == (2, 5, 32)
    assert {"linear_1.weight", "linear_2.weight"} <= set(emb.state_dict())


def test_norms_compute_in_float32_and_match_references():
    x = torch.randn(2, 5, 16) * 30 + 7
    ln = FP32LayerNorm(16, 1e-6, elementwise_affine=False)
    torch.testing.assert_close(ln(x), torch.nn.functional.layer_norm(x, (16,), eps=1e-6))
    out = ln(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ln(x.bfloat16().float()), atol=0.02, rtol=0.02)
    rms, ref = RMSNorm(16), torch.nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        rms.weight.uniform_(0.5, 2.0)
        ref.weight.copy_(rms.weight)
    torch.testing.assert_close(rms(x), ref(x))
    shift, scale = torch.randn(16), torch.randn(16)
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + scale) + shift)
