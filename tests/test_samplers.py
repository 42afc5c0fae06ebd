"""Samplers against diffusers' schedulers, the closed-form Gaussian case, and convergence order.

Gaussian data x0 ~ N(MU, SD^2) per dimension has an exact denoiser,
E[x0 | x] = MU + alpha SD^2 / (alpha^2 SD^2 + sigma^2) (x - alpha MU), and an exact
probability-flow map x_T -> MU + SD (x_T - alpha_T MU) / sqrt(alpha_T^2 SD^2 + sigma_T^2).
"""

from __future__ import annotations

import math

import pytest
import torch

from kinema.diffusion import samplers as S
from kinema.diffusion.schedules import FLOW, VP, FlowSchedule, Path, VPSchedule
from kinema.errors import KinemaError

torch.set_num_threads(1)
MU, SD = 0.5, 0.3


def gaussian_x0(x: torch.Tensor, a, s) -> torch.Tensor:
    return MU + a * SD**2 / (a * a * SD**2 + s * s) * (x - a * MU)


class GaussianDenoiser:
    """The exact denoiser for N(MU, SD^2) data; counts its calls."""

    def __init__(self, path: Path) -> None:
        self.path, self.calls = path, 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert sigma.shape == (x.shape[0],) and sigma.dtype == torch.float64
        self.calls += 1
        s = sigma.view(-1, *[1] * (x.ndim - 1)).to(x.dtype)
        return gaussian_x0(x, self.path.alpha(s), s)


def run(name: str, path: Path, x: torch.Tensor, sigmas: torch.Tensor, **kw) -> list[torch.Tensor]:
    """The sampler's x after every step, via the callback."""
    xs: list[torch.Tensor] = []
    out = S.get_sampler(name)(GaussianDenoiser(path), x.clone(), sigmas, callback=lambda e: xs.append(e["x"]), **kw)
    assert out is xs[-1]
    return xs


def assert_trajectories_match(ours: list[torch.Tensor], ref: list[torch.Tensor], tol: float = 1e-5) -> None:
    assert len(ours) == len(ref)
    for k, (a, b) in enumerate(zip(ours, ref)):
        rel = ((a - b).abs().max() / b.abs().max()).item()
        assert rel < tol, f"step {k}: relative difference {rel:.2e}"


def x_T() -> torch.Tensor:
    return torch.randn(3, 2, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


# ---------------------------------------------------------------- VP: DDPM, DDIM, DPM-Solver++, Heun


def diffusers_vp_loop(sched, x, num_steps, prediction="epsilon", generator=None, **step_kw):
    """diffusers' set_timesteps/step loop with the Gaussian model in `prediction` form."""
    sched.set_timesteps(num_steps)
    xs = []
    for t in sched.timesteps:
        abar = sched.alphas_cumprod[t].double()
        a, s = abar.sqrt(), (1 - abar).sqrt()
        x0 = gaussian_x0(x, a, s)
        eps = (x - a * x0) / s
        out = eps if prediction == "epsilon" else a * eps - s * x0
        x = sched.step(out, t, x, generator=generator, **step_kw).prev_sample
        xs.append(x)
    return xs


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("num_steps", [10, 25])
def test_ddpm_matches_diffusers(spacing, num_steps):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDPMScheduler(clip_sample=False, timestep_spacing=spacing)
    ref = diffusers_vp_loop(sched, x_T(), num_steps, generator=torch.Generator().manual_seed(1))
    ours = run("ddpm", VP, x_T(), VPSchedule().sigmas(num_steps, spacing), generator=torch.Generator().manual_seed(1))
    assert_trajectories_match(ours, ref)


def test_ddpm_per_sample_generators_match_diffusers():
    diffusers = pytest.importorskip("diffusers")
    gens = lambda: S.generators([7, 8, 9])  # noqa: E731
    sched = diffusers.DDPMScheduler(clip_sample=False, beta_schedule="squaredcos_cap_v2")
    ref = diffusers_vp_loop(sched, x_T(), 10, generator=gens())
    ours = run("ddpm", VP, x_T(), VPSchedule("squaredcos_cap_v2").sigmas(10), generator=gens())
    assert_trajectories_match(ours, ref)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_matches_diffusers(spacing, eta):
    diffusers = pytest.importorskip("diffusers")
    # diffusers' DDIM steps to t - T // N whatever the spacing, so its "linspace" is not a grid
    # walk; leading and trailing are.
    offset = 1 if spacing == "leading" else 0
    sched = diffusers.DDIMScheduler(clip_sample=False, timestep_spacing=spacing, steps_offset=offset)
    ref = diffusers_vp_loop(sched, x_T(), 20, generator=torch.Generator().manual_seed(2), eta=eta)
    sigmas = VPSchedule().sigmas(20, spacing, steps_offset=offset)
    ours = run("ddim", VP, x_T(), sigmas, eta=eta, generator=torch.Generator().manual_seed(2))
    assert_trajectories_match(ours, ref)


def test_ddim_zero_terminal_snr_v_prediction_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(
        clip_sample=False, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        timestep_spacing="trailing", rescale_betas_zero_snr=True, prediction_type="v_prediction",
    )
    ref = diffusers_vp_loop(sched, x_T(), 10, prediction="v")
    schedule = VPSchedule("scaled_linear", beta_start=0.00085, beta_end=0.012, rescale_zero_terminal_snr=True)
    sigmas = schedule.sigmas(10, "trailing")
    assert sigmas[0] == 1.0  # starts from pure noise
    assert_trajectories_match(run("ddim", VP, x_T(), sigmas), ref)


def diffusers_dpm_loop(sched, x, num_steps):
    sched.set_timesteps(num_steps)
    xs = []
    for t in sched.timesteps:
        sig = sched.sigmas[sched.step_index or 0].double()
        if sched.config.use_flow_sigmas:
            a, s = 1 - sig, sig
            out = (x - a * gaussian_x0(x, a, s)) / s - gaussian_x0(x, a, s)  # velocity eps - x0
        else:
            a = 1 / (sig * sig + 1).sqrt()
            s = sig * a
            out = (x - a * gaussian_x0(x, a, s)) / s  # eps
        x = sched.step(out, t, x).prev_sample
        xs.append(x)
    return xs


@pytest.mark.parametrize("num_steps", [5, 12, 20])
@pytest.mark.parametrize("spacing", ["linspace", "trailing"])
def test_dpmpp_2m_matches_diffusers(num_steps, spacing):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DPMSolverMultistepScheduler(
        algorithm_type="dpmsolver++", solver_order=2, timestep_spacing=spacing
    )
    ref = diffusers_dpm_loop(sched, x_T(), num_steps)
    schedule = VPSchedule()
    if spacing == "trailing":
        sigmas = schedule.sigmas(num_steps, "trailing")
    else:  # DPM-Solver's own linspace (N + 1 points, the last dropped): take its timesteps
        sigmas = torch.cat([schedule.sigma_at(sched.timesteps), torch.zeros(1, dtype=torch.float64)])
    assert torch.equal(schedule.timestep(sigmas[:-1]), sched.timesteps.double())
    assert_trajectories_match(run("dpmpp_2m", VP, x_T(), sigmas), ref)


def test_dpmpp_2m_on_flow_matches_diffusers_flow_sigmas():
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DPMSolverMultistepScheduler(
        algorithm_type="dpmsolver++", solver_order=2, use_flow_sigmas=True, flow_shift=3.0,
        prediction_type="flow_prediction",
    )
    ref = diffusers_dpm_loop(sched, x_T(), 16)
    ours = run("dpmpp_2m", FLOW, x_T(), sched.sigmas.double())
    assert_trajectories_match(ours, ref)


def heun_loop(sched, y, to_model):
    """diffusers' Heun loop; returns y after every completed (two-stage) step."""
    ys = []
    for t in sched.timesteps:
        sig = sched.sigmas[sched.step_index or 0].double()
        y = sched.step(to_model(y, sig), t, y).prev_sample
        if sched.state_in_first_order:
            ys.append(y)
    return ys + [y]  # the last step, into sigma = 0, is a lone Euler stage


def test_heun_on_flow_matches_flow_match_heun():
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.FlowMatchHeunDiscreteScheduler(shift=1.0)
    sched.set_timesteps(8)

    def velocity(x, s):
        x0 = gaussian_x0(x, 1 - s, s)
        return (x - (1 - s) * x0) / s - x0

    ref = heun_loop(sched, x_T(), velocity)
    sigmas = torch.cat([sched.sigmas[::2], torch.zeros(1)]).double()  # de-interleave
    assert_trajectories_match(run("heun", FLOW, x_T(), sigmas), ref)


def test_heun_on_vp_matches_heun_discrete():
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.HeunDiscreteScheduler(beta_start=0.0001, beta_end=0.02, timestep_spacing="trailing")
    sched.set_timesteps(8)
    sigmas = VPSchedule().sigmas(8, "trailing")
    alphas = VP.alpha(sigmas)

    def eps(y, sig_ve):  # diffusers works in VE coordinates y = x / alpha
        a = 1 / (sig_ve * sig_ve + 1).sqrt()
        x, s = y * a, sig_ve * a
        return (x - a * gaussian_x0(x, a, s)) / s

    ref = heun_loop(sched, x_T() / alphas[0], eps)
    ref = [y * a for y, a in zip(ref, alphas[1:])]
    assert_trajectories_match(run("heun", VP, x_T(), sigmas), ref)


# ---------------------------------------------------------------- flow: Euler


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_on_flow_matches_flow_match_euler(shift):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(12)
    ref, x = [], x_T()
    for t in sched.timesteps:
        s = sched.sigmas[sched.step_index or 0].double()
        x0 = gaussian_x0(x, 1 - s, s)
        x = sched.step((x - (1 - s) * x0) / s - x0, t, x).prev_sample
        ref.append(x)
    assert_trajectories_match(run("euler", FLOW, x_T(), sched.sigmas.double()), ref)


def test_euler_on_vp_matches_euler_discrete():
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.EulerDiscreteScheduler(timestep_spacing="leading", steps_offset=1)
    sched.set_timesteps(10)
    sigmas = VPSchedule().sigmas(10, "leading", steps_offset=1)
    alphas = VP.alpha(sigmas)
    ref, y = [], x_T() / alphas[0]
    for t in sched.timesteps:
        x = sched.scale_model_input(y, t)  # y / sqrt(sigma_ve^2 + 1) = alpha * y
        sig_ve = sched.sigmas[sched.step_index].double()
        a = 1 / (sig_ve * sig_ve + 1).sqrt()
        s = sig_ve * a
        y = sched.step((x - a * gaussian_x0(x, a, s)) / s, t, y).prev_sample
        ref.append(y)
    ref = [y * a for y, a in zip(ref, alphas[1:])]
    assert_trajectories_match(run("euler", VP, x_T(), sigmas), ref)


# ---------------------------------------------------------------- closed form


N_SAMPLES = 16384
# Steps per sampler: enough that the discretisation bias of the variance is about one
# standard error or less (first-order and stochastic samplers converge slowly at the small
# sigmas where SD = 0.3 data is resolved).
STEPS = {"ddpm": 1000, "ddim": 500, "euler": 500, "heun": 100, "dpmpp_2m": 100}


@pytest.mark.parametrize("name", ["ddpm", "ddim", "euler", "heun", "dpmpp_2m"])
@pytest.mark.parametrize("path", [VP, FLOW], ids=["vp", "flow"])
def test_sampler_recovers_gaussian_mean_and_variance(name, path):
    """Mean and variance within 4 standard errors: SE_mean = SD / sqrt(n),
    SE_var = SD^2 sqrt(2 / (n - 1)) (n = 16384: 0.0023 and 0.0010)."""
    schedule = VPSchedule() if path is VP else FlowSchedule()
    sigmas = schedule.sigmas(STEPS[name], "trailing")
    a0, s0 = path.alpha(sigmas[0]).item(), sigmas[0].item()
    g = torch.Generator().manual_seed(0)
    # the exact marginal at sigmas[0]: N(a0 MU, a0^2 SD^2 + s0^2)
    x = a0 * MU + math.sqrt(a0 * a0 * SD**2 + s0 * s0) * torch.randn(N_SAMPLES, 1, generator=g)
    out = S.get_sampler(name)(GaussianDenoiser(path), x, sigmas, generator=g).double()
    se_mean, se_var = SD / math.sqrt(N_SAMPLES), SD**2 * math.sqrt(2 / (N_SAMPLES - 1))
    assert abs(out.mean().item() - MU) < 4 * se_mean
    assert abs(out.var().item() - SD**2) < 4 * se_var


def test_editing_strength_is_a_grid_suffix():
    """Starting at sigmas[k] from the exact marginal there gives the data distribution too."""
    sigmas = FlowSchedule(shift=3.0).sigmas(100, "trailing")[40:]
    a0, s0 = FLOW.alpha(sigmas[0]).item(), sigmas[0].item()
    g = torch.Generator().manual_seed(3)
    x = a0 * MU + math.sqrt(a0 * a0 * SD**2 + s0 * s0) * torch.randn(N_SAMPLES, 1, generator=g)
    out = S.sample_heun(GaussianDenoiser(FLOW), x, sigmas).double()
    assert abs(out.mean().item() - MU) < 4 * SD / math.sqrt(N_SAMPLES)
    assert abs(out.var().item() - SD**2) < 4 * SD**2 * math.sqrt(2 / (N_SAMPLES - 1))


def lambda_uniform_grid(path: Path, n: int, hi: float = 0.95, lo: float = 0.02) -> torch.Tensor:
    """n + 1 sigmas from hi to lo, uniform in lambda = log(alpha / sigma)."""
    lam = [math.log(path.alpha(torch.tensor(s, dtype=torch.float64)).item() / s) for s in (hi, lo)]
    e = torch.exp(torch.linspace(lam[0], lam[1], n + 1, dtype=torch.float64))  # alpha / sigma
    return 1 / torch.sqrt(1 + e * e) if path is VP else 1 / (1 + e)


@pytest.mark.parametrize("name, order", [("euler", 1.0), ("heun", 2.0), ("dpmpp_2m", 2.0)])
@pytest.mark.parametrize("path", [VP, FLOW], ids=["vp", "flow"])
def test_convergence_order_on_the_gaussian_ode(name, order, path):
    """Error against the exact probability-flow solution at the last level falls as N^-order."""
    z = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    exact = lambda s: path.alpha(s) * MU + torch.sqrt(path.alpha(s) ** 2 * SD**2 + s * s) * z  # noqa: E731
    errors = []
    for n in (20, 40, 80):
        sigmas = lambda_uniform_grid(path, n)
        out = S.get_sampler(name)(GaussianDenoiser(path), exact(sigmas[0]), sigmas)
        errors.append((out - exact(sigmas[-1])).abs().max().item())
    slopes = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    assert all(abs(sl - order) < 0.15 for sl in slopes), slopes


# ---------------------------------------------------------------- mechanics


def test_heun_evaluation_count_and_callback():
    d, events = GaussianDenoiser(FLOW), []
    sigmas = FlowSchedule().sigmas(6)
    S.sample_heun(d, torch.zeros(2, 3), sigmas, callback=events.append)
    assert d.calls == 2 * 6 - 1  # no correction on the step into sigma = 0
    assert [e["step"] for e in events] == list(range(6))
    assert [e["sigma"] for e in events] == sigmas[:-1].tolist()
    assert [e["sigma_next"] for e in events] == sigmas[1:].tolist()
    assert set(events[0]) == {"step", "x", "sigma", "sigma_next", "x0_hat"}


def test_no_noise_is_drawn_into_sigma_zero():
    g = torch.Generator().manual_seed(5)
    S.sample_ddpm(GaussianDenoiser(VP), torch.zeros(2, 3), VPSchedule().sigmas(4), generator=g)
    g_ref = torch.Generator().manual_seed(5)
    for _ in range(3):  # 4 steps, the last into sigma = 0
        torch.randn(2, 3, generator=g_ref)
    assert torch.equal(g.get_state(), g_ref.get_state())


def test_per_sample_seeds_make_each_sample_independent_of_the_batch():
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    sigmas = VPSchedule().sigmas(5, "trailing")
    batch = S.sample_ddpm(GaussianDenoiser(VP), x, sigmas, generator=S.generators([10, 11, 12]))
    alone = S.sample_ddpm(GaussianDenoiser(VP), x[1:2], sigmas, generator=S.generators([11]))
    torch.testing.assert_close(batch[1:2], alone, rtol=0, atol=1e-6)


def test_progress_bar_goes_to_stderr(capsys):
    S.sample_euler(GaussianDenoiser(FLOW), torch.zeros(1, 2), FlowSchedule().sigmas(3), progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "3/3" in captured.err


def test_get_sampler_and_errors():
    assert S.get_sampler("dpmpp_2m") is S.sample_dpmpp_2m
    with pytest.raises(KinemaError, match="ddpm, ddim, euler, heun, dpmpp_2m"):
        S.get_sampler("lms")
    with pytest.raises(KinemaError, match="no .path"):
        S.sample_euler(lambda x, s: x, torch.zeros(1, 2), FlowSchedule().sigmas(2))
    for bad in (torch.tensor([0.5, 0.7, 0.0]), torch.tensor([1.5, 0.0]), torch.ones(2, 3)):
        with pytest.raises(KinemaError, match="sigmas"):
            S.sample_euler(GaussianDenoiser(FLOW), torch.zeros(1, 2), bad)


@pytest.mark.parametrize("steps", [7, 10, 20])
@pytest.mark.parametrize("strength", [0.3, 0.7, 0.75, 1.0])
def test_edit_strength_takes_the_steps_diffusers_img2img_takes(steps, strength):
    """Strength is the share of the N steps redone: diffusers' SD3 img2img and Wan video2video
    pipelines start at scheduler.timesteps[int(N - N * strength)] (their get_timesteps),
    computed here in exact decimals: in floats 10 * 0.7 > 7 and diffusers starts a step early."""
    from fractions import Fraction

    diffusers = pytest.importorskip("diffusers")
    from kinema.tasks.t2v import edit_levels

    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(steps)
    t_start = math.floor(max(steps - min(steps * Fraction(str(strength)), steps), 0))  # get_timesteps
    # on diffusers' own grid (it ends at sigma 1/1000 before the final 0) the same levels
    torch.testing.assert_close(edit_levels(sched.sigmas.double(), strength), sched.sigmas[t_start:].double())
    ours = edit_levels(FlowSchedule(shift=3.0).sigmas(steps), strength)
    assert len(ours) == len(sched.sigmas) - t_start
    if strength == 0.7 and steps in (10, 20):  # 7 of 10 (14 of 20) steps: from t = 2/3 (0.68), sigma 0.857 (0.867)
        assert ours[0].item() == pytest.approx(0.857 if steps == 10 else 0.867, abs=1e-3)
