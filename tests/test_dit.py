"""VideoDiT: shapes, conditioning semantics, agreement with diffusers' Wan transformer,
round-trips, gradients; and a slow overfit check."""

from __future__ import annotations

import pytest
import torch

from kinema.config import ConfigError
from kinema.errors import KinemaError
from kinema.models.dit import DIFFUSERS_RENAMES, PRESETS, DiTConfig, VideoDiT

torch.set_num_threads(1)

TINY = PRESETS["dit-tiny"]  # in 4, text 32, patch (1, 2, 2)


def make_net(config: DiTConfig = TINY, seed: int = 0, live_head: bool = True) -> VideoDiT:
    """A tiny DiT; `live_head` replaces the zero-initialized output layer by random values,
    as one optimizer step would, so outputs depend on the input."""
    torch.manual_seed(seed)
    net = VideoDiT(config)
    if live_head:
        with torch.no_grad():
            net.proj_out.weight.normal_(std=0.1)
            net.proj_out.bias.normal_(std=0.1)
    return net


def inputs(b=2, t=3, h=6, w=8, s=5, c=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, t, h, w, generator=g)
    ts = torch.rand(b, generator=g) * 1000
    ctx = torch.randn(b, s, 32, generator=g)
    return x, ts, ctx


# ---------------------------------------------------------------- shapes and init


@pytest.mark.parametrize("thw", [(1, 4, 4), (3, 6, 8), (5, 8, 8), (2, 5, 7), (4, 2, 10)])
def test_output_shape_for_any_frame_count_and_resolution(thw):
    net = make_net().eval()
    x, t, ctx = inputs(*((2,) + thw))
    with torch.no_grad():
        out = net(x, t, ctx)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_temporal_patch_pads_causally_and_crops():
    cfg = TINY.replace(patch_size=(2, 2, 2), out_channels=3)
    net = make_net(cfg).eval()
    for frames in (1, 2, 3, 5):
        x, t, ctx = inputs(t=frames)
        with torch.no_grad():
            out = net(x, t, ctx)
            per_frame = net(x, t[:, None].expand(2, frames), ctx)
        assert out.shape == (2, 3, frames, 6, 8)
        torch.testing.assert_close(per_frame, out)


def test_zero_initialized_head_predicts_exactly_zero():
    net = make_net(live_head=False)
    x, t, ctx = inputs()
    assert torch.equal(net(x, t, ctx), torch.zeros_like(x))


def test_presets_are_valid_configs_and_json_round_trip():
    for name, cfg in PRESETS.items():
        assert DiTConfig.from_json(cfg.to_json()) == cfg, name
    cfg = TINY.replace(cond_channels=2, out_channels=8, patch_size=(2, 1, 1), gradient_checkpointing=True)
    assert DiTConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="divisible"):
        DiTConfig(dim=100, heads=3)
    with pytest.raises(ConfigError, match="patch_size"):
        DiTConfig(patch_size=(1, 0, 2))
    with pytest.raises(ConfigError, match="unknown"):
        DiTConfig.from_dict({"kind": "dit", "width": 3})


# ---------------------------------------------------------------- agreement with diffusers


def diffusers_twin(cfg: DiTConfig):
    """diffusers' WanTransformer3DModel with cfg's geometry and random weights, and a kinema
    VideoDiT loaded from its state dict through DIFFUSERS_RENAMES."""
    from diffusers import WanTransformer3DModel

    ref = WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.heads, attention_head_dim=cfg.dim // cfg.heads,
        in_channels=cfg.in_channels, out_channels=cfg.output_channels, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.depth, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=cfg.eps,
    ).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    state = {}
    for key, value in ref.state_dict().items():
        key = "." + key
        for old, new in DIFFUSERS_RENAMES:
            key = key.replace(old, new)
        state[key[1:]] = value
    net = VideoDiT(cfg).eval()
    net.load_state_dict(state, strict=True)
    return ref, net


def test_matches_diffusers_wan_transformer_with_renamed_weights():
    ref, net = diffusers_twin(TINY)
    x, t, ctx = inputs()
    with torch.no_grad():
        expected = ref(x, t, ctx, return_dict=False)[0]
        torch.testing.assert_close(net(x, t, ctx), expected, atol=1e-4, rtol=1e-4)
        # Per-frame t equals diffusers' per-token timesteps with each frame's t repeated.
        tf = torch.tensor([[10.0, 500.0, 900.0], [0.0, 0.0, 1000.0]])
        tokens_per_frame = (6 // 2) * (8 // 2)
        expected = ref(x, tf.repeat_interleave(tokens_per_frame, dim=1), ctx, return_dict=False)[0]
        torch.testing.assert_close(net(x, tf, ctx), expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- conditioning semantics


def test_per_frame_timesteps_condition_each_frame():
    net = make_net().eval()
    x, t, ctx = inputs(t=4)
    tf = torch.full((2, 4), 400.0)
    with torch.no_grad():
        base = net(x, tf, ctx)
        torch.testing.assert_close(net(x, torch.full((2,), 400.0), ctx), base)
        changed = tf.clone()
        changed[:, 2] = 900.0
        out = net(x, changed, ctx)
    assert (out[:, :, 2] - base[:, :, 2]).abs().max() > 1e-3
    with pytest.raises(KinemaError, match="timestep"):
        net(x, torch.zeros(2, 3), ctx)


def test_changing_one_frame_changes_predictions_on_other_frames():
    net = make_net().eval()
    x, t, ctx = inputs(t=4)
    x2 = x.clone()
    x2[:, :, 0] += 1.0
    with torch.no_grad():
        a, b = net(x, t, ctx), net(x2, t, ctx)
    for frame in (1, 2, 3):
        assert (a[:, :, frame] - b[:, :, frame]).abs().max() > 1e-4


def test_text_padding_under_mask_is_ignored_and_none_means_no_text():
    net = make_net().eval()
    x, t, ctx = inputs(s=7)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 4:] = False
    mask[1, 2:] = False
    garbage = ctx.clone()
    garbage[~mask] = 100 * torch.randn(int((~mask).sum()), 32)
    with torch.no_grad():
        out = net(x, t, ctx, mask)
        torch.testing.assert_close(net(x, t, garbage, mask), out)
        torch.testing.assert_close(net(x[:1], t[:1], ctx[:1, :4]), out[:1])  # = unpadded prompt
        assert (net(x, t, ctx) - out).abs().max() > 1e-4  # the mask does matter
        # No text is the same as text that is entirely masked.
        no_text = net(x, t)
        torch.testing.assert_close(net(x, t, garbage, torch.zeros(2, 7, dtype=torch.bool)), no_text)
        assert (no_text - out).abs().max() > 1e-4
    with pytest.raises(KinemaError, match="context"):
        net(x, t, torch.randn(2, 5, 31))
    with pytest.raises(KinemaError, match="context_mask"):
        net(x, t, ctx, torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(KinemaError, match="context_mask"):
        net(x, t, None, mask)


def test_cond_channels_are_concatenated_and_checked():
    net = make_net(TINY.replace(cond_channels=2)).eval()
    x, t, ctx = inputs()
    cond = torch.randn(2, 2, 3, 6, 8)
    with torch.no_grad():
        out = net(x, t, ctx, cond=cond)
        assert out.shape == x.shape
        assert (net(x, t, ctx, cond=cond + 1) - out).abs().max() > 1e-4
    with pytest.raises(KinemaError, match=r"cond has shape \(2, 3, 3, 6, 8\); expected \(2, 2, 3, 6, 8\)"):
        net(x, t, ctx, cond=torch.randn(2, 3, 3, 6, 8))
    with pytest.raises(KinemaError, match="cond has shape None"):
        net(x, t, ctx)
    with pytest.raises(KinemaError, match="takes no cond"):
        make_net()(x, t, ctx, cond=cond)
    with pytest.raises(KinemaError, match="expected \\(B, 4"):
        net(torch.randn(2, 5, 3, 6, 8), t, ctx, cond=cond)


# ---------------------------------------------------------------- training behaviour


def test_every_parameter_receives_gradient():
    net = make_net()
    x, t, ctx = inputs()
    net(x, t, ctx).pow(2).mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_gradient_checkpointing_gives_the_same_gradients():
    plain = make_net()
    ckpt = VideoDiT(TINY.replace(gradient_checkpointing=True))
    ckpt.load_state_dict(plain.state_dict())
    x, t, ctx = inputs()
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    for net in (plain, ckpt):
        net.train()
        net(x, t, ctx, mask).pow(2).mean().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    net = make_net(TINY.replace(cond_channels=1)).eval()
    path = net.save(tmp_path / "dit")
    loaded = VideoDiT.load(path)
    assert loaded.config == net.config and not loaded.training
    x, t, ctx = inputs()
    cond = torch.randn(2, 1, 3, 6, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x, t, ctx, cond=cond), net(x, t, ctx, cond=cond))


def test_forward_runs_under_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    net = make_net().eval()
    x, t, ctx = inputs()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x, t, ctx)
    assert counter.get_total_flops() > 0


def test_dit_s_parameter_count_is_in_range():
    with torch.device("meta"):
        n = sum(p.numel() for p in VideoDiT(PRESETS["dit-s"]).parameters())
    assert 10e6 < n < 30e6

