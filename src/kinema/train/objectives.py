"""What one training step computes, per kind of model.

An objective has two halves, so the loop can run them under different precisions:
`prepare(batch)` moves a micro-batch to the device and turns it into model inputs without
gradients and in float32 (VAE latents, text states); `loss(net, prepared)` runs the network
(under autocast when bf16 is on) and returns a scalar loss and detached parts for the log.
`net` may be the DistributedDataParallel wrapper: objectives only ever call it.

Randomness (caption dropout, noise level, noise) comes from one generator per sample, seeded
by the data (`TrainBatches`): a sample's noise does not depend on which rank or micro-batch
it lands in, so N ranks compute the same loss as one process with the same global batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kinema.config import Config
from kinema.diffusion.denoiser import Denoiser
from kinema.diffusion.density import sample_sigmas
from kinema.diffusion.guidance import ClassifierFree
from kinema.diffusion.samplers import randn
from kinema.errors import KinemaError
from kinema.models.text import MiniLMEncoder, pad_states
from kinema.models.vae3d import VAE3D, vae_loss
from kinema.tasks.conditioning import frame_sigmas, make_cond, sample_task, task_mask
from kinema.train.config import DataSpec, DiffusionSpec, RunConfig, UpscaleSpec, VAESpec


def _generators(seeds: Tensor) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


class DiffusionObjective:
    """x0 = VAE latents (or pixels) of a clip; loss = Denoiser.loss(x0, noise, sigma, text)."""

    def __init__(self, spec: DiffusionSpec, data: DataSpec, device: torch.device) -> None:
        self.spec, self.device = spec, device
        self.schedule = spec.build_schedule()
        self.vae: VAE3D | None = None
        if spec.vae is not None:
            # The EMA weights when the VAE dir has them (a kinema VAE run's final/ does).
            self.vae = VAE3D.load(spec.vae, ema=True).to(device).requires_grad_(False)
            self.vae.config.latent_frames(data.frames)  # a clear error now if T is not 1 + f*k
        self.text = MiniLMEncoder(device=device) if spec.text_encoder == "minilm" else None
        self.teacher: Denoiser | None = None  # built by attach_teacher, once the network's config is known

    def attach_teacher(self, family: str, config: Config) -> None:
        """Load diffusion.teacher (guidance distillation): a frozen copy of the network, with
        the teacher's weights (EMA where present), in eval mode. Refused when its schedule or
        prediction differ from this run's (the student must learn the same quantity)."""
        if self.spec.teacher is None:
            return
        from kinema.checkpoint import load_initial_weights
        from kinema.pipeline import PIPELINE_FILE, PipelineConfig
        from kinema.train.loop import build_network

        teacher_dir = Path(self.spec.teacher)
        if (teacher_dir / PIPELINE_FILE).is_file():
            p = PipelineConfig.load(teacher_dir / PIPELINE_FILE)
            if p.prediction != self.spec.prediction or p.schedule != self.schedule.to_dict():
                raise KinemaError(f"diffusion.teacher {teacher_dir} predicts {p.prediction} on {p.schedule}; "
                                  f"this run trains {self.spec.prediction} on {self.schedule.to_dict()}")
        net = build_network(family, config).to(self.device)
        load_initial_weights(net, teacher_dir, config, what="diffusion.teacher")
        self.teacher = Denoiser(net.eval().requires_grad_(False), self.schedule, self.spec.prediction)

    @property
    def channels(self) -> int:
        return self.vae.config.latent_channels if self.vae is not None else 3

    def check_network(self, config: Config) -> None:
        """Refuse a network whose input or text width does not fit this objective."""
        if config.in_channels != self.channels:
            where = f"the VAE's {self.channels} latent channels" if self.vae is not None else "3 pixel channels"
            raise KinemaError(f"model in_channels is {config.in_channels} but the data has {where}; set model.overrides.in_channels")
        want = self.channels + 1 if self.spec.tasks else 0
        if getattr(config, "cond_channels", 0) != want:
            why = "diffusion.tasks is set" if want else "diffusion.tasks is not set (nothing would fill them)"
            raise KinemaError(f"model cond_channels is {getattr(config, 'cond_channels', 0)} but must be {want}: {why}; set model.overrides.cond_channels")
        text_dim = getattr(config, "text_dim", None)
        if self.text is not None and text_dim != self.text.dim:
            raise KinemaError(f"model text_dim is {text_dim} but the {self.spec.text_encoder} text encoder gives {self.text.dim}; set model.overrides.text_dim")

    @torch.no_grad()
    def encode_video(self, video: Tensor) -> Tensor:
        """Pixels (B, 3, T, H, W) in [-1, 1] -> x0: normalized latents, or the pixels."""
        return self.vae.encode(video) if self.vae is not None else video

    @torch.no_grad()
    def prepare(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Micro-batch -> {"x0": (B, C, T, H, W) float32, "gens": one generator per sample,
        and with text "context" (B, L, D), "context_mask" (B, L)}."""
        if "latents" in batch:  # precomputed by the cache
            x0 = batch["latents"].to(self.device, non_blocking=True)
        else:
            x0 = self.encode_video(batch["x"].to(self.device, non_blocking=True))
        gens = _generators(batch["seeds"])
        # Caption dropout: "" is the null condition (kinema.models.text), decided per sample.
        keep = [bool(torch.rand((), generator=g) >= self.spec.caption_dropout) for g in gens]
        captions = [c if k else "" for c, k in zip(batch["captions"], keep)]
        out: dict[str, Any] = {"x0": x0.float(), "gens": gens, "tasks": batch.get("tasks") or [None] * len(gens)}
        if self.text is not None:
            cached = batch.get("text_states")
            if cached is not None:
                rows = [s.to(self.device) if k and s is not None else None for s, k in zip(cached, keep)]
                out["context"], out["context_mask"] = pad_states(rows, self.text.dim, self.device)
            else:
                out["context"], out["context_mask"] = self.text.encode(captions)
        return out

    def loss(self, net: nn.Module, prepared: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        x0, gens = prepared["x0"], prepared["gens"]
        s = self.spec
        frames = x0.shape[2] if s.per_frame_noise else None
        sigma = torch.cat([
            sample_sigmas(self.schedule, 1, kind=s.density, frames=frames, mean=s.density_mean, std=s.density_std, generator=g)
            for g in gens
        ]).to(self.device)  # (B,) or (B, T) float64
        noise = randn(x0.shape, generator=gens, dtype=x0.dtype, device=self.device)
        cond = {k: prepared[k] for k in ("context", "context_mask") if k in prepared}
        weight = None
        if s.tasks:
            sigma, cond["cond"], weight = self._task_inputs(x0, noise, sigma, gens, prepared["tasks"])
        teacher = self._guided_teacher(cond) if self.teacher is not None else None
        per_sample = Denoiser(net, self.schedule, s.prediction).loss(
            x0, noise, sigma, loss_weight=weight, min_snr_gamma=s.min_snr_gamma, teacher=teacher, **cond
        )  # (B,)
        loss = per_sample.mean()
        return loss, {"mse": loss.detach()}

    def _guided_teacher(self, cond: dict[str, Tensor]) -> ClassifierFree:
        """The teacher as the sampler would guide it: the null condition is the no-text
        states (all tokens masked, as caption dropout makes them); known content (`cond`)
        stays in both branches."""
        uncond = dict(cond, context=torch.zeros_like(cond["context"]), context_mask=torch.zeros_like(cond["context_mask"]))
        return ClassifierFree(self.teacher, self.spec.teacher_guidance, cond, uncond, interval=self.spec.teacher_interval)

    def _task_inputs(self, x0: Tensor, noise: Tensor, sigma: Tensor, gens: list[torch.Generator],
                     tasks: list[dict[str, float] | None]):
        """One task per sample (kinema.tasks.conditioning), drawn from its source's task
        weights where it has them, else diffusion.tasks: per-frame sigmas (B, t), the cond
        channels (B, C + 1, t, h, w), and a loss weight that is 1 on unknown latents."""
        t, h, w = x0.shape[2:]
        masks, context = [], []
        for g, weights in zip(gens, tasks):
            masks.append(task_mask(sample_task(weights or self.spec.tasks, g), (t, h, w), g))
            noised = bool(torch.rand((), generator=g) < 0.5)
            context.append(float(torch.rand((), generator=g, dtype=torch.float64)) * self.spec.context_noise * noised)
        mask = torch.stack(masks).to(self.device)  # (B, 1, t, h, w)
        context_sigma = torch.tensor(context, dtype=torch.float64, device=self.device)  # (B,)
        known = self.schedule.path.add_noise(x0, noise, context_sigma)  # the context as the sampler will see it
        return frame_sigmas(sigma, mask, context_sigma), make_cond(known, mask), 1.0 - mask


class VAEObjective:
    """Reconstruction through a posterior sample: kinema.models.vae3d.vae_loss."""

    def __init__(self, spec: VAESpec, data: DataSpec, device: torch.device) -> None:
        self.spec, self.device = spec, device

    def check_network(self, config: Config) -> None:
        if config.in_channels != 3:
            raise KinemaError(f"VAE in_channels is {config.in_channels}; training data is RGB (3 channels)")

    def prepare(self, batch: dict[str, Any]) -> dict[str, Any]:
        if "x" not in batch:
            raise KinemaError("VAE training reads pixels; remove data.cache")
        # One generator per micro-batch for the posterior sample: VAE3D.forward draws the
        # whole batch's noise at once, so (unlike diffusion) this noise depends on the split.
        gen = torch.Generator(self.device).manual_seed(int(batch["seeds"][0]))
        return {"x": batch["x"].to(self.device, non_blocking=True), "gen": gen}

    def loss(self, net: nn.Module, prepared: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        x = prepared["x"]
        recon, mean, logvar = net(x, prepared["gen"])
        total, parts = vae_loss(
            recon.float(), x, mean.float(), logvar.float(),
            l1_weight=self.spec.l1_weight, l2_weight=self.spec.l2_weight, gradient_weight=self.spec.gradient_weight, kl_weight=self.spec.kl_weight,
            chroma_weight=self.spec.chroma_weight,
        )
        return total, parts


class UpscaleObjective:
    """An upscaling stage (kinema.tasks.upscale): x0 = residual_scale * (clip - base), where
    base is the naive upsampling of the clip's degraded, noise-augmented copy; loss =
    Denoiser.loss(x0, noise, sigma, cond=cat(base, mask, level)), on unknown frames only."""

    def __init__(self, spec: UpscaleSpec, data: DataSpec, device: torch.device) -> None:
        self.spec, self.device = spec, device
        self.schedule = spec.build_schedule()

    def check_network(self, config: Config) -> None:
        from kinema.tasks.upscale import COND_CHANNELS

        if config.in_channels != 3 or getattr(config, "cond_channels", 0) != COND_CHANNELS:
            raise KinemaError(f"an upscaling stage needs in_channels 3 and cond_channels {COND_CHANNELS}; "
                              "set model.overrides.in_channels / cond_channels")

    @torch.no_grad()
    def prepare(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Micro-batch -> {"x0": residual (B, 3, T, H, W), "cond": (B, 5, T, H, W), "weight":
        (B, 1, T, H, W) 1 on frames to predict, "gens"}. The scale augmentation, the crop and
        the augmentation level come from each sample's own generator. The stage's inputs are
        made from the whole frame and then cropped, as inference sees them (an optical-flow
        base needs the frame's context; bicubic needs no padding at the crop's border)."""
        from kinema.tasks.upscale import degrade, downscale_space, stage_inputs

        s = self.spec
        if "x" not in batch:
            raise KinemaError("upscale training reads pixels; remove data.cache")
        video = batch["x"].to(self.device, non_blocking=True).float()
        gens = _generators(batch["seeds"])
        parts: list[tuple[Tensor, ...]] = []
        for i, g in enumerate(gens):
            clip = video[i : i + 1]
            if float(torch.rand((), generator=g)) < s.downscale_prob:
                clip = downscale_space(clip)
            h, w = clip.shape[-2:]
            if s.mode == "spatial" and (h % 2 or w % 2):
                raise KinemaError(f"spatial upscaling trains on clips of even size, got {(h, w)}")
            crop = (...,)
            if s.crop is not None:
                top = int(torch.randint(h - s.crop + 1, (), generator=g))
                left = int(torch.randint(w - s.crop + 1, (), generator=g))
                crop = (..., slice(top, top + s.crop), slice(left, left + s.crop))
            noised = float(torch.rand((), generator=g)) < s.noise_aug_prob
            level = torch.tensor([float(torch.rand((), generator=g)) * s.noise_aug_max if noised else 0.0], device=self.device)
            low = degrade(s.mode, clip)
            aug_noise = randn(low.shape, generator=[g], dtype=low.dtype, device=self.device)
            base, cond, mask = stage_inputs(s.mode, low, level, aug_noise, s.temporal_base)
            parts.append(tuple(v[crop] for v in (clip - base, cond, mask)))
        residual, cond, mask = (torch.cat(v) for v in zip(*parts))
        return {"x0": residual * s.residual_scale, "cond": cond, "weight": 1.0 - mask, "gens": gens}

    def loss(self, net: nn.Module, prepared: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        x0, gens, s = prepared["x0"], prepared["gens"], self.spec
        sigma = torch.cat([
            sample_sigmas(self.schedule, 1, kind=s.density, mean=s.density_mean, std=s.density_std, generator=g) for g in gens
        ]).to(self.device)  # (B,) float64
        noise = randn(x0.shape, generator=gens, dtype=x0.dtype, device=self.device)
        per_sample = Denoiser(net, self.schedule, s.prediction).loss(
            x0, noise, sigma, loss_weight=prepared["weight"], cond=prepared["cond"]
        )  # (B,)
        loss = per_sample.mean()
        return loss, {"mse": loss.detach()}


def build_objective(config: RunConfig, device: torch.device) -> DiffusionObjective | VAEObjective | UpscaleObjective:
    if config.upscale is not None:
        return UpscaleObjective(config.upscale, config.data, device)
    if config.diffusion is not None:
        return DiffusionObjective(config.diffusion, config.data, device)
    return VAEObjective(config.vae, config.data, device)
