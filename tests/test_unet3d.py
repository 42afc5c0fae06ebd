"""Tests for the 3D U-Net (kinema.models.unet3d): shapes, time and text conditioning, the
temporal path, gradients, checkpointing, persistence, and a small overfitting run."""

from __future__ import annotations

import pytest
import torch

from kinema.config import ConfigError
from kinema.models.unet3d import (
    PRESETS,
    RelativePositionBias,
    TemporalAttention,
    TemporalConv,
    UNet3D,
    UNet3DConfig,
    UNet3DInputError,
    unet3d_preset,
)

torch.set_num_threads(1)

TINY = PRESETS["unet3d-tiny"]  # in 4, widths (16, 32), attention at level 1, text_dim 32


def make_net(config: UNet3DConfig = TINY, seed: int = 0, perturb: bool = True) -> UNet3D:
    """A tiny net; `perturb` adds noise to every parameter so zero-initialized layers act."""
    torch.manual_seed(seed)
    net = UNet3D(config)
    if perturb:
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def inputs(batch=2, frames=3, size=8, channels=4, seed=1, text_len=5, text_dim=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, frames, size, size, generator=g)
    t = torch.rand(batch, generator=g) * 1000
    context = torch.randn(batch, text_len, text_dim, generator=g)
    return x, t, context


def temporal_parameters(net: UNet3D) -> list[torch.nn.Parameter]:
    return [p for m in net.modules() if isinstance(m, (TemporalConv, TemporalAttention)) for p in m.parameters()]


@pytest.mark.parametrize("frames,height,width", [(1, 8, 8), (2, 4, 6), (5, 8, 16), (3, 2, 2)])
def test_output_shape(frames, height, width):
    net = make_net()
    x = torch.randn(2, 4, frames, height, width)
    with torch.no_grad():
        out = net(x, torch.tensor([10.0, 900.0]), torch.randn(2, 3, 32))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_out_channels_and_fresh_net_predicts_zero():
    net = UNet3D(TINY.replace(out_channels=8)).eval()  # zero-initialized final conv
    x, t, ctx = inputs()
    with torch.no_grad():
        out = net(x, t, ctx)
    assert out.shape == (2, 8, 3, 8, 8)
    assert torch.count_nonzero(out) == 0


def test_per_frame_t_matches_shared_t_and_each_frame_follows_its_own_t():
    net = make_net()
    x, t, ctx = inputs(frames=4)
    with torch.no_grad():
        shared = net(x, t, ctx)
        per_frame = net(x, t[:, None].expand(2, 4).clone(), ctx)
        torch.testing.assert_close(per_frame, shared, rtol=1e-5, atol=1e-5)
        t2 = t[:, None].expand(2, 4).clone()
        t2[:, 2] += 300.0
        changed = net(x, t2, ctx)
    assert (changed[:, :, 2] - shared[:, :, 2]).abs().max() > 1e-3


def test_temporal_layers_carry_information_between_frames():
    net = make_net()
    x, t, ctx = inputs(frames=4)
    x2 = x.clone()
    x2[:, :, 0] += 1.0  # change frame 0 only
    with torch.no_grad():
        a, b = net(x, t, ctx), net(x2, t, ctx)
    assert (a[:, :, 3] - b[:, :, 3]).abs().max() > 1e-4  # frame 3 sees frame 0


def test_fresh_net_treats_frames_independently():
    """Temporal branches start at zero: at init a clip is processed as independent images."""
    torch.manual_seed(0)
    net = UNet3D(TINY).eval()
    with torch.no_grad():  # make the spatial path non-trivial, leave temporal branches at init
        net.conv_out.weight.normal_(0, 0.1)
    x, t, ctx = inputs(frames=3)
    with torch.no_grad():
        clip = net(x, t, ctx)
        frames = torch.cat([net(x[:, :, i : i + 1], t, ctx) for i in range(3)], dim=2)
    torch.testing.assert_close(clip, frames, rtol=1e-4, atol=1e-5)
    assert clip.abs().max() > 1e-3


def test_single_frame_output_does_not_depend_on_temporal_layers():
    """With T = 1 the temporal path is the identity: the net is exactly its spatial part."""
    net = make_net()
    x, t, ctx = inputs(frames=1)
    x2, _, _ = inputs(frames=2)
    with torch.no_grad():
        before, before2 = net(x, t, ctx), net(x2, t, ctx)
        for p in temporal_parameters(net):
            p.add_(torch.randn_like(p))
        after, after2 = net(x, t, ctx), net(x2, t, ctx)
    assert torch.equal(before, after)
    assert (before2 - after2).abs().max() > 1e-3  # with two frames they do matter


def test_every_parameter_gets_gradient():
    net = make_net().train()
    x, t, ctx = inputs(frames=3)
    net(x, t, ctx).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not missing


def test_gradient_checkpointing_gives_identical_gradients():
    plain = make_net().train()
    ckpt = UNet3D(TINY.replace(gradient_checkpointing=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    x, t, ctx = inputs()
    for net in (plain, ckpt):
        net(x, t, ctx).square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_text_padding_is_ignored_and_empty_mask_means_no_text():
    net = make_net()
    x, t, ctx = inputs(text_len=6)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    garbage = ctx.clone()
    garbage[~mask] = 1e4 * torch.randn(int((~mask).sum()), 32)
    with torch.no_grad():
        clean = net(x, t, ctx, mask)
        dirty = net(x, t, garbage, mask)
        torch.testing.assert_close(dirty, clean, rtol=0, atol=1e-6)
        # A sample whose mask is all False gets exactly the no-text prediction.
        no_text = net(x, t)
        mixed = net(x, t, ctx, torch.tensor([[False] * 6, [True] * 6]))
        full = net(x, t, ctx)
    torch.testing.assert_close(mixed[0], no_text[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(mixed[1], full[1], rtol=0, atol=1e-6)
    assert (full[0] - no_text[0]).abs().max() > 1e-3  # text does change the prediction


def test_cond_is_concatenated_and_checked():
    config = TINY.replace(cond_channels=2)
    net = make_net(config)
    x, t, ctx = inputs()
    cond = torch.randn(2, 2, 3, 8, 8)
    with torch.no_grad():
        out = net(x, t, ctx, cond=cond)
        assert out.shape == x.shape
        assert (net(x, t, ctx, cond=cond + 1) - out).abs().max() > 1e-3
    with pytest.raises(UNet3DInputError, match="needs cond of shape"):
        net(x, t, ctx)
    with pytest.raises(UNet3DInputError, match="cond must have shape"):
        net(x, t, ctx, cond=torch.randn(2, 3, 3, 8, 8))
    with pytest.raises(UNet3DInputError, match="takes no cond"):
        make_net()(x, t, ctx, cond=cond)


def test_input_errors_say_what_is_accepted():
    net = make_net()
    x, t, ctx = inputs()
    with pytest.raises(UNet3DInputError, match="multiples of 2"):
        net(torch.randn(2, 4, 3, 8, 7), t)
    with pytest.raises(UNet3DInputError, match="in_channels=4"):
        net(torch.randn(2, 3, 3, 8, 8), t)
    with pytest.raises(UNet3DInputError, match=r"\(2,\) or \(2, 3\)"):
        net(x, torch.zeros(2, 5))
    with pytest.raises(UNet3DInputError, match="text_dim=32"):
        net(x, t, torch.randn(2, 5, 16))
    with pytest.raises(UNet3DInputError, match="context_mask must be bool"):
        net(x, t, ctx, torch.ones(2, 5))
    with pytest.raises(UNet3DInputError, match="no text input"):
        make_net(TINY.replace(text_dim=None))(x, t, ctx)


def test_relative_position_bias_depends_only_on_frame_distance():
    rpb = RelativePositionBias(heads=3, max_distance=4)
    with torch.no_grad():
        rpb.table.normal_()
    big, small = rpb(9), rpb(5)
    assert big.shape == (1, 3, 9, 9)
    torch.testing.assert_close(big[..., 1:, 1:], big[..., :-1, :-1])  # b[i, j] = b[i + 1, j + 1]
    torch.testing.assert_close(small, big[..., 4:, 4:])  # a shifted window sees the same bias
    torch.testing.assert_close(big[0, :, 0, 8], rpb.table[8])  # distance 8 clipped to +4
    torch.testing.assert_close(big[0, :, 8, 0], rpb.table[0])  # distance -8 clipped to -4
    assert not torch.allclose(big[0, :, 0, 1], big[0, :, 1, 0])  # direction matters


def test_save_load_round_trip(tmp_path):
    net = make_net(TINY.replace(cond_channels=1))
    x, t, ctx = inputs()
    cond = torch.randn(2, 1, 3, 8, 8)
    net.save(tmp_path / "unet")
    loaded = UNet3D.load(tmp_path / "unet")
    assert loaded.config == net.config
    with torch.no_grad():
        assert torch.equal(loaded(x, t, ctx, cond=cond), net(x, t, ctx, cond=cond))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_json_round_trip(name):
    config = PRESETS[name]
    assert UNet3DConfig.from_json(config.to_json()) == config
    assert UNet3DConfig.from_json(config.replace(text_dim=None, out_channels=7).to_json()).text_dim is None


def test_config_errors():
    with pytest.raises(ConfigError, match="attention_levels"):
        TINY.replace(attention_levels=(2,))
    with pytest.raises(ConfigError, match="groups=5"):
        TINY.replace(groups=5)
    with pytest.raises(ConfigError, match="unknown key"):
        UNet3DConfig.from_dict({**TINY.to_dict(), "depth": 3})
    with pytest.raises(ConfigError, match="known: unet3d-tiny"):
        unet3d_preset("unet3d-xxl")
    assert unet3d_preset("unet3d-tiny", dropout=0.1).dropout == 0.1


def test_bf16_autocast_forward_is_finite():
    net = make_net()
    x, t, ctx = inputs()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, t, ctx)
    assert out.shape == x.shape and torch.isfinite(out.float()).all()


def moving_square_clip(frames: int = 8, size: int = 16) -> torch.Tensor:
    """(1, 3, T, H, W) in [-1, 1]: a red 5x5 square moving right on a gray background."""
    clip = torch.zeros(1, 3, frames, size, size)
    for f in range(frames):
        clip[0, :, f, 5:10, 1 + f : 6 + f] = torch.tensor([0.8, -0.7, -0.7])[:, None, None]
    return clip

