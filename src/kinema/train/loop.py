"""The training loop: one function, read top to bottom (DESIGN rule 10).

`train(config, run_dir)` builds the network, objective, optimizer and EMA, optionally
resumes from the run's latest checkpoint, then for every step: lr, loss (with gradient
accumulation), backward, clip, step, EMA, log, hooks, checkpoint; and at the end writes
`final/`. Everything a step depends on is a function of (seed, step, rank) or lives in the
checkpoint, so a killed run resumed with `resume=True` ends with the same weights, bit for
bit on CPU, as one that was never interrupted.

Run directory:
    config.json          the resolved run config (kinema.train.config.RunConfig)
    metrics.jsonl        one JSON object per log step (monitor.MetricsLog)
    loss.png             the loss curve, redrawn at every checkpoint
    checkpoints/step-*/  training checkpoints (state.py), the newest `keep_checkpoints`
    samples/step-*.gif   sample grids of the EMA model (diffusion runs, sample_every)
    final/               the exported model (export.py)
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from kinema.config import Config
from kinema.errors import KinemaError
from kinema.fileio import atomic_write_text
from kinema.train import distributed
from kinema.train.config import RUN_CONFIG_FILE, OptimSpec, RunConfig, model_family
from kinema.train.data import TrainBatches, batch_loader
from kinema.train.ema import EMA
from kinema.train.monitor import MetricsLog, Progress, plot_loss_curve
from kinema.train.objectives import DiffusionObjective, VAEObjective, build_objective
from kinema.train.state import capture_rng, checkpoint_dirs, latest_checkpoint, load_checkpoint, restore_rng, save_checkpoint

if TYPE_CHECKING:
    from kinema.train.cache import LatentCache


def lr_at(step: int, optim: OptimSpec, total_steps: int) -> float:
    """Linear warmup over `warmup_steps`, then a half cosine from lr down to min_lr_ratio * lr
    at the last step (Loshchilov & Hutter 2017, SGDR without restarts). Step 0 already has a
    non-zero lr, lr / warmup_steps, so no step is wasted."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    progress = (step - optim.warmup_steps) / max(1, total_steps - 1 - optim.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return optim.lr * (optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * cosine)


def build_network(family: str, config: Config, grad_checkpointing: bool = False) -> nn.Module:
    """The network of `config`; gradient checkpointing is a field of the model's config."""
    _, network_cls, _ = model_family(family)
    if grad_checkpointing:
        if not hasattr(config, "gradient_checkpointing"):
            raise KinemaError(f"train.grad_checkpointing is set but {family} networks do not support it")
        config = config.replace(gradient_checkpointing=True)
    return network_cls(config)


def make_optimizer(net: nn.Module, optim: OptimSpec) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and kernels only: decaying biases and norm gains
    pulls them to zero for no regularising benefit (the nanoGPT / minGPT split)."""
    params = [p for p in net.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": optim.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps)


def _config_changes(saved: dict, current: dict, prefix: str = "") -> list[str]:
    changes = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += _config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}")
    return changes


def train(config: RunConfig, run_dir: str | Path, *, resume: bool = False, progress: bool | None = None) -> Path:
    """Train (or, with `resume`, continue training) in `run_dir`; returns `run_dir/final`.

    `progress`: redraw a progress line on stderr every step (default: when stderr is a
    terminal); otherwise one line per log interval. Under torchrun every rank calls this.
    """
    t = config.train
    run_dir = Path(run_dir)
    dist = distributed.setup(t.device)
    device = dist.device
    try:
        resolved = config.resolved()
        model_config = resolved.model.resolve()

        # Every rank seeds alike, so every rank starts from the same weights.
        torch.manual_seed(t.seed)
        net = build_network(resolved.model.family, model_config, t.grad_checkpointing).to(device)
        if resolved.model.init is not None and not resume:  # a resumed run's checkpoint has its weights
            from kinema.checkpoint import load_initial_weights

            load_initial_weights(net, resolved.model.init, model_config)
        objective = build_objective(resolved, device)
        objective.check_network(model_config)
        if isinstance(objective, DiffusionObjective):
            objective.attach_teacher(resolved.model.family, model_config)
        optimizer = make_optimizer(net, config.optim)
        ema = EMA(net, t.ema_decay)

        start = 0
        if resume:
            ckpt = latest_checkpoint(run_dir)
            if ckpt is None:
                raise KinemaError(f"--resume: {run_dir} has no checkpoint to resume from")
            resumed = load_checkpoint(ckpt, model=net, ema=ema, optimizer=optimizer, model_config=model_config.to_dict())
            start = resumed.step
            changed = _config_changes(resumed.run_config, resolved.to_dict())
            if changed and dist.is_main:
                print(f"kinema train: resuming with a changed config: {', '.join(changed)}", file=sys.stderr)
        elif checkpoint_dirs(run_dir):
            raise KinemaError(f"{run_dir} already holds checkpoints; pass --resume to continue that run, or choose another --out")

        log = None
        if dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / RUN_CONFIG_FILE, resolved.to_json())
            log = MetricsLog(run_dir, start)
            params = sum(p.numel() for p in net.parameters())
            print(f"kinema train: {resolved.model.family} with {params / 1e6:.2f}M parameters, steps {start}..{t.steps}, "
                  f"batch {t.batch_size} on {dist.world_size} x {device}, run dir {run_dir}", file=sys.stderr)

        # DDP averages gradients over ranks during backward; `net` stays the bare module
        # that the optimizer, EMA and checkpoints see. Parameters may sit out a step (the
        # U-Net's temporal layers on image batches, text layers when every caption is
        # dropped), hence find_unused_parameters: a parameter unused on every rank keeps
        # grad None, as in one process, and AdamW leaves it alone.
        model = net
        if dist.enabled:
            model = nn.parallel.DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
            )
        batches = TrainBatches(resolved.data, seed=t.seed, batch_size=t.batch_size, grad_accum=t.grad_accum,
                               rank=dist.rank, world_size=dist.world_size, cache=objective_cache(resolved, objective, dist))
        micro_batches = iter(batch_loader(batches, start, t.steps, resolved.data.workers, pin=device.type == "cuda"))
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if t.bf16 else contextlib.nullcontext()
        bar = Progress(t.steps, start, tty=progress) if dist.is_main else None
        ema_net = None  # built when a sampling hook first needs it
        if resume:
            # Global RNG states (dropout; anything not seeded per sample) continue per rank.
            # Restored last, after the DataLoader iterator has drawn its base seed, so the
            # state is the one the uninterrupted run had at this step.
            restore_rng(resumed.rng[dist.rank if len(resumed.rng) == dist.world_size else 0])
        net.train()
        window_start, window_steps = time.perf_counter(), 0

        for step in range(start, t.steps):
            # lr: a pure function of the step, so resuming needs no scheduler state.
            lr = lr_at(step, config.optim, t.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # loss, with gradient accumulation: each micro-batch's mean loss is divided by the
            # number of micro-batches, so the summed gradient is that of the whole batch's mean.
            # DDP all-reduces only on the last micro-batch (no_sync before it).
            loss_sum = torch.zeros((), device=device)
            parts_sum: dict[str, torch.Tensor] = {}
            for micro in range(t.grad_accum):
                # Inputs (VAE latents, text states) are made outside autocast: in float32,
                # as the cache would hold them, whatever the training precision.
                inputs = objective.prepare(next(micro_batches))
                sync = micro == t.grad_accum - 1 or not dist.enabled
                with contextlib.nullcontext() if sync else model.no_sync():
                    with autocast:
                        loss, parts = objective.loss(model, inputs)
                    # backward
                    (loss / t.grad_accum).backward()
                loss_sum += loss.detach() / t.grad_accum
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0) + v.float() / t.grad_accum

            # clip: the total gradient norm is logged even when clipping is off (grad_clip 0).
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), t.grad_clip if t.grad_clip > 0 else math.inf)

            # step
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            # EMA, in float32, after the step it averages.
            ema.update(net, step)

            # log: the loss is averaged over ranks (a collective, so every rank takes part).
            done = step + 1
            window_steps += 1
            if t.log_every and (done % t.log_every == 0 or done == t.steps):
                mean_loss = distributed.mean_over_ranks(float(loss_sum), dist)
                parts_mean = {k: distributed.mean_over_ranks(float(v), dist) for k, v in parts_sum.items()}
                if dist.is_main:
                    now = time.perf_counter()
                    rate = window_steps / (now - window_start)
                    log.write({"step": done, "loss": mean_loss, "lr": lr, "grad_norm": float(grad_norm),
                               "steps_per_s": rate, "time": time.time(), **parts_mean})
                    bar.update(done, mean_loss, force=True)
                window_start, window_steps = time.perf_counter(), 0
            elif bar is not None:
                bar.update(done)

            # hooks: sample GIFs and Shapes validation with the EMA weights (rank 0 only; the
            # other ranks wait for it at the next gradient all-reduce).
            sample_now = t.sample_every and done % t.sample_every == 0
            validate_now = t.validate_every and done % t.validate_every == 0
            if dist.is_main and config.objective == "diffusion" and (sample_now or validate_now):
                from kinema.train import validate

                if ema_net is None:
                    with torch.random.fork_rng(devices=[]):  # its throwaway init must not draw from the run's RNG
                        ema_net = build_network(resolved.model.family, model_config).to(device).eval()
                ema.copy_to(ema_net)
                if sample_now:
                    validate.write_samples(run_dir / "samples" / f"step-{done:08d}.gif", ema_net, objective, resolved.data, config.sample)
                if validate_now:
                    log.write({"step": done, **validate.shapes_pass_rates(ema_net, objective, resolved.data, config.sample)})

            # checkpoint: every rank's RNG state is gathered, rank 0 writes (atomically).
            if (t.checkpoint_every and done % t.checkpoint_every == 0) or done == t.steps:
                rng = distributed.gather_objects(capture_rng(), dist)
                if dist.is_main:
                    save_checkpoint(
                        run_dir, done, model=net, ema=ema, optimizer=optimizer, model_config=model_config.to_dict(),
                        run_config=resolved.to_dict(), rng=rng, keep=t.keep_checkpoints,
                        lr_schedule={"last_lr": lr, "total_steps": t.steps, **config.optim.to_dict()},
                    )
                    plot_loss_curve(log, run_dir)

        if bar is not None:
            bar.close()
        final = run_dir / "final"
        if dist.is_main:
            export_final(final, resolved, model_config, net, ema, objective, batches)
        distributed.barrier(dist)
        return final
    finally:
        distributed.cleanup(dist)


def objective_cache(config: RunConfig, objective: DiffusionObjective | VAEObjective, dist: distributed.DistInfo) -> LatentCache | None:
    """The latent/text cache of `data.cache`, built first if it is missing (all ranks help)."""
    if config.data.cache is None:
        return None
    from kinema.train.cache import open_cache

    return open_cache(config, objective, dist)


def export_final(path: Path, config: RunConfig, model_config: Config, net: nn.Module, ema: EMA,
                 objective: DiffusionObjective | VAEObjective, batches: TrainBatches) -> Path:
    """Write `final/` (export.py): the VAE with measured latent statistics, the upscaler dir
    (kinema.tasks.upscale), or the pipeline dir."""
    if config.objective == "upscale":
        from kinema.tasks.upscale import Upscaler, UpscalerConfig

        u = config.upscale
        stage = UpscalerConfig(mode=u.mode, schedule=objective.schedule.to_dict(), prediction=u.prediction,
                               residual_scale=u.residual_scale, noise_aug=u.noise_aug, sampler=u.sampler, steps=u.steps,
                               temporal_base=u.temporal_base)
        return Upscaler(stage, net, objective.schedule).save(path, ema.state_dict())
    if config.objective == "vae":
        from kinema.checkpoint import save_component
        from kinema.models.vae3d import measure_latent_stats

        ema_net = ema.copy_to(build_network(config.model.family, model_config).to(objective.device)).eval()
        clips = (batches[j]["x"].to(objective.device) for j in range(config.vae.stats_batches))
        mean, std = measure_latent_stats(ema_net, clips)
        stats_config = model_config.replace(latent_mean=mean, latent_std=std)
        return save_component(path, stats_config, net.state_dict(), ema.state_dict())
    from kinema.train.export import PipelineConfig, export_pipeline

    d, s = config.diffusion, config.sample
    pipeline = PipelineConfig(
        network=config.model.family, schedule=objective.schedule.to_dict(), prediction=d.prediction,
        text_encoder=d.text_encoder, frames=config.data.frames, height=config.data.height, width=config.data.width,
        sampler=s.sampler, steps=s.steps, guidance=s.guidance,
    )
    return export_pipeline(path, pipeline, network_config=model_config, weights=net.state_dict(), ema=ema.state_dict(), vae=objective.vae)
