"""Classifier-free guidance and conditioning binding as denoiser wrappers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kinema.diffusion import samplers as S
from kinema.diffusion.denoiser import PREDICTIONS, Denoiser, prediction_to_x0
from kinema.diffusion.guidance import bind, cfg
from kinema.diffusion.schedules import FLOW, VP, FlowSchedule, VPSchedule, expand_sigma

torch.set_num_threads(1)


class CondNet(nn.Module):
    """A small conditional network net(x, t, context, context_mask) that records its calls."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x, t, context, context_mask=None):
        self.batches.append(x.shape[0])
        c = context.mean(dim=(1, 2)) if context_mask is None else (context * context_mask[..., None]).mean(dim=(1, 2))
        t_term = expand_sigma(t, x) / 1000  # t is (B,) or per-frame (B, T)
        return torch.tanh(x * (1 + c.view(-1, *[1] * (x.ndim - 1)))) + t_term


def setup(prediction="eps", schedule=None):
    g = torch.Generator().manual_seed(0)
    net = CondNet()
    d = Denoiser(net, schedule or VPSchedule(), prediction)
    x = torch.randn(2, 3, 4, 4, 4, generator=g, dtype=torch.float64)  # (B, C, T, H, W)
    cond = {"context": torch.randn(2, 5, 8, generator=g, dtype=torch.float64), "context_mask": None}
    uncond = {"context": torch.zeros(1, 5, 8, dtype=torch.float64), "context_mask": None}  # batch 1, expanded
    sigma = torch.tensor([0.3, 0.8], dtype=torch.float64)
    return net, d, x, cond, uncond, sigma


def test_scale_one_is_cond_and_scale_zero_is_uncond_in_one_batched_forward():
    net, d, x, cond, uncond, sigma = setup()
    x0_c = d(x, sigma, **cond)
    x0_u = d(x, sigma, context=uncond["context"].expand(2, -1, -1))
    net.batches.clear()
    torch.testing.assert_close(cfg(d, 1.0, cond, uncond)(x, sigma), x0_c)
    assert net.batches == [4]  # one forward over the doubled batch
    torch.testing.assert_close(cfg(d, 0.0, cond, uncond)(x, sigma), x0_u)
    torch.testing.assert_close(cfg(d, 3.0, cond, uncond)(x, sigma), x0_u + 3.0 * (x0_c - x0_u))
    # a per-sample scale
    mixed = cfg(d, torch.tensor([1.0, 0.0], dtype=torch.float64), cond, uncond)(x, sigma)
    torch.testing.assert_close(mixed, torch.stack([x0_c[0], x0_u[1]]))


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_guiding_x0_equals_guiding_the_network_output(prediction):
    """At fixed (x, sigma) every parameterization is affine in x0, so guidance commutes."""
    net, d, x, cond, uncond, sigma = setup(prediction, FlowSchedule() if prediction == "flow" else VPSchedule())
    t = d.schedule.timestep(sigma).float()
    out_c = net(x, t, **cond)
    out_u = net(x, t, context=uncond["context"].expand(2, -1, -1))
    guided_output = out_u + 4.0 * (out_c - out_u)
    expected = prediction_to_x0(d.path, prediction, guided_output, x, sigma)
    torch.testing.assert_close(cfg(d, 4.0, cond, uncond)(x, sigma), expected)


def test_guidance_rescale_matches_lin_et_al_on_v():
    net, d, x, cond, uncond, sigma = setup("v")
    t = d.schedule.timestep(sigma).float()
    v_c = net(x, t, **cond)
    v_u = net(x, t, context=uncond["context"].expand(2, -1, -1))
    v_cfg = v_u + 5.0 * (v_c - v_u)
    # diffusers' rescale_noise_cfg (Lin et al. 2024, Sec. 3.4) on the v outputs
    dims = list(range(1, x.ndim))
    rescaled = v_cfg * (v_c.std(dim=dims, keepdim=True) / v_cfg.std(dim=dims, keepdim=True))
    v_ref = 0.7 * rescaled + 0.3 * v_cfg
    expected = prediction_to_x0(VP, "v", v_ref, x, sigma)
    torch.testing.assert_close(cfg(d, 5.0, cond, uncond, rescale=0.7)(x, sigma), expected)
    plain = prediction_to_x0(VP, "v", v_cfg, x, sigma)
    torch.testing.assert_close(cfg(d, 5.0, cond, uncond, rescale=0.0)(x, sigma), plain)


def test_per_frame_sigma_passes_through():
    net, d, x, cond, uncond, _ = setup("flow", FlowSchedule())
    sigma = torch.rand(2, 4, dtype=torch.float64) * 0.9 + 0.05  # (B, T)
    out = cfg(d, 2.0, cond, uncond)(x, sigma)
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(cfg(d, 1.0, cond, uncond)(x, sigma), d(x, sigma, **cond))


def test_bind_and_composition_with_a_sampler():
    net, d, x, cond, uncond, sigma = setup("flow", FlowSchedule())
    bound = bind(d, **cond)
    assert bound.path is FLOW and cfg(d, 2.0, cond, uncond).path is FLOW
    torch.testing.assert_close(bound(x, sigma), d(x, sigma, **cond))
    sigmas = FlowSchedule().sigmas(4)
    net.batches.clear()
    guided = S.sample_euler(cfg(d, 1.0, cond, uncond), x, sigmas)
    assert net.batches == [4] * 4
    torch.testing.assert_close(guided, S.sample_euler(bound, x, sigmas))


def test_cond_mismatches_are_reported():
    _, d, x, cond, uncond, sigma = setup()
    with pytest.raises(ValueError, match="same keys"):
        cfg(d, 2.0, cond, {"context": uncond["context"]})(x, sigma)
    with pytest.raises(ValueError, match="pad both"):
        cfg(d, 2.0, cond, {"context": torch.zeros(2, 6, 8, dtype=torch.float64), "context_mask": None})(x, sigma)
    with pytest.raises(ValueError, match="both None"):
        cfg(d, 2.0, cond, {"context": uncond["context"], "context_mask": torch.ones(2, 5)})(x, sigma)


def test_guidance_interval_guides_inside_and_runs_the_conditional_alone_outside():
    """Kynkaanniemi et al. 2024: inside [lo, hi] the usual guided output; outside, the
    conditional prediction from a single (not doubled) forward."""
    net, d, x, cond, uncond, sigma = setup("flow", FlowSchedule())  # sigma = (0.3, 0.8)
    full = cfg(d, 3.0, cond, uncond)(x, sigma)
    x0_c = d(x, sigma, **cond)
    net.batches.clear()
    torch.testing.assert_close(cfg(d, 3.0, cond, uncond, interval=(0.2, 0.9))(x, sigma), full)
    assert net.batches == [4]
    net.batches.clear()
    torch.testing.assert_close(cfg(d, 3.0, cond, uncond, interval=(0.85, 1.0))(x, sigma), x0_c)
    assert net.batches == [2]  # every sample outside: one forward over the batch alone
    # mixed: sample 0 (sigma 0.3) outside, sample 1 (sigma 0.8) inside
    mixed = cfg(d, 3.0, cond, uncond, interval=(0.5, 1.0))(x, sigma)
    torch.testing.assert_close(mixed, torch.stack([x0_c[0], full[1]]))
    # a per-sample scale against per-frame sigmas: frames outside keep the conditional output
    frames = torch.tensor([[0.3, 0.3, 0.8, 0.8], [0.8, 0.3, 0.8, 0.3]], dtype=torch.float64)  # (B, T)
    scale = torch.tensor([3.0, 2.0], dtype=torch.float64)
    out = cfg(d, scale, cond, uncond, interval=(0.5, 1.0))(x, frames)
    guided = cfg(d, scale, cond, uncond)(x, frames)
    cond_only = d(x, frames, **cond)
    inside = (frames >= 0.5)[:, None, :, None, None].expand_as(x)
    torch.testing.assert_close(out, torch.where(inside, guided, cond_only))
    with pytest.raises(ValueError, match="0 <= lo <= hi"):
        cfg(d, 3.0, cond, uncond, interval=(0.9, 0.1))
