"""Paths, schedules (against diffusers' tables and grids) and training densities."""

from __future__ import annotations

import math

import pytest
import torch

from kinema.diffusion.density import sample_sigmas
from kinema.diffusion.schedules import (
    FLOW,
    VP,
    CosineSchedule,
    FlowSchedule,
    VPSchedule,
    expand_sigma,
    resolution_shift,
)
from kinema.errors import KinemaError

torch.set_num_threads(1)


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize("path", [VP, FLOW], ids=["vp", "flow"])
def test_paths(path):
    s = torch.linspace(0, 1, 101, dtype=torch.float64)
    a = path.alpha(s)
    if path is VP:
        torch.testing.assert_close(a * a + s * s, torch.ones_like(s))
    else:
        torch.testing.assert_close(a + s, torch.ones_like(s))
    inner = s[1:-1]  # d alpha / d sigma against a central difference
    fd = (path.alpha(inner + 1e-6) - path.alpha(inner - 1e-6)) / 2e-6
    torch.testing.assert_close(path.dalpha(inner), fd, rtol=1e-6, atol=1e-6)
    # In y = x / c, tau = sigma / c the path (x0, eps fixed) solves dy/dtau = (y - x0) / tau.
    x0, eps = torch.randn(2, 5, dtype=torch.float64)

    def y_tau(s):
        c = path.ode_scale(s)[:, None]
        return (path.alpha(s)[:, None] * x0 + s[:, None] * eps) / c, s[:, None] / c

    (y_plus, tau_plus), (y_minus, tau_minus), (y, tau) = y_tau(inner + 1e-6), y_tau(inner - 1e-6), y_tau(inner)
    torch.testing.assert_close((y_plus - y_minus) / (tau_plus - tau_minus), (y - x0) / tau, rtol=1e-5, atol=1e-5)


def test_expand_sigma_shapes():
    video = torch.zeros(2, 3, 4, 5, 6)  # (B, C, T, H, W)
    assert expand_sigma(torch.ones(2), video).shape == (2, 1, 1, 1, 1)
    per_frame = torch.arange(8.0).view(2, 4)
    e = expand_sigma(per_frame, video)
    assert e.shape == (2, 1, 4, 1, 1) and torch.equal((e + video)[1, 2, 3], torch.full((5, 6), 7.0))
    assert expand_sigma(torch.tensor(0.5), video).ndim == 0
    with pytest.raises(ValueError, match="per-frame"):
        expand_sigma(torch.ones(2, 3), video)


def test_add_noise_per_frame():
    x0, noise = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 4, 2, 2)
    sigma = torch.rand(2, 4, dtype=torch.float64)
    x = FLOW.add_noise(x0, noise, sigma)
    s = sigma[1, 2].item()
    torch.testing.assert_close(x[1, :, 2], (1 - s) * x0[1, :, 2] + s * noise[1, :, 2])


# ---------------------------------------------------------------- VP schedules against diffusers

VP_CASES = [
    dict(beta_schedule="linear"),
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    dict(beta_schedule="squaredcos_cap_v2"),
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, rescale_zero_terminal_snr=True),
]


@pytest.mark.parametrize("case", VP_CASES, ids=lambda c: c["beta_schedule"] + ("_ztsnr" if len(c) > 3 else ""))
def test_vp_tables_match_diffusers(case):
    diffusers = pytest.importorskip("diffusers")
    kw = dict(case)
    ztsnr = kw.pop("rescale_zero_terminal_snr", False)
    ref = diffusers.DDPMScheduler(**kw, rescale_betas_zero_snr=ztsnr).alphas_cumprod.double()
    schedule = VPSchedule(**case)
    alphas = VP.alpha(schedule.train_sigmas)
    torch.testing.assert_close(alphas, ref.sqrt(), rtol=0, atol=1e-6)  # cumprod in float64 here
    # diffusers' float32 cumprod loses 1 - alpha_bar near t = 0, so compare alpha_bar itself
    torch.testing.assert_close(1 - schedule.train_sigmas**2, ref, rtol=1e-4, atol=1e-7)
    if ztsnr:
        assert schedule.train_sigmas[-1] == 1.0 and alphas[-1] == 0.0


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("num_steps", [1, 7, 10, 50])
def test_vp_grids_are_diffusers_timesteps(spacing, num_steps):
    diffusers = pytest.importorskip("diffusers")
    offset = 1 if spacing == "leading" else 0
    sched = diffusers.DDPMScheduler(timestep_spacing=spacing, steps_offset=offset)
    sched.set_timesteps(num_steps)
    schedule = VPSchedule()
    sigmas = schedule.sigmas(num_steps, spacing, steps_offset=offset)
    assert sigmas.shape == (num_steps + 1,) and sigmas[-1] == 0 and sigmas.dtype == torch.float64
    assert torch.equal(schedule.timestep(sigmas[:-1]), sched.timesteps.double())


def test_vp_timestep_inverts_sigma_at():
    schedule = VPSchedule(rescale_zero_terminal_snr=True)
    t = torch.tensor([0.0, 0.25, 17.5, 500.0, 998.3, 999.0], dtype=torch.float64)
    sigma = schedule.sigma_at(t)
    torch.testing.assert_close(schedule.timestep(sigma), t, rtol=0, atol=1e-6)
    assert sigma[-1] == 1.0  # zero terminal SNR stays finite
    ints = torch.arange(1000)
    assert torch.equal(schedule.sigma_at(ints.double()), schedule.train_sigmas)
    assert torch.equal(schedule.timestep(schedule.train_sigmas), ints.double())
    # below the first level and above the last, clamped
    assert schedule.timestep(torch.tensor([0.0, 1.0])).tolist() == [0.0, 999.0]
    assert VPSchedule().timestep(torch.tensor([1.0])).item() == 999.0


def test_vp_errors():
    with pytest.raises(KinemaError, match="beta_schedule"):
        VPSchedule("sigmoid")
    with pytest.raises(KinemaError, match="spacing"):
        VPSchedule().sigmas(10, "karras")
    with pytest.raises(KinemaError, match="num_steps"):
        VPSchedule().sigmas(0)


def test_schedules_round_trip_through_json():
    vp = VPSchedule("squaredcos_cap_v2", rescale_zero_terminal_snr=True)
    for schedule in (vp, CosineSchedule(s=0.0), FlowSchedule(3.0)):
        again = type(schedule).from_json(schedule.to_json())
        assert again == schedule
        assert torch.equal(again.sigmas(5), schedule.sigmas(5))


# ---------------------------------------------------------------- continuous cosine


def test_cosine_schedule():
    schedule = CosineSchedule()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    alpha_bar = VP.alpha(schedule.sigma_at(t * 1000)) ** 2
    torch.testing.assert_close(alpha_bar, f / f[0])  # Nichol & Dhariwal 2021, eq. 17
    torch.testing.assert_close(schedule.timestep(schedule.sigma_at(t * 1000)), t * 1000)
    sigmas = schedule.sigmas(10)
    assert sigmas[0] == 1.0 and sigmas[-1] == 0.0 and bool((sigmas[:-1] > sigmas[1:]).all())
    assert schedule.sigmas(10, t_max=0.9)[0] < 1.0


# ---------------------------------------------------------------- flow


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("num_steps", [4, 28])
def test_flow_grids_match_diffusers(shift, num_steps):
    diffusers = pytest.importorskip("diffusers")
    schedule = FlowSchedule(shift=shift)
    # "linspace" is FlowMatchEulerDiscreteScheduler's own grid with the shift applied once
    sched = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    sched.set_timesteps(num_steps, mu=math.log(shift))
    torch.testing.assert_close(schedule.sigmas(num_steps), sched.sigmas.double(), rtol=1e-6, atol=1e-7)
    # "trailing" is the FLUX pipeline's sigmas = linspace(1, 1 / N, N)
    sched.set_timesteps(num_steps, sigmas=[1 - k / num_steps for k in range(num_steps)], mu=math.log(shift))
    torch.testing.assert_close(schedule.sigmas(num_steps, "trailing"), sched.sigmas.double(), rtol=1e-6, atol=1e-7)
    # the network is told 1000 * sigma, as diffusers' timesteps
    t = schedule.timestep(sched.sigmas[:-1].double())
    torch.testing.assert_close(t, sched.timesteps.double(), rtol=1e-6, atol=1e-4)
    if shift == 1.0:  # the static config agrees too
        static = diffusers.FlowMatchEulerDiscreteScheduler()
        static.set_timesteps(num_steps)
        torch.testing.assert_close(schedule.sigmas(num_steps), static.sigmas.double(), rtol=1e-6, atol=1e-7)


def test_flow_shift_and_resolution_shift():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(FlowSchedule(shift=3.0).shifted(t), 3 * t / (1 + 2 * t))
    assert FlowSchedule(shift=3.0).shifted(t)[[0, -1]].tolist() == [0.0, 1.0]
    assert resolution_shift(256) == pytest.approx(math.exp(0.5))
    assert resolution_shift(4096) == pytest.approx(math.exp(1.15))
    assert resolution_shift((256 + 4096) // 2) == pytest.approx(math.exp((0.5 + 1.15) / 2))
    with pytest.raises(KinemaError, match="shift"):
        FlowSchedule(shift=0.0)


# ---------------------------------------------------------------- training densities


def test_uniform_density_on_discrete_vp_gives_uniform_integer_timesteps():
    schedule = VPSchedule()
    sigmas = sample_sigmas(schedule, 20000, generator=torch.Generator().manual_seed(0))
    assert sigmas.shape == (20000,) and sigmas.dtype == torch.float64
    t = schedule.timestep(sigmas)
    assert torch.equal(t, t.round()) and t.min() >= 0 and t.max() <= 999
    # mean of U{0..999} is 499.5 with std 288.7: within 4 standard errors
    assert abs(t.mean().item() - 499.5) < 4 * 288.7 / math.sqrt(20000)


def test_logit_normal_density_on_shifted_flow():
    schedule, n = FlowSchedule(shift=3.0), 20000
    g = torch.Generator().manual_seed(1)
    sigmas = sample_sigmas(schedule, n, kind="logit_normal", mean=0.5, std=0.8, generator=g)
    assert sigmas.min() > 0 and sigmas.max() < 1
    t = sigmas / (3 - 2 * sigmas)  # undo the shift
    logit = torch.log(t / (1 - t))
    assert abs(logit.mean().item() - 0.5) < 4 * 0.8 / math.sqrt(n)
    assert abs(logit.std().item() - 0.8) < 4 * 0.8 / math.sqrt(2 * n)


def test_per_frame_levels_are_independent():
    sigmas = sample_sigmas(CosineSchedule(), 4000, frames=3, generator=torch.Generator().manual_seed(2))
    assert sigmas.shape == (4000, 3)
    corr = torch.corrcoef(sigmas.T)
    assert (corr - torch.eye(3)).abs().max() < 4 / math.sqrt(4000)


def test_density_is_seeded_and_validated():
    a = sample_sigmas(FlowSchedule(), 5, generator=torch.Generator().manual_seed(3))
    b = sample_sigmas(FlowSchedule(), 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(KinemaError, match="uniform, logit_normal"):
        sample_sigmas(FlowSchedule(), 5, kind="beta")
