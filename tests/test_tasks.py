"""Sampling with known content (kinema.tasks.known) and the pixel tasks (kinema.tasks.clips)
on tiny random pipelines and analytic denoisers: what must hold whatever the weights."""

from __future__ import annotations

import pytest
import torch

from kinema.diffusion.samplers import get_sampler
from kinema.diffusion.schedules import FLOW, FlowSchedule
from kinema.errors import KinemaError
from kinema.pipeline import Pipeline
from kinema.tasks import clips
from kinema.tasks.known import Known, KnownContent
from kinema.tasks.t2v import sample_latents
from pipeline_utils import make_pipeline_dir

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    return Pipeline.load(make_pipeline_dir(root / "p", text_encoder="none", frames=9, cond_channels=5))


class Smoother:
    """An analytic denoiser D(x, sigma) = A x: every frame becomes the clip's temporal mean
    (so the known frames inform the unknown ones). Records the sigmas it is called with."""

    path = FLOW

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma):
        self.calls.append((x.clone(), torch.as_tensor(sigma).clone()))
        return x.mean(dim=2, keepdim=True).expand_as(x)


def known_first_frame(shape=(2, 3, 4, 2, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(shape, generator=g)
    mask = torch.zeros(shape[0], 1, *shape[2:])
    mask[:, :, 0] = 1
    return Known(latents, mask, context_sigma=0.1), torch.randn(shape, generator=g)


@pytest.mark.parametrize("method", ["trained", "replace", "guidance"])
def test_every_method_ends_on_the_known_content(method):
    known, noise = known_first_frame()
    d = KnownContent(Smoother(), known, method, noise)
    out = get_sampler("euler")(d, torch.randn(known.latents.shape), FlowSchedule().sigmas(4))
    torch.testing.assert_close(out[:, :, :1], known.latents[:, :, :1])
    assert not torch.allclose(out[:, :, 1:], known.latents[:, :, 1:])


def test_trained_method_shows_known_frames_at_the_context_level():
    known, noise = known_first_frame()
    inner = Smoother()
    KnownContent(inner, known, "trained", noise)(torch.randn(known.latents.shape), torch.tensor([0.8, 0.8]))
    x, sigma = inner.calls[-1]
    assert sigma.shape == (2, 4) and torch.allclose(sigma[:, 0], torch.tensor(0.1, dtype=sigma.dtype))
    assert torch.allclose(sigma[:, 1:], torch.tensor(0.8, dtype=sigma.dtype))
    torch.testing.assert_close(x[:, :, 0], FLOW.add_noise(known.latents, noise, 0.1)[:, :, 0])


def test_replace_method_noises_the_known_region_to_the_current_level():
    known, noise = known_first_frame()
    inner = Smoother()
    KnownContent(inner, known, "replace", noise)(torch.randn(known.latents.shape), torch.tensor([0.6, 0.6]))
    x, sigma = inner.calls[-1]
    assert sigma.shape == (2,)
    torch.testing.assert_close(x[:, :, 0], FLOW.add_noise(known.latents, noise, 0.6)[:, :, 0])


def test_reconstruction_guidance_matches_its_closed_form():
    """For D(x) = A x (A: temporal mean), grad_x ||m (k - A x)||^2 = -2 A^T m (k - A x), and
    the guided x0 on unknown elements is A x - (w alpha / 2) * that gradient."""
    known, noise = known_first_frame()
    w, sigma = 3.0, 0.6
    x = torch.randn(known.latents.shape)
    guided = KnownContent(Smoother(), known, "guidance", noise, guidance_weight=w)(x, torch.tensor([sigma, sigma]))
    m, k = known.mask, known.latents
    xr = m * FLOW.add_noise(k, noise, sigma) + (1 - m) * x  # the replaced input
    ax = xr.mean(dim=2, keepdim=True).expand_as(xr)
    residual = m * (k - ax)
    grad = -2 * residual.mean(dim=2, keepdim=True).expand_as(xr)  # A is symmetric
    alpha = 1 - sigma
    expected = m * k + (1 - m) * (ax - (w * alpha / 2) * grad)
    torch.testing.assert_close(guided, expected)


def test_known_mask_must_fit():
    with pytest.raises(KinemaError, match="does not fit"):
        Known(torch.zeros(1, 3, 4, 2, 2), torch.zeros(1, 1, 3, 2, 2))
    with pytest.raises(KinemaError, match="unknown method"):
        KnownContent(Smoother(), known_first_frame()[0], "paste", torch.zeros(2, 3, 4, 2, 2))


def test_trained_method_needs_a_task_trained_network(tmp_path):
    plain = Pipeline.load(make_pipeline_dir(tmp_path / "plain", text_encoder="none", frames=5))
    known, _ = known_first_frame((1, 4, 2, 2, 2))
    with pytest.raises(KinemaError, match="not trained with known-content"):
        sample_latents(plain, [""], (1, 4, 2, 2, 2), known=known, steps=2)
    out = sample_latents(plain, [""], (1, 4, 2, 2, 2), known=known, method="replace", steps=2)
    torch.testing.assert_close(out[:, :, 0], known.latents[:, :, 0])


@pytest.mark.parametrize("method", ["trained", "replace", "guidance"])
def test_sample_latents_keeps_known_latents_with_a_real_network(pipe, method):
    shape = pipe.latent_shape(1, 9, (16, 16))
    known, _ = known_first_frame(shape)
    out = sample_latents(pipe, [""], shape, known=known, method=method, steps=3, seeds=1)
    torch.testing.assert_close(out[:, :, 0], known.latents[:, :, 0])
    again = sample_latents(pipe, [""], shape, known=known, method=method, steps=3, seeds=1)
    assert torch.equal(out, again)


def test_sdedit_strength_zero_returns_the_input_and_low_strength_stays_close(pipe):
    clip = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    assert torch.equal(clips.edit(pipe, [""], clip, strength=0.0), clip)
    init = clips.encode(pipe, clip)
    starts = []
    grid = pipe.schedule.sigmas(10).tolist()
    for strength in (0.3, 0.9):
        seen = []
        out = sample_latents(pipe, [""], tuple(init.shape), init=init, strength=strength, steps=10,
                             callback=lambda info: seen.append(info["sigma"]))
        starts.append(seen[0])
        assert len(seen) == round(10 * strength) and seen[0] == pytest.approx(grid[10 - round(10 * strength)])
        if strength == 0.3:
            low = (out - init).abs().mean()
        else:
            high = (out - init).abs().mean()
    assert low < high
    with pytest.raises(KinemaError, match="strength"):
        clips.edit(pipe, [""], clip, strength=1.5)


def test_latent_known_mask_follows_the_causal_grouping():
    region = torch.zeros(1, 1, 9, 16, 16)
    region[:, :, 3, 0, 9] = 1  # frame 3 -> latent frame 1 (frames 1-4); pixel (0, 9) -> cell (0, 1)
    mask = clips.latent_known_mask(region, spatial=8, temporal=4)
    assert mask.shape == (1, 1, 3, 2, 2)
    unknown = (mask == 0).nonzero().tolist()
    assert unknown == [[0, 0, 1, 0, 1]]


def test_inpaint_keeps_every_pixel_outside_the_region(pipe):
    clip = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    region = torch.zeros(1, 1, 9, 16, 16)
    region[..., 4:12, 4:12] = 1
    out = clips.inpaint(pipe, [""], clip, region, steps=2)
    assert torch.equal(out[..., :4, :], clip[..., :4, :]) and torch.equal(out[..., :, 12:], clip[..., :, 12:])
    assert not torch.equal(out[..., 4:12, 4:12], clip[..., 4:12, 4:12])


def test_image_to_video_and_prediction_shapes_and_errors(pipe):
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    video = clips.image_to_video(pipe, ["", ""], image, frames=9, steps=2)
    assert video.shape == (2, 3, 9, 16, 16)
    assert torch.equal(video[:, :, 0], image)  # the clip starts from exactly the given frame
    assert (video[:, :, 1] - image).abs().max() > 1e-3
    clip = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    assert clips.predict(pipe, [""], clip, frames=9, steps=2).shape == (1, 3, 9, 16, 16)
    with pytest.raises(KinemaError, match="already fills"):
        clips.predict(pipe, [""], torch.rand(1, 3, 9, 16, 16), frames=9, steps=2)
    assert clips.context_frames(7, 4) == 5 and clips.context_frames(20, 4, wanted=9) == 9


def test_extend_streams_windows_that_continue_in_latent_space(pipe):
    from kinema.tasks.extend import default_context, extend, extend_latents

    chunks = list(extend_latents(pipe, "", 6, context=2, steps=2))
    assert [c.shape[2] for c in chunks] == [3, 1, 1, 1]  # window 3 latents, 2 kept, 1 new per window
    whole = torch.cat(chunks, dim=2)
    again = torch.cat(list(extend_latents(pipe, "", 6, steps=2)), dim=2)  # the default keeps 2 of 3
    assert torch.equal(whole, again)
    assert [default_context(w) for w in (2, 3, 4, 5, 8)] == [1, 2, 3, 3, 5]
    pieces = []
    count = extend(pipe, "", 21, on_frames=pieces.append, context=2, steps=2)
    assert count == 21 and [p.shape[2] for p in pieces] == [9, 4, 4, 4]
    torch.testing.assert_close(torch.cat(pieces, dim=2), pipe.vae.decode(whole), atol=1e-5, rtol=0)
    with pytest.raises(KinemaError, match="context must be between 1 and 2"):
        list(extend_latents(pipe, "", 6, context=3, steps=2))


def test_extend_continues_a_given_clip_from_its_own_latents(pipe):
    from kinema.tasks.extend import extend_latents

    clip = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    start = clips.encode(pipe, clip)
    chunks = list(extend_latents(pipe, "", 5, start=start, context=1, steps=2))
    assert torch.equal(chunks[0], start) and sum(c.shape[2] for c in chunks) == 5


def test_interpolate_knows_both_ends(pipe):
    a, b = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    video = clips.interpolate(pipe, [""], a, b, frames=9, steps=2)
    assert video.shape == (1, 3, 9, 16, 16)
    assert torch.equal(video[:, :, 0], a) and torch.equal(video[:, :, -1], b)  # the keyframes themselves
    once = clips.interpolate(pipe, [""], a, b, frames=9, steps=2, passes=1)
    twice = clips.interpolate(pipe, [""], a, b, frames=9, steps=2, passes=2)
    assert (once - twice).abs().max() > 1e-3 and (twice - video).abs().max() > 1e-3  # each pass refines
    assert torch.equal(clips.interpolate(pipe, [""], a, b, frames=9, steps=2, passes=2), twice)  # seeded
    with pytest.raises(KinemaError, match="at least 5 frames"):
        clips.interpolate(pipe, [""], a, b, frames=1, steps=2)
    with pytest.raises(KinemaError, match="at least one pass"):
        clips.interpolate(pipe, [""], a, b, frames=9, steps=2, passes=0)


def test_retime_spreads_motion_that_ends_early_over_the_whole_clip():
    # a ramp that reaches its end value at frame 12 of 17 and stays: retimed, it is linear in
    # time and reaches that value exactly at the last frame
    t, arrival = 17, 12
    ramp = torch.clamp(torch.arange(t, dtype=torch.float32) / arrival, max=1.0)
    video = ramp[None, None, :, None, None].expand(2, 3, t, 4, 4)
    out = clips.retime(video, arrival)
    assert out.shape == video.shape
    torch.testing.assert_close(out[0, 0, :, 0, 0], torch.arange(t, dtype=torch.float32) / (t - 1))
    assert torch.equal(out[:, :, 0], video[:, :, 0]) and torch.equal(out[:, :, -1], video[:, :, arrival])
    assert torch.equal(clips.retime(video, t - 1), video)


class ShiftedTarget:
    """A two-condition analytic denoiser for FlowEdit: the source half of the batch (the
    last half) always predicts the clean clip `clean`, the target half `clean + shift`."""

    path = FLOW

    def __init__(self, clean, shift):
        self.clean, self.shift = clean, shift

    def __call__(self, x, sigma):
        return torch.cat([self.clean + self.shift, self.clean]).expand_as(x)


def test_flowedit_moves_the_clip_by_exactly_what_the_two_conditions_disagree_on():
    """If the target's clean estimate is the source's plus a constant c, the flow ODE of the
    edit is de/dsigma = (e - c)/sigma, whose Euler steps from e = 0 telescope to e = c at
    sigma = 0: the edit is init + c exactly, whatever the noise drawn at each level."""
    from kinema.tasks.flowedit import flow_edit_loop

    init = torch.randn(2, 3, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    shift = torch.randn(1, 3, 1, 1, 1, generator=torch.Generator().manual_seed(1))
    sigmas = FlowSchedule(shift=3.0).sigmas(10)
    sigmas = sigmas[sigmas <= 0.9].tolist()
    clean = torch.randn(init.shape, generator=torch.Generator().manual_seed(3))
    out = flow_edit_loop(ShiftedTarget(clean, shift), FLOW, init, sigmas, torch.Generator().manual_seed(2))
    torch.testing.assert_close(out, init + shift.expand_as(init), rtol=0, atol=1e-5)
    same = flow_edit_loop(ShiftedTarget(clean, 0.0), FLOW, init, sigmas, torch.Generator().manual_seed(2))
    torch.testing.assert_close(same, init, rtol=0, atol=1e-6)  # no disagreement: the clip stays


def test_flowedit_on_a_pipeline_keeps_the_clip_when_the_prompts_agree(pipe):
    clip = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    assert torch.equal(clips.edit(pipe, [""], clip, strength=0.0, method="flowedit"), clip)
    init = clips.encode(pipe, clip)
    # This pipeline has no text encoder: every prompt is the same condition, so nothing moves.
    same = clips.edit(pipe, ["a"], clip, strength=0.9, method="flowedit", source_prompts=["b"], steps=4)
    torch.testing.assert_close(same, pipe.decode(init), rtol=0, atol=1e-4)
    with pytest.raises(KinemaError, match="flowedit does not take sampler"):
        clips.edit(pipe, [""], clip, strength=0.5, method="flowedit", sampler="heun")
    with pytest.raises(KinemaError, match="takes no text"):  # sdedit guides away from the source prompt
        clips.edit(pipe, [""], clip, strength=0.5, source_prompts=["x"])
    with pytest.raises(KinemaError, match="2 source prompts for 1"):
        clips.edit(pipe, [""], clip, strength=0.5, source_prompts=["x", "y"])
    with pytest.raises(KinemaError, match="unknown edit method"):
        clips.edit(pipe, [""], clip, strength=0.5, method="invert")
