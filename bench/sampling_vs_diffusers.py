"""Guided sampling time per clip: kinema against diffusers, same video DiT, same evaluations.

Issue "Benchmarks: kinema against diffusers and video-diffusion-pytorch": diffusers spends
most of a tiny Wan-style clip in its fp32 decode; target: kinema >= 1.5x diffusers end to
end (sampling + VAE decode) at an equal number of denoiser evaluations.

Both sides run the same network with the same weights: the kinema video DiT geometry
(configs/t2v-dit-4x.toml: dim 256, 8 blocks, 4 heads, patch (1, 4, 4), 384-wide text; the
default model itself is a 3D U-Net since 2026-12-02, which diffusers has no counterpart of) as
diffusers' `WanTransformer3DModel` and as kinema's `VideoDiT`, loaded from the Wan model's
state dict through `DIFFUSERS_RENAMES` (as tests/test_dit.py does). The weights are random
(no trained default DiT is shipped; time does not depend on the values). The default
model's 17 known-content input channels are left out (cond_channels = 0) because diffusers'
text-to-video pipeline has no such input; they would only widen the patch embedding.

Each side samples the way its library does, with classifier-free guidance at the same scale
and the same Euler steps on the flow schedule (shift 1):
  diffusers  `WanPipeline` with `FlowMatchEulerDiscreteScheduler`, given the text states
             (prompt_embeds / negative_prompt_embeds, so no text encoder runs); it evaluates
             the conditional and unconditional branches as two batch-1 calls per step.
  kinema     `kinema.tasks.t2v.sample_latents` / `text_to_video` with the euler sampler on a
             `Pipeline` whose text encoder hands back the same states; it evaluates both
             branches in one batch-2 call per step.
Both do steps * 2 evaluations of one sample. Both get the same S text tokens (Wan's own
pipeline would pad to 512; here it does not, which favours diffusers). Starting from the
same noise, both end at the same latents (max |diff| is reported as a check).

End to end adds the VAE decode of latents (B, 16, 5, 16, 16) to a clip (B, 3, 17, 64, 64):
kinema's default VAE (src/kinema/weights/default/vae) against diffusers' `AutoencoderKLWan`
with the same layout and the same trained weights (the layouts match; kinema's extra
linear `coarse` path, which diffusers has no counterpart for, is left out on the diffusers
side), decoded as each pipeline does it (diffusers: un-normalize, decode, postprocess to a
tensor; kinema: `Pipeline.decode`). Decode alone is timed too.

Every variant is timed alternately (kinema, diffusers, kinema, ...) after one warm-up of
each, in one process, so both see the same load on the machine; medians are reported and
speedup = diffusers median / kinema median.

    python bench/sampling_vs_diffusers.py [--steps 20] [--repeats 5] [--threads 2] [--out docs/sampling_vs_diffusers.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from kinema.diffusion.schedules import FlowSchedule
from kinema.models.dit import DIFFUSERS_RENAMES, VideoDiT
from kinema.models.vae3d import VAE3D
from kinema.pipeline import Pipeline, PipelineConfig
from kinema.tasks.t2v import sample_latents, text_to_video
from kinema.train.config import load_run_config
from kinema.weights import DEFAULT_VAE_DIR

from benchio import emit_json

PROMPT = "a large red circle moving right on a black background"


class FixedText:
    """A stand-in text encoder: the same precomputed states for a prompt and for "", so both
    sides condition on identical inputs and no encoder time is counted on either side."""

    def __init__(self, cond: torch.Tensor, uncond: torch.Tensor) -> None:
        self.cond, self.uncond, self.dim = cond, uncond, cond.shape[-1]

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, dim) states and (B, S) bool mask, all tokens real."""
        states = torch.cat([self.uncond if not p.strip() else self.cond for p in prompts])
        return states, torch.ones(states.shape[:2], dtype=torch.bool)


def build_dit(config_path: str):
    """diffusers' WanTransformer3DModel with the default model's geometry (its own random
    init) and a kinema VideoDiT holding the same weights."""
    from diffusers import WanTransformer3DModel

    cfg = load_run_config(config_path).model.resolve().replace(cond_channels=0)
    torch.manual_seed(0)
    ref = WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.heads, attention_head_dim=cfg.dim // cfg.heads,
        in_channels=cfg.in_channels, out_channels=cfg.output_channels, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.depth, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=cfg.eps,
    ).eval().requires_grad_(False)
    state = {}
    for key, value in ref.state_dict().items():
        key = "." + key
        for old, new in DIFFUSERS_RENAMES:
            key = key.replace(old, new)
        state[key[1:]] = value
    net = VideoDiT(cfg).eval().requires_grad_(False)
    net.load_state_dict(state, strict=True)
    return ref, net


def build_vaes():
    """kinema's default VAE, and diffusers' AutoencoderKLWan with its layout and weights
    (less the coarse path)."""
    from diffusers import AutoencoderKLWan

    vae = VAE3D.load(DEFAULT_VAE_DIR).eval().requires_grad_(False)
    c = vae.config
    if not c.attention_mid:
        raise SystemExit("the default VAE has no middle attention; AutoencoderKLWan always has one")
    ref = AutoencoderKLWan(
        base_dim=c.base_channels, z_dim=c.latent_channels, dim_mult=list(c.channel_mults),
        num_res_blocks=c.num_res_blocks, temperal_downsample=list(c.temporal_downsample),
        latents_mean=list(c.latent_mean or [0.0] * c.latent_channels),
        latents_std=list(c.latent_std or [1.0] * c.latent_channels),
        scale_factor_spatial=c.spatial_factor, scale_factor_temporal=c.temporal_factor,
    ).eval().requires_grad_(False)
    ref.load_state_dict({k: v for k, v in vae.state_dict().items() if not k.startswith("coarse.")}, strict=True)
    return ref, vae


def diffusers_decode(pipe, latents: torch.Tensor) -> torch.Tensor:
    """What WanPipeline does after its loop: un-normalize, decode, postprocess."""
    vae = pipe.vae
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    video = vae.decode(latents / inv_std + mean, return_dict=False)[0]
    return pipe.video_processor.postprocess_video(video, output_type="pt")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(xs: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(xs), 4), "min_s": round(min(xs), 4), "max_s": round(max(xs), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/t2v-dit-4x.toml", help="run config whose [model] is benchmarked")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps (2 denoiser evaluations each)")
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=64, help="clip height and width")
    parser.add_argument("--text-tokens", type=int, default=16, help="S, text tokens per branch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    wan, dit = build_dit(args.config)
    wan_vae, vae = build_vaes()
    text_dim = dit.config.text_dim
    g = torch.Generator().manual_seed(1)
    cond = torch.randn(1, args.text_tokens, text_dim, generator=g)  # (1, S, text_dim)
    uncond = torch.randn(1, args.text_tokens, text_dim, generator=g)

    schedule = FlowSchedule(shift=1.0)
    kpipe = Pipeline(
        config=PipelineConfig(
            network="dit", schedule=schedule.to_dict(), prediction="flow", text_encoder="minilm",
            frames=args.frames, height=args.size, width=args.size, sampler="euler", steps=args.steps,
            guidance=args.guidance,
        ),
        net=dit, schedule=schedule, vae=vae, text=FixedText(cond, uncond),
    )
    dpipe = WanPipeline(
        tokenizer=None, text_encoder=None, vae=wan_vae, transformer=wan,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
    )
    dpipe.set_progress_bar_config(disable=True)
    shape = kpipe.latent_shape(1, args.frames, (args.size, args.size))  # (1, 16, t, h, w)

    def noise(seed: int) -> torch.Tensor:  # = kinema's per-sample draw for seed `seed`
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    def kinema_sample(seed: int) -> torch.Tensor:
        return sample_latents(kpipe, [PROMPT], shape, steps=args.steps, guidance=args.guidance, sampler="euler",
                              seeds=seed)

    def kinema_clip(seed: int) -> torch.Tensor:
        return text_to_video(kpipe, [PROMPT], frames=args.frames, size=(args.size, args.size), steps=args.steps,
                             guidance=args.guidance, sampler="euler", seeds=seed)

    def diffusers_run(seed: int, output_type: str) -> torch.Tensor:
        return dpipe(
            prompt_embeds=cond, negative_prompt_embeds=uncond, height=args.size, width=args.size,
            num_frames=args.frames, num_inference_steps=args.steps, guidance_scale=args.guidance,
            latents=noise(seed), output_type=output_type, return_dict=False,
        )[0]

    latents = noise(0)
    variants = {  # name: (kinema, diffusers), each a function of the repeat's seed
        "sampling": (kinema_sample, lambda s: diffusers_run(s, "latent")),
        "decode": (lambda s: kpipe.decode(latents), lambda s: diffusers_decode(dpipe, latents)),
        "end_to_end": (kinema_clip, lambda s: diffusers_run(s, "pt")),
    }
    times: dict[str, dict[str, list[float]]] = {v: {"kinema": [], "diffusers": []} for v in variants}
    with torch.inference_mode():
        k_lat, d_lat = kinema_sample(0), diffusers_run(0, "latent")  # warm-up, and the agreement check
        latent_diff = float((k_lat - d_lat).abs().max())
        finite = bool(torch.isfinite(k_lat).all() and torch.isfinite(d_lat).all())
        for name, (k, d) in variants.items():
            if name != "sampling":
                k(0), d(0)  # warm-up
        for r in range(args.repeats):
            for name, (k, d) in variants.items():
                times[name]["kinema"].append(_timed(lambda: k(r)))
                times[name]["diffusers"].append(_timed(lambda: d(r)))

    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    result: dict = {
        "config": {
            "dit_config": args.config, "steps": args.steps, "evaluations_per_clip": 2 * args.steps,
            "guidance": args.guidance, "frames": args.frames, "size": [args.size, args.size],
            "latents": list(shape[1:]), "text_tokens": args.text_tokens, "threads": args.threads,
            "repeats": args.repeats, "torch": torch.__version__,
            "diffusers": __import__("diffusers").__version__,
        },
        "parameters_M": {
            "kinema_dit": round(count(dit) / 1e6, 3), "diffusers_dit": round(count(wan) / 1e6, 3),
            "kinema_vae_decoder": round((count(vae.decoder) + count(vae.post_quant_conv)
                                         + (count(vae.coarse) if vae.coarse is not None else 0)) / 1e6, 3),
            "diffusers_vae_decoder": round((count(wan_vae.decoder) + count(wan_vae.post_quant_conv)) / 1e6, 3),
        },
        "check": {"max_abs_latent_diff": latent_diff, "finite": finite},
    }
    print(f"{'variant':<11} {'kinema s':>9} {'diffusers s':>12} {'speedup':>8}")
    for name in variants:
        k, d = summary(times[name]["kinema"]), summary(times[name]["diffusers"])
        speedup = d["median_s"] / k["median_s"]
        result[name] = {"kinema": k, "diffusers": d, "speedup_kinema_over_diffusers": round(speedup, 2)}
        print(f"{name:<11} {k['median_s']:>9.3f} {d['median_s']:>12.3f} {speedup:>7.2f}x")
    for side in ("kinema", "diffusers"):
        share = result["decode"][side]["median_s"] / result["end_to_end"][side]["median_s"]
        result["end_to_end"][f"{side}_decode_share"] = round(share, 3)
    result["target"] = {"end_to_end_speedup_at_least": 1.5,
                        "met": result["end_to_end"]["speedup_kinema_over_diffusers"] >= 1.5}
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
