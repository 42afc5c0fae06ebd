"""For the benchmarks: the default model's pipeline dir, or a stand-in of its architecture.

Time and memory do not depend on the weights, so benchmarks of speed and memory run before
the default model is trained on a randomly initialized pipeline of its exact architecture:
the denoiser of configs/default-t2v.toml (a 3D U-Net since 2026-12-02; random weights, its
zero-initialized layers get small random values so that samples are not all equal), the shipped default VAE, the MiniLM text
encoder, the schedule and sampler settings of the config. Quality benchmarks need the
trained model and say so.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_CONFIG = "configs/default-t2v.toml"


def default_model_dir() -> Path | None:
    """The shipped default pipeline dir, if it has been trained and packaged."""
    from kinema.weights import DEFAULT_PIPELINE_DIR

    return DEFAULT_PIPELINE_DIR if (DEFAULT_PIPELINE_DIR / "model.json").is_file() else None


def export_random_default(path: str | Path, config_path: str = DEFAULT_CONFIG, *, seed: int = 0,
                          overrides: dict | None = None) -> Path:
    """Write a pipeline dir with the default model's architecture and random denoiser weights
    to `path`; `overrides` change the network config (e.g. a tiny one for tests)."""
    import torch

    from kinema.models.registry import model_family
    from kinema.models.vae3d import VAE3D
    from kinema.pipeline import PipelineConfig
    from kinema.train.config import load_run_config
    from kinema.train.export import export_pipeline

    run = load_run_config(config_path)
    d, s = run.diffusion, run.sample
    torch.manual_seed(seed)
    config = run.model.resolve()
    if overrides:
        config = config.replace(**overrides)
    net = model_family(run.model.family)[1](config)
    with torch.no_grad():
        for param in net.parameters():
            if param.ndim > 1 and not param.any():
                param.normal_(0, 0.02)
    vae = VAE3D.load(d.vae, ema=True) if d.vae else None
    pipeline = PipelineConfig(
        network=run.model.family, schedule=d.build_schedule().to_dict(), prediction=d.prediction,
        text_encoder=d.text_encoder, frames=run.data.frames, height=run.data.height, width=run.data.width,
        sampler=s.sampler, steps=s.steps, guidance=s.guidance,
    )
    state = net.state_dict()
    return export_pipeline(Path(path), pipeline, network_config=config, weights=state, ema=state, vae=vae)


def model_or_default(model: str | None, scratch: str | Path) -> tuple[str, str]:
    """(pipeline dir, what its weights are): `model` if given, else the shipped default model,
    else a random pipeline of the default architecture exported under `scratch`."""
    if model is not None:
        return model, "given"
    found = default_model_dir()
    if found:
        return str(found), "default model"
    return str(export_random_default(Path(scratch) / "model")), "random, default architecture"
