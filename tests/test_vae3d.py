"""The causal 3D VAE: geometry, causality, chunked == whole, tiling, latent stats, loss, I/O.

Everything runs the tiny preset (4x8x8 geometry, ~0.2 M parameters) on small clips, and one
test checks the computation against diffusers' AutoencoderKLWan with shared weights.
"""

from __future__ import annotations

import pytest
import torch

from kinema.checkpoint import load_state_strict
from kinema.config import ConfigError
from kinema.errors import KinemaError
from kinema.models.vae3d import (
    VAE3D,
    AttentionBlock,
    ResidualBlock,
    VAE3DConfig,
    CausalConv3d,
    ClipShapeError,
    blend_ramp,
    blend_tiles,
    check_num_frames,
    measure_latent_stats,
    pad_frames,
    preset,
    tile_starts,
    vae_loss,
)

torch.set_num_threads(1)
TINY = preset("vae-tiny")
LATENT = TINY.latent_channels


def clip(t: int, h: int = 16, w: int = 16, b: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


def latents(t: int, h: int = 2, w: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, LATENT, t, h, w, generator=torch.Generator().manual_seed(seed))


def randomized(model: VAE3D, seed: int = 0) -> VAE3D:
    """Random weights in every convolution, the zero-initialized branch ends included, so
    that structural tests (causality, chunking, gradients) exercise every layer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d, CausalConv3d)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1, generator=g)
    return model


@pytest.fixture(scope="module")
def vae() -> VAE3D:
    return randomized(VAE3D(TINY)).eval()


# ----------------------------------------------------------------------------- geometry


def test_config_geometry():
    assert (TINY.spatial_factor, TINY.temporal_factor) == (8, 4)
    assert [TINY.latent_frames(t) for t in (1, 5, 9, 17)] == [1, 2, 3, 5]
    assert [TINY.num_frames(n) for n in (1, 2, 3, 5)] == [1, 5, 9, 17]
    assert [TINY.latent_index(k) for k in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    four = VAE3DConfig(base_channels=8, channel_mults=(1, 2, 2), temporal_downsample=(True, True))
    assert (four.spatial_factor, four.temporal_factor) == (4, 4)
    assert preset("wan2.1").spatial_factor == 8 and preset("vae-s").temporal_factor == 4


@pytest.mark.parametrize("t", [1, 5, 9, 17])
@pytest.mark.parametrize("size", [(16, 16), (16, 24)])
def test_shapes(vae, t, size):
    h, w = size
    with torch.no_grad():
        z = vae.encode(clip(t, h, w, b=2))
        assert z.shape == (2, LATENT, 1 + (t - 1) // 4, h // 8, w // 8)
        x = vae.decode(z)
    assert x.shape == (2, 3, t, h, w)
    assert x.abs().max() <= 1.0  # decode clamps to the pixel range


def test_spatial_factor_four_shapes():
    cfg = VAE3DConfig(latent_channels=4, base_channels=8, channel_mults=(1, 2, 2), temporal_downsample=(True, True))
    model = VAE3D(cfg).eval()
    z = model.encode(clip(9, 16, 16))
    assert z.shape == (1, 4, 3, 4, 4)
    assert model.decode(z).shape == (1, 3, 9, 16, 16)


def test_bad_lengths_and_sizes_are_clear_errors(vae):
    with pytest.raises(ClipShapeError, match=r"1 \+ 4k frames .*got 18: use 17 or 21 frames, or pad with pad_frames"):
        vae.encode(clip(18))
    with pytest.raises(ClipShapeError, match="got 4: use 1 or 5"):
        check_num_frames(4)
    with pytest.raises(ClipShapeError, match="not divisible by the VAE's spatial factor 8"):
        vae.encode(clip(5, 12, 16))
    _, cache = vae.encode_chunk(clip(1), None)
    with pytest.raises(ClipShapeError, match="multiple of 4 frames; got 3"):
        vae.encode_chunk(clip(3), cache)
    with pytest.raises(ClipShapeError, match=r"latents must be \(B, 4, t >= 1, h, w\); got \(1, 4, 0, 2, 2\)"):
        vae.decode(latents(0))
    assert issubclass(ClipShapeError, KinemaError)


def test_pad_frames_repeats_the_last_frame(vae):
    x = clip(18)
    padded = pad_frames(x)
    assert padded.shape[2] == 21
    assert torch.equal(padded[:, :, :18], x)
    assert torch.equal(padded[:, :, 18:], x[:, :, 17:18].expand(-1, -1, 3, -1, -1))
    assert pad_frames(clip(17)).shape[2] == 17
    assert vae.decode(vae.encode(padded))[:, :, :18].shape == x.shape  # the caller crops


# ----------------------------------------------------------------------------- causality


@pytest.mark.parametrize("k", [0, 1, 4, 5, 8])
def test_encode_is_causal(vae, k):
    x = clip(9)
    y = x.clone()
    y[:, :, k] = -y[:, :, k]
    with torch.no_grad():
        zx, zy = vae.encode(x), vae.encode(y)
    j = TINY.latent_index(k)
    assert torch.equal(zx[:, :, :j], zy[:, :, :j])
    assert not torch.allclose(zx[:, :, j], zy[:, :, j])


@pytest.mark.parametrize("j", [0, 1, 2])
def test_decode_is_causal(vae, j):
    z = latents(3)
    z2 = z.clone()
    z2[:, :, j] += 1.0
    with torch.no_grad():
        x, x2 = vae.decode(z, chunk_latents=None), vae.decode(z2, chunk_latents=None)
    first = 0 if j == 0 else TINY.num_frames(j)  # the first frame latent j decodes to
    assert torch.equal(x[:, :, :first], x2[:, :, :first])
    assert not torch.allclose(x[:, :, first], x2[:, :, first])


# ----------------------------------------------------------------------------- chunked == whole


def test_chunked_decode_equals_whole_decode(vae):
    z = latents(5)
    with torch.no_grad():
        whole = vae.decode(z, chunk_latents=None)
        for n in (1, 2, 3):
            pieces = list(vae.decode_chunks(z, chunk_latents=n))
            assert [p.shape[2] for p in pieces][0] == TINY.num_frames(min(n, 5))
            torch.testing.assert_close(torch.cat(pieces, dim=2), whole, rtol=0, atol=1e-5)
        # The same by hand, threading the explicit cache through decode_chunk.
        cache, frames = None, []
        for i in range(5):
            x, cache = vae.decode_chunk(z[:, :, i : i + 1], cache)
            frames.append(x)
    assert [f.shape[2] for f in frames] == [1, 4, 4, 4, 4]
    torch.testing.assert_close(torch.cat(frames, dim=2), whole, rtol=0, atol=1e-5)


def test_chunked_encode_equals_whole_encode(vae):
    x = clip(17)
    with torch.no_grad():
        mean, logvar = vae.posterior(x)
        for n in (1, 3):
            m, lv = vae.posterior(x, chunk_latents=n)
            torch.testing.assert_close(m, mean, rtol=0, atol=1e-5)
            torch.testing.assert_close(lv, logvar, rtol=0, atol=1e-5)
        cache, zs = None, []
        for start, stop in [(0, 1), (1, 9), (9, 13), (13, 17)]:  # uneven chunks of 4k frames
            z, cache = vae.encode_chunk(x[:, :, start:stop], cache)
            zs.append(z)
    assert [z.shape[2] for z in zs] == [1, 2, 1, 1]
    torch.testing.assert_close(torch.cat(zs, dim=2), vae.encode(x), rtol=0, atol=1e-5)


def test_image_is_the_first_latent_of_a_video(vae):
    x = clip(9)
    with torch.no_grad():
        image_latent = vae.encode(x[:, :, :1])
        assert image_latent.shape == (1, LATENT, 1, 2, 2)
        assert torch.equal(vae.encode(x, chunk_latents=1)[:, :, :1], image_latent)
        torch.testing.assert_close(vae.encode(x)[:, :, :1], image_latent, rtol=0, atol=1e-6)
        image = vae.decode(image_latent)
        assert image.shape == (1, 3, 1, 16, 16)
        assert torch.equal(vae.decode(vae.encode(x), chunk_latents=1)[:, :, :1], vae.decode(vae.encode(x)[:, :, :1]))


# ----------------------------------------------------------------------------- tiling


def test_tile_starts_cover_the_axis():
    assert tile_starts(4, 4, 1) == [0] and tile_starts(4, 6, 1) == [0]
    assert tile_starts(8, 4, 2) == [0, 2, 4]
    assert tile_starts(9, 4, 1) == [0, 3, 5]
    with pytest.raises(KinemaError, match="overlap"):
        tile_starts(8, 4, 4)


def test_blend_is_a_partition_of_unity():
    image = torch.randn(1, 3, 2, 40, 56)
    origins = [(y, x) for y in tile_starts(40, 16, 8) for x in tile_starts(56, 24, 8)]
    tiles = [image[..., y : y + 16, x : x + 24] for y, x in origins]
    torch.testing.assert_close(blend_tiles(tiles, origins, (40, 56), ramp=8), image)
    ramp = blend_ramp(8, 3, fade_in=True, fade_out=False)
    torch.testing.assert_close(ramp, torch.tensor([0.25, 0.5, 0.75, 1, 1, 1, 1, 1]))
    # Two tiles overlapping by exactly the ramp length: their weights sum to 1 there.
    left, right = blend_ramp(8, 3, False, True), blend_ramp(8, 3, True, False)
    torch.testing.assert_close(left[-3:] + right[:3], torch.ones(3))


def test_tiled_decode(vae):
    z = latents(3, 4, 6)
    with torch.no_grad():
        whole = vae.decode(z)
        assert torch.equal(vae.decode(z, tile=(4, 6)), whole)  # one tile covering everything
        assert torch.equal(vae.decode(z, tile=(8, 8)), whole)
        tiled = vae.decode(z, tile=(2, 4), overlap=1)
        tiled_whole_time = vae.decode(z, chunk_latents=None, tile=(2, 4), overlap=1)
    assert tiled.shape == whole.shape
    # Streaming stays exact per tile: time chunking does not change the tiled result.
    torch.testing.assert_close(tiled, tiled_whole_time, rtol=0, atol=1e-5)
    # Tiles see less context than the whole frame, so they differ, but only somewhat.
    assert 0 < (tiled - whole).abs().mean() < whole.abs().mean()


# ----------------------------------------------------------------------------- latent space


def test_latent_normalization(vae):
    mean = tuple(float(i) / 4 for i in range(LATENT))
    std = tuple(0.5 + i for i in range(LATENT))
    normed = vae.with_latent_stats(mean, std)
    assert normed.config.latent_mean == mean and not normed.training
    m = torch.tensor(mean).view(1, -1, 1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1, 1)
    x = clip(5)
    with torch.no_grad():
        torch.testing.assert_close(normed.encode(x), (vae.encode(x) - m) / s)
        z = latents(2)
        torch.testing.assert_close(normed.decode(z), vae.decode(z * s + m))
        # sample=True draws around the posterior mean with the posterior's spread.
        g = torch.Generator().manual_seed(1)
        draw = vae.encode(x, sample=True, generator=g)
        assert draw.shape == vae.encode(x).shape and not torch.equal(draw, vae.encode(x))


def test_measured_stats_give_unit_scale_latents(vae):
    clips = [clip(5, seed=i) for i in range(3)]
    mean, std = measure_latent_stats(vae, clips)
    assert len(mean) == len(std) == LATENT
    z = torch.cat([vae.with_latent_stats(mean, std).encode(c) for c in clips], dim=2)
    per_channel = z.transpose(0, 1).reshape(LATENT, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(LATENT), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1, unbiased=False), torch.ones(LATENT), atol=1e-4, rtol=0)


def test_save_load_round_trip(vae, tmp_path):
    model = vae.with_latent_stats([0.1] * LATENT, [2.0] * LATENT)
    model.save(tmp_path / "vae")
    loaded = VAE3D.load(tmp_path / "vae")
    assert loaded.config == model.config
    x, z = clip(5), latents(2)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), model.encode(x))
        assert torch.equal(loaded.decode(z), model.decode(z))


def test_config_round_trip_and_validation():
    cfg = TINY.replace(latent_mean=(0.0,) * LATENT, latent_std=(1.5,) * LATENT)
    assert VAE3DConfig.from_json(cfg.to_json()) == cfg
    assert VAE3DConfig.from_json(TINY.to_json()) == TINY
    with pytest.raises(ConfigError, match="one flag per downsampling level"):
        VAE3DConfig(channel_mults=(1, 2, 4, 4), temporal_downsample=(True, True))
    with pytest.raises(ConfigError, match="latent_std needs 4 values"):
        TINY.replace(latent_std=(1.0,))
    with pytest.raises(KinemaError, match="unknown VAE preset 'big'; choose one of vae-tiny"):
        preset("big")


# ----------------------------------------------------------------------------- loss


def test_vae_loss_terms():
    x = clip(5)
    mean, logvar = torch.randn(1, LATENT, 2, 2, 2), torch.randn(1, LATENT, 2, 2, 2)
    total, parts = vae_loss(x, x, mean, logvar, kl_weight=0.0)
    assert total.item() == 0.0 and parts["l1"] == 0 and parts["gradient"] == 0 and parts["kl"] > 0
    total, parts = vae_loss(x + 0.1 * clip(5, seed=1), x, torch.zeros_like(mean), torch.zeros_like(logvar))
    assert total > 0 and parts["l1"] > 0 and parts["gradient"] > 0 and parts["kl"] == 0
    # A constant offset costs L1 but no gradient (edge) term.
    _, parts = vae_loss(x + 0.25, x, mean, logvar)
    torch.testing.assert_close(parts["l1"], torch.tensor(0.25))
    torch.testing.assert_close(parts["l2"], torch.tensor(0.0625))
    assert parts["gradient"] < 1e-6
    total, parts = vae_loss(x + 0.25, x, mean, logvar, l1_weight=0.0, gradient_weight=0.0, kl_weight=0.0, l2_weight=2.0)
    torch.testing.assert_close(total, torch.tensor(0.125))
    total, parts = vae_loss(x, x, mean, logvar, kl_weight=0.5)
    torch.testing.assert_close(total, 0.5 * parts["kl"])


def test_loss_reaches_every_parameter():
    torch.manual_seed(0)
    model = randomized(VAE3D(TINY.replace(coarse_path=True))).train()
    loss, parts = model.loss(clip(5, b=2), kl_weight=1e-3, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert set(parts) == {"l1", "l2", "gradient", "kl", "chroma"}
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_fresh_residual_branches_start_at_zero():
    """At init every residual block and the attention return their input's shortcut."""
    torch.manual_seed(0)
    model = VAE3D(TINY)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    attentions = [m for m in model.modules() if isinstance(m, AttentionBlock)]
    assert blocks and attentions
    for block in blocks:
        h = torch.randn(1, block.conv1.weight.shape[1], 5, 4, 4)
        out, _ = block(h, None)
        torch.testing.assert_close(out, block.conv_shortcut(h))
        assert block.conv1.weight.abs().sum() > 0  # only the branch's last conv is zero
    for attention in attentions:
        h = torch.randn(1, attention.proj.weight.shape[1], 2, 4, 4)
        torch.testing.assert_close(attention(h)[0], h)


# ----------------------------------------------------------------------------- reference


@pytest.mark.slow  # importing diffusers takes ~10 s on the shared 2-core machine
def test_matches_diffusers_wan_vae():
    """Same weights as diffusers' AutoencoderKLWan (the Wan 2.1 VAE), same outputs."""
    wan = pytest.importorskip("diffusers.models.autoencoders.autoencoder_kl_wan")
    torch.manual_seed(0)
    ref = wan.AutoencoderKLWan(
        base_dim=8, z_dim=LATENT, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
        temperal_downsample=[False, True, True], latents_mean=[0.0] * LATENT, latents_std=[1.0] * LATENT,
    ).eval()
    model = VAE3D(TINY).eval()
    load_state_strict(model, ref.state_dict(), "diffusers AutoencoderKLWan")  # identical layout
    x, z = clip(9, 16, 24), latents(3, 2, 3)
    with torch.no_grad():
        dist = ref.encode(x).latent_dist
        mean, logvar = model.posterior(x)
        torch.testing.assert_close(mean, dist.mean, rtol=0, atol=1e-5)
        torch.testing.assert_close(logvar, dist.logvar, rtol=0, atol=1e-5)
        torch.testing.assert_close(model.decode(z), ref.decode(z).sample, rtol=0, atol=1e-5)


def test_coarse_path_streams_exactly_and_starts_silent():
    cfg = TINY.replace(coarse_path=True)
    torch.manual_seed(0)
    fresh = VAE3D(cfg).eval()
    plain = VAE3D(TINY).eval()
    plain.load_state_dict({k: v for k, v in fresh.state_dict().items() if not k.startswith("coarse.")})
    z = latents(3)
    torch.testing.assert_close(fresh.decode(z), plain.decode(z))  # the decoder half starts at zero
    model = randomized(VAE3D(cfg)).eval()
    with torch.no_grad():
        model.coarse.decode.weight.normal_(0, 0.5)
    x = clip(9)
    whole, _ = model.posterior(x)
    chunked, _ = model.posterior(x, chunk_latents=1)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    z = model.encode(x)
    torch.testing.assert_close(model.decode(z, chunk_latents=1), model.decode(z, chunk_latents=None), atol=1e-5, rtol=0)
    assert not torch.allclose(model.decode(z), plain.decode(z))


def test_block_mean_and_repeat_follow_the_causal_grouping():
    from kinema.models.vae3d import block_mean, block_repeat

    x = torch.arange(9.0).reshape(1, 1, 9, 1, 1).expand(1, 1, 9, 2, 2)
    m = block_mean(x, spatial=2, temporal=4, first=True)
    assert m.flatten().tolist() == [0.0, 2.5, 6.5]  # frame 0, frames 1-4, frames 5-8
    assert block_mean(x[:, :, 1:], 2, 4, first=False).flatten().tolist() == [2.5, 6.5]
    r = block_repeat(m, spatial=2, temporal=4, first=True)
    assert r.shape == (1, 1, 9, 2, 2) and r[0, 0, :, 0, 0].tolist() == [0.0] + [2.5] * 4 + [6.5] * 4


def test_chroma_term_ignores_luminance_errors():
    target = torch.zeros(1, 3, 1, 2, 2)
    m = lv = torch.zeros(1, 4, 1, 1, 1)
    _, grey = vae_loss(target + 0.5, target, m, lv)
    _, red = vae_loss(target + torch.tensor([0.5, -0.25, -0.25]).view(1, 3, 1, 1, 1), target, m, lv)
    assert float(grey["chroma"]) == 0.0 and float(red["chroma"]) == pytest.approx(0.125)
