"""Text-to-video through a pipeline dir, and `kinema generate --model`."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from kinema.cli import main
from kinema.pipeline import Pipeline
from kinema.tasks.t2v import text_to_video

from pipeline_utils import make_pipeline_dir

PROMPT = "a small blue square moving up on a gray background"


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    return make_pipeline_dir(tmp_path_factory.mktemp("pipe") / "model")


def test_t2v_shapes_seeds_and_batch_independence(pipe_dir):
    pipe = Pipeline.load(pipe_dir)
    video = text_to_video(pipe, [PROMPT, "an empty black background"], seeds=[7, 8])
    assert video.shape == (2, 3, 5, 16, 16) and video.abs().max() <= 1
    alone = text_to_video(pipe, [PROMPT], seeds=7)
    torch.testing.assert_close(alone[0], video[0], atol=1e-5, rtol=0)
    other_seed = text_to_video(pipe, [PROMPT], seeds=9)
    assert (other_seed[0] - video[0]).abs().max() > 1e-3
    longer = text_to_video(pipe, [PROMPT], frames=9, size=(24, 32))
    assert longer.shape == (1, 3, 9, 24, 32)


def test_guidance_changes_the_clip_and_one_means_conditional_only(pipe_dir):
    pipe = Pipeline.load(pipe_dir)
    calls = []
    pipe.net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    text_to_video(pipe, [PROMPT], guidance=1.0, steps=2)
    assert calls == [1, 1]  # no unconditional half when guidance is 1
    calls.clear()
    a = text_to_video(pipe, [PROMPT], guidance=5.0, steps=2)
    assert calls == [2, 2]  # cond and uncond in one batched forward
    b = text_to_video(pipe, [PROMPT], guidance=0.0, steps=2)
    assert (a - b).abs().max() > 1e-3


def test_guidance_interval_from_the_call_or_the_models_json(pipe_dir, tmp_path):
    """A step guides only when its level lies in the interval; the model's model.json sets the
    default and a call's interval replaces it ((0, inf): every step)."""
    pipe = Pipeline.load(pipe_dir)
    calls = []
    pipe.net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    everywhere = text_to_video(pipe, [PROMPT], guidance=5.0, steps=4)
    sigmas = pipe.schedule.sigmas(4)[:-1].tolist()  # the levels the 4 steps evaluate at, high to low
    calls.clear()
    high = text_to_video(pipe, [PROMPT], guidance=5.0, steps=4, guidance_interval=(sigmas[1], 1.0))
    assert calls == [2, 2, 1, 1]  # guided at the first two levels, conditional alone below
    never = text_to_video(pipe, [PROMPT], guidance=5.0, steps=4, guidance_interval=(2.0, 3.0))
    torch.testing.assert_close(never, text_to_video(pipe, [PROMPT], guidance=1.0, steps=4))
    assert (high - everywhere).abs().max() > 1e-4 and (high - never).abs().max() > 1e-4
    shutil.copytree(pipe_dir, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps(dict(config, guidance_interval=[sigmas[1], 1.0])))
    limited = Pipeline.load(tmp_path / "m")
    assert limited.config.guidance_interval == (sigmas[1], 1.0)
    torch.testing.assert_close(text_to_video(limited, [PROMPT], guidance=5.0, steps=4), high)
    torch.testing.assert_close(text_to_video(limited, [PROMPT], guidance=5.0, steps=4,
                                             guidance_interval=(0, float("inf"))), everywhere)
    # SDEdit starting below the model's interval: guided at every step rather than never
    from kinema.tasks.t2v import sample_latents

    init = torch.randn(1, *pipe.latent_shape(1, 5, (16, 16))[1:])
    edit = dict(init=init, strength=0.5, guidance=5.0, steps=4, seeds=3)  # the last 2 of 4 steps, from sigmas[2]
    shape = tuple(init.shape)
    torch.testing.assert_close(sample_latents(limited, [PROMPT], shape, **edit),
                               sample_latents(limited, [PROMPT], shape, guidance_interval=(0, float("inf")), **edit))
    assert (sample_latents(limited, [PROMPT], shape, **edit)
            - sample_latents(limited, [PROMPT], shape, guidance=1.0, **{k: v for k, v in edit.items() if k != "guidance"})
            ).abs().max() > 1e-4


def test_a_negative_prompt_is_guidances_null_condition(pipe_dir):
    """Guidance steers from the negative prompt to the prompt: at scale 0 the clip is the
    negative prompt's own; the empty negative prompt is the default null condition."""
    pipe = Pipeline.load(pipe_dir)
    other = "a large red circle moving left on a black background"
    plain = text_to_video(pipe, [PROMPT], guidance=5.0, steps=2)
    torch.testing.assert_close(text_to_video(pipe, [PROMPT], guidance=5.0, steps=2, negative_prompts=[""]), plain)
    steered = text_to_video(pipe, [PROMPT], guidance=5.0, steps=2, negative_prompts=[other])
    assert (steered - plain).abs().max() > 1e-3
    only_negative = text_to_video(pipe, [PROMPT], guidance=0.0, steps=2, negative_prompts=[other])
    torch.testing.assert_close(only_negative, text_to_video(pipe, [other], guidance=1.0, steps=2), atol=1e-5, rtol=0)
    with pytest.raises(Exception, match="2 negative prompts for 1 prompts"):
        text_to_video(pipe, [PROMPT], negative_prompts=["a", "b"])
    with pytest.raises(Exception, match="guidance is 1"):
        text_to_video(pipe, [PROMPT], guidance=1.0, negative_prompts=[other])


def test_sdedit_guides_away_from_the_source_prompt_by_default(pipe_dir):
    """edit(sdedit) with a source prompt is SDEdit with that prompt as the negative one, at
    the edit's own guidance defaults unless the call sets them."""
    from kinema.tasks import clips
    from kinema.tasks.t2v import sample_latents

    pipe = Pipeline.load(pipe_dir)
    source = "a large red circle moving left on a black background"
    clip = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    init = clips.encode(pipe, clip)
    common = dict(init=init, strength=0.7, steps=4, seeds=2)
    expected = pipe.decode(sample_latents(pipe, [PROMPT], tuple(init.shape), guidance=clips.SDEDIT_GUIDANCE,
                                          guidance_interval=clips.SDEDIT_GUIDANCE_INTERVAL,
                                          negative_prompts=[source], **common))
    got = clips.edit(pipe, [PROMPT], clip, strength=0.7, source_prompts=[source], steps=4, seeds=2)
    torch.testing.assert_close(got, expected)
    no_source = clips.edit(pipe, [PROMPT], clip, strength=0.7, steps=4, seeds=2)
    torch.testing.assert_close(no_source, pipe.decode(sample_latents(
        pipe, [PROMPT], tuple(init.shape), guidance=clips.SDEDIT_GUIDANCE,
        guidance_interval=clips.SDEDIT_GUIDANCE_INTERVAL, **common)))
    assert (got - no_source).abs().max() > 1e-3
    mild = clips.edit(pipe, [PROMPT], clip, strength=0.7, source_prompts=[source], steps=4, seeds=2, guidance=2.0,
                      guidance_interval=(0.0, 1.0))
    torch.testing.assert_close(mild, pipe.decode(sample_latents(pipe, [PROMPT], tuple(init.shape), guidance=2.0,
                                                                guidance_interval=(0.0, 1.0),
                                                                negative_prompts=[source], **common)))
    with pytest.raises(Exception, match="give those instead of negative prompts"):
        clips.edit(pipe, [PROMPT], clip, strength=0.7, negative_prompts=[source])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"frames": 6}, "1 + 4k frames"), ({"size": (20, 16)}, "divisible by 8"), ({"steps": 0}, "steps must be >= 1"),
     ({"sampler": "plms"}, "unknown sampler"), ({"guidance_interval": (0.5, 0.2)}, "0 <= lo <= hi")],
)
def test_t2v_bad_options(pipe_dir, kwargs, message):
    pipe = Pipeline.load(pipe_dir)
    with pytest.raises(Exception) as e:
        text_to_video(pipe, [PROMPT], **kwargs)
    assert message in str(e.value)


def test_generate_cli_is_deterministic(pipe_dir, tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    assert main(["generate", PROMPT, "--model", str(pipe_dir), "-o", str(a), "--seed", "4"]) == 0
    assert main(["generate", PROMPT, "--model", str(pipe_dir), "-o", str(b), "--seed", "4"]) == 0
    assert np.array_equal(np.load(a), np.load(b))
    assert np.load(a).shape == (5, 16, 16, 3)
    c = tmp_path / "c.npy"
    assert main(["generate", PROMPT, "--model", str(pipe_dir), "-o", str(c), "--seed", "4", "--sampler", "heun",
                 "--steps", "2", "--frames", "9", "--guidance", "1.5"]) == 0
    assert np.load(c).shape == (9, 16, 16, 3)
    d, e = tmp_path / "d.npy", tmp_path / "e.npy"
    assert main(["generate", PROMPT, "--model", str(pipe_dir), "-o", str(d), "--seed", "4", "--guidance-interval", "all"]) == 0
    assert np.array_equal(np.load(d), np.load(a))  # the test model guides every step anyway
    f = tmp_path / "f.npy"
    assert main(["generate", PROMPT, "--model", str(pipe_dir), "-o", str(f), "--seed", "4",
                 "--negative-prompt", "an empty black background"]) == 0
    assert np.load(f).shape == np.load(a).shape and not np.array_equal(np.load(f), np.load(a))
    assert main(["generate", PROMPT, "--model", str(pipe_dir), "-o", str(e), "--seed", "4",
                 "--guidance-interval", "0.5:1"]) == 0
    assert not np.array_equal(np.load(e), np.load(a))


def test_generate_cli_bad_input(pipe_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{")
    mislabeled = tmp_path / "mislabeled"
    shutil.copytree(pipe_dir, mislabeled)
    config = json.loads((mislabeled / "model.json").read_text())
    (mislabeled / "model.json").write_text(json.dumps(dict(config, network="unet3d")))
    cases = [
        (["--model", str(pipe_dir), "--sampler", "plms"], "unknown sampler"),
        (["--model", str(pipe_dir), "--frames", "6"], "1 + 4k frames"),
        (["--model", str(pipe_dir), "--size", "20x16"], "divisible by 8"),
        (["--model", str(pipe_dir), "--steps", "-2"], "positive integer"),
        (["--model", str(pipe_dir), "--guidance-interval", "0.9:0.1"], "expected LO:HI"),
        (["--model", str(pipe_dir), "--guidance-interval", "high"], "expected LO:HI"),
        (["--model", str(tmp_path / "missing")], "model directory not found"),
        (["--model", str(broken)], "not valid JSON"),
        (["--model", str(mislabeled)], "names a unet3d network, its folder holds a dit"),
    ]
    for extra, message in cases:
        proc = subprocess.run([sys.executable, "-m", "kinema", "generate", PROMPT, "-o", str(tmp_path / "x.npy"), *extra],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (extra, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (extra, proc.stderr)
    assert not (tmp_path / "x.npy").exists()
