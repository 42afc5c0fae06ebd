"""Parameterization conversions, the Denoiser wrapper, its loss, and Denoiser + sampler
against diffusers with a network that only sees (x, t)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kinema.diffusion import samplers as S
from kinema.diffusion.denoiser import (
    PREDICTIONS,
    Denoiser,
    min_snr_weight,
    prediction_target,
    prediction_to_x0,
    x0_to_prediction,
)
from kinema.diffusion.schedules import FLOW, VP, FlowSchedule, VPSchedule, expand_sigma
from kinema.errors import KinemaError

torch.set_num_threads(1)
MU, SD = 0.5, 0.3


def data(sigma_shape=(2,)):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 3, 4, 5, 5, generator=g, dtype=torch.float64)  # (B, C, T, H, W)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    sigma = 0.05 + 0.9 * torch.rand(sigma_shape, generator=g, dtype=torch.float64)
    return x0, noise, sigma


# ---------------------------------------------------------------- conversions


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("path", [VP, FLOW], ids=["vp", "flow"])
@pytest.mark.parametrize("sigma_shape", [(2,), (2, 4)], ids=["per_sample", "per_frame"])
def test_conversions_are_inverse(kind, path, sigma_shape):
    x0, noise, sigma = data(sigma_shape)
    x = path.add_noise(x0, noise, sigma)
    target = prediction_target(path, kind, x0, noise, sigma)
    torch.testing.assert_close(prediction_to_x0(path, kind, target, x, sigma), x0)
    torch.testing.assert_close(x0_to_prediction(path, kind, x0, x, sigma), target)
    other = torch.randn_like(x)  # any prediction round-trips through x0
    back = x0_to_prediction(path, kind, prediction_to_x0(path, kind, other, x, sigma), x, sigma)
    torch.testing.assert_close(back, other)


def test_known_forms():
    x0, noise, sigma = data()
    s = expand_sigma(sigma, x0)
    # v on VP is Salimans & Ho's alpha eps - sigma x0; flow on the flow path is eps - x0
    torch.testing.assert_close(prediction_target(VP, "v", x0, noise, sigma), VP.alpha(s) * noise - s * x0)
    torch.testing.assert_close(prediction_target(FLOW, "flow", x0, noise, sigma), noise - x0)
    # flow velocity on VP is dx/dsigma along the path
    h = 1e-6
    dx = (VP.add_noise(x0, noise, sigma + h) - VP.add_noise(x0, noise, sigma - h)) / (2 * h)
    torch.testing.assert_close(prediction_target(VP, "flow", x0, noise, sigma), dx, rtol=1e-5, atol=1e-5)


def test_v_matches_diffusers_get_velocity():
    diffusers = pytest.importorskip("diffusers")
    x0, noise, _ = data()
    t = torch.tensor([17, 901])
    sched = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    ref = sched.get_velocity(x0, noise, t)
    sigma = VPSchedule("squaredcos_cap_v2").sigma_at(t.double())
    # (diffusers takes sqrt(1 - alpha_bar) of a float32 alpha_bar: about 1e-6 off at small t)
    torch.testing.assert_close(prediction_target(VP, "v", x0, noise, sigma), ref, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- Denoiser


class OracleNet(nn.Module):
    """Outputs the exact `kind` target for known (x0, noise), plus `error` in x0; records t."""

    def __init__(self, path, kind, x0, noise, sigma, x0_error=None):
        super().__init__()
        self.args = path, kind, x0, noise, sigma
        self.x0_error = 0 if x0_error is None else x0_error
        self.seen_t = None

    def forward(self, x, t, **cond):
        path, kind, x0, noise, sigma = self.args
        self.seen_t, self.cond = t, cond
        return x0_to_prediction(path, kind, x0 + self.x0_error, x, sigma)


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("sigma_shape", [(2,), (2, 4)], ids=["per_sample", "per_frame"])
def test_denoiser_returns_x0_and_tells_the_net_its_timestep(kind, sigma_shape):
    schedule = VPSchedule()
    x0, noise, _ = data(sigma_shape)
    sigma = schedule.sigma_at(torch.randint(0, 1000, sigma_shape, generator=torch.Generator().manual_seed(1)).double())
    net = OracleNet(VP, kind, x0, noise, sigma)
    d = Denoiser(net, schedule, kind)
    x = VP.add_noise(x0, noise, sigma)
    torch.testing.assert_close(d(x, sigma, context="c"), x0)
    assert net.seen_t.dtype == torch.float32 and net.seen_t.shape == sigma_shape
    assert torch.equal(net.seen_t.double(), schedule.timestep(sigma)) and net.cond == {"context": "c"}
    assert d.path is VP


def test_eps_prediction_refuses_zero_snr():
    x = torch.zeros(2, 3)
    for schedule in (VPSchedule(rescale_zero_terminal_snr=True), FlowSchedule()):
        with pytest.raises(KinemaError, match="zero SNR"):
            Denoiser(nn.Identity(), schedule, "eps")(x, torch.ones(2, dtype=torch.float64))
    # v prediction is fine at sigma = 1: x0 = -v there
    v_model = Denoiser(lambda x, t: torch.full_like(x, 2.0), VPSchedule(rescale_zero_terminal_snr=True), "v")
    assert torch.equal(v_model(x, 1.0), torch.full_like(x, -2.0))
    with pytest.raises(KinemaError, match="prediction"):
        Denoiser(nn.Identity(), FlowSchedule(), "score")


# ---------------------------------------------------------------- loss


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("path", [VP, FLOW], ids=["vp", "flow"])
def test_loss_is_zero_for_the_perfect_prediction(kind, path):
    schedule = VPSchedule() if path is VP else FlowSchedule(shift=3.0)
    x0, noise, sigma = data((2, 4))
    d = Denoiser(OracleNet(path, kind, x0, noise, sigma), schedule, kind)
    loss = d.loss(x0, noise, sigma)
    assert loss.shape == (2,)
    assert loss.abs().max() < 1e-20
    d.net.x0_error = 0.1
    assert (d.loss(x0, noise, sigma) > 0).all()


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("path", [VP, FLOW], ids=["vp", "flow"])
def test_a_teacher_replaces_the_data_in_the_target_where_sigma_is_above_zero(kind, path):
    """Distillation: the student that outputs the teacher's x0 has zero loss, the one that
    outputs the data's x0 is penalised by the gap; at sigma = 0 (a known frame) the data's
    target stays, so no 0/0 reaches the loss."""
    schedule = VPSchedule() if path is VP else FlowSchedule(shift=3.0)
    x0, noise, sigma = data((2, 4))
    gap = 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    teacher_calls = []

    def teacher(x, s):
        teacher_calls.append((x, s))
        return x0 + gap

    learned = Denoiser(OracleNet(path, kind, x0, noise, sigma, x0_error=gap), schedule, kind)
    assert learned.loss(x0, noise, sigma, teacher=teacher).abs().max() < 1e-20
    x, s = teacher_calls[0]
    torch.testing.assert_close(x, path.add_noise(x0, noise, sigma))  # the teacher sees the student's input
    assert torch.equal(s, sigma)
    data_fit = Denoiser(OracleNet(path, kind, x0, noise, sigma), schedule, kind)
    plain = data_fit.loss(x0, noise, sigma)
    assert plain.abs().max() < 1e-20 and (data_fit.loss(x0, noise, sigma, teacher=teacher) > 1e-6).all()
    if kind != "eps" and path is FLOW:  # eps is singular at sigma 0 on no path; frame 0 known here
        known = sigma.clone()
        known[:, 0] = 0.0
        mask = torch.ones(2, 1, 4, 1, 1)
        mask[:, :, 0] = 0
        oracle = OracleNet(path, kind, x0, noise, known, x0_error=gap)  # 0/0 at sigma 0: a net is finite there
        finite = lambda x, t: torch.where(mask > 0, oracle(x, t), prediction_target(path, kind, x0, noise, known))  # noqa: E731
        loss = Denoiser(finite, schedule, kind).loss(x0, noise, known, teacher=teacher, loss_weight=mask)
        assert torch.isfinite(loss).all() and loss.abs().max() < 1e-20


@pytest.mark.parametrize("path", [VP, FLOW], ids=["vp", "flow"])
def test_min_snr_weighting_is_the_same_x0_weighting_for_every_parameterization(path):
    """With min-SNR-gamma, every parameterization's loss is min(SNR, gamma) * x0 MSE."""
    schedule = VPSchedule() if path is VP else FlowSchedule()
    x0, noise, sigma = data()
    delta = 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    alpha = path.alpha(sigma)
    snr = alpha**2 / sigma**2
    expected = torch.minimum(snr, torch.tensor(5.0)) * (delta**2).flatten(1).mean(1)
    for kind in PREDICTIONS:
        d = Denoiser(OracleNet(path, kind, x0, noise, sigma, x0_error=delta), schedule, kind)
        torch.testing.assert_close(d.loss(x0, noise, sigma, min_snr_gamma=5.0).double(), expected, rtol=1e-5, atol=0)


def test_min_snr_weights_match_hang_et_al_on_vp():
    sigma = torch.tensor([0.05, 0.3, 0.7, 0.99], dtype=torch.float64)
    snr = VP.alpha(sigma) ** 2 / sigma**2
    clipped = torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64))
    torch.testing.assert_close(min_snr_weight(VP, "eps", sigma, 5.0), clipped / snr)
    torch.testing.assert_close(min_snr_weight(VP, "v", sigma, 5.0), clipped / (snr + 1))
    torch.testing.assert_close(min_snr_weight(VP, "x0", sigma, 5.0), clipped)


def test_loss_weight_masks_elements_and_per_frame_sigma_applies_per_frame():
    x0, noise, sigma = data((2, 4))
    zero_net = lambda x, t: torch.zeros_like(x)  # noqa: E731
    d = Denoiser(zero_net, FlowSchedule(), "flow")
    mask = torch.zeros(2, 1, 4, 1, 1)
    mask[:, :, 1] = 1  # only frame 1 counts
    loss = d.loss(x0, noise, sigma, loss_weight=mask)
    target = noise - x0  # the flow target, whatever sigma
    torch.testing.assert_close(loss.double(), (target[:, :, 1] ** 2).flatten(1).mean(1))
    # per-frame sigma: the x0 network's loss on frame k depends on sigma[:, k] alone
    d_x0 = Denoiser(lambda x, t: x, FlowSchedule(), "x0")  # predicts x0_hat = x
    full = d_x0.loss(x0, noise, sigma, loss_weight=mask)
    alone = d_x0.loss(x0[:, :, 1:2], noise[:, :, 1:2], sigma[:, 1:2])
    torch.testing.assert_close(full, alone)


# ---------------------------------------------------------------- Denoiser + sampler vs diffusers


class DiffusersTableNet(nn.Module):
    """A network that knows only (x, t): Gaussian-data eps or v at integer DDPM timestep t,
    from diffusers' own alphas_cumprod table."""

    def __init__(self, alphas_cumprod, kind):
        super().__init__()
        self.alphas_cumprod, self.kind = alphas_cumprod.double(), kind

    def forward(self, x, t):
        assert torch.equal(t, t.round()), "the sampler grid should map to integer timesteps"
        abar = self.alphas_cumprod[t.long()].view(-1, *[1] * (x.ndim - 1))
        a, s = abar.sqrt(), (1 - abar).sqrt()
        x0 = MU + a * SD**2 / (a * a * SD**2 + s * s) * (x - a * MU)
        eps = (x - a * x0) / s
        return eps if self.kind == "eps" else a * eps - s * x0


@pytest.mark.parametrize("kind, ztsnr", [("eps", False), ("v", True)])
def test_denoiser_with_ddim_matches_diffusers_end_to_end(kind, ztsnr):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(
        clip_sample=False, timestep_spacing="trailing", rescale_betas_zero_snr=ztsnr,
        prediction_type="epsilon" if kind == "eps" else "v_prediction",
    )
    net = DiffusersTableNet(sched.alphas_cumprod, kind)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sched.set_timesteps(10)
    ref, y = [], x.clone()
    for t in sched.timesteps:
        y = sched.step(net(y, t.expand(2).double()), t, y).prev_sample
        ref.append(y)
    ours = []
    d = Denoiser(net, VPSchedule(rescale_zero_terminal_snr=ztsnr), kind)
    S.sample_ddim(d, x, d.schedule.sigmas(10, "trailing"), callback=lambda e: ours.append(e["x"]))
    for a, b in zip(ours, ref):
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-5


def test_flow_denoiser_with_euler_matches_flow_match_euler():
    diffusers = pytest.importorskip("diffusers")

    class VelocityNet(nn.Module):  # Gaussian-data velocity at flow time t / 1000
        def forward(self, x, t):
            s = (t.double() / 1000).view(-1, *[1] * (x.ndim - 1))
            x0 = MU + (1 - s) * SD**2 / ((1 - s) ** 2 * SD**2 + s * s) * (x - (1 - s) * MU)
            return (x - (1 - s) * x0) / s - x0

    schedule = FlowSchedule(shift=3.0)
    sched = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    sched.set_timesteps(10, mu=torch.log(torch.tensor(3.0)).item())
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref, y = [], x.clone()
    for t in sched.timesteps:
        y = sched.step(VelocityNet()(y, t.expand(2)), t, y).prev_sample
        ref.append(y)
    ours = []
    d = Denoiser(VelocityNet(), schedule, "flow")
    S.sample_euler(d, x, schedule.sigmas(10), callback=lambda e: ours.append(e["x"]))
    for a, b in zip(ours, ref):
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-5
