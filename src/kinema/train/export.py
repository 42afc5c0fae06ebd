"""The final directory of a run: what `kinema generate --model DIR` (or a diffusion run's
`diffusion.vae`) loads.

VAE run, `RUN/final/` is a component dir (kinema.checkpoint) whose config carries the
latent statistics measured on the training data with the EMA weights, so `encode` returns
unit-scale latents (DESIGN rule 9):

    config.json  model.safetensors  ema.safetensors

Diffusion run, `RUN/final/` is a pipeline dir (kinema.pipeline describes the layout): the
denoiser network's component dir, a `model.json` that ties it to the rest, and a copy of
the exact VAE weights it was trained on, so the directory is self-contained.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kinema.checkpoint import save_component
from kinema.config import Config
from kinema.errors import KinemaError
from kinema.fileio import atomic_dir
from kinema.pipeline import PIPELINE_FILE, VAE_DIR, Pipeline, PipelineConfig, schedule_from_dict

def export_pipeline(
    path: Path,
    pipeline: PipelineConfig,
    *,
    network_config: Config,
    weights: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor],
    vae: torch.nn.Module | None,
) -> Path:
    """Write a diffusion run's pipeline dir atomically (the whole of it appears at once)."""
    with atomic_dir(path) as tmp:
        save_component(tmp, network_config, weights, ema)
        if vae is not None:
            save_component(tmp / VAE_DIR, vae.config, vae.state_dict())
        pipeline = pipeline.replace(vae=VAE_DIR if vae is not None else None)
        (tmp / PIPELINE_FILE).write_text(pipeline.to_json(), encoding="utf-8")
    return path


STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def release_pipeline(source: Path, dest: Path, *, dtype: str = "float32", **defaults) -> Path:
    """A shippable copy of a pipeline dir: the EMA weights become the only weights.

    A run's final dir keeps both the raw and the EMA weights (training may go on from it);
    a release keeps what inference loads, half the size. `dtype="float16"` stores the
    denoiser's floating-point tensors at half width again (they load back into float32
    modules; the VAE stays float32): the shipped default model must stay small. `defaults`
    overrides model.json's sampling defaults (steps, sampler, guidance, guidance_interval), e.g. with the
    settings a benchmark chose; `shift` sets a flow schedule's shift, which at inference
    only places the sampling grid's levels (training drew its levels with the run's own).
    The source is loaded and checked first, and dest appears whole or not at all.
    """
    if dtype not in STORAGE_DTYPES:
        raise KinemaError(f"release dtype must be one of {', '.join(STORAGE_DTYPES)}, not {dtype!r}")
    store = STORAGE_DTYPES[dtype]
    pipe = Pipeline.load(source, ema=True)
    schedule = dict(pipe.config.schedule)
    if "shift" in defaults:
        if schedule.get("kind") != "flow_schedule":
            raise KinemaError(f"shift applies to a flow schedule; this pipeline's is {schedule.get('kind')!r}")
        schedule["shift"] = float(defaults.pop("shift"))
        schedule_from_dict(schedule)  # checked before anything is written
    config = pipe.config.replace(denoiser=".", vae=VAE_DIR if pipe.vae is not None else None, schedule=schedule, **defaults)
    weights = {k: v.to(store) if v.is_floating_point() else v for k, v in pipe.net.state_dict().items()}
    with atomic_dir(Path(dest)) as tmp:
        save_component(tmp, pipe.net.config, weights)
        if pipe.vae is not None:
            save_component(tmp / VAE_DIR, pipe.vae.config, pipe.vae.state_dict())
        (tmp / PIPELINE_FILE).write_text(config.to_json(), encoding="utf-8")
    return Path(dest)


def main(argv: list[str] | None = None) -> None:
    """python -m kinema.train.export SOURCE DEST [key=value ...]: write a release copy.

    Keys: steps, sampler, guidance, guidance_interval (JSON: [lo, hi] or null), shift (model.json's
    sampling defaults) and dtype (float32 or float16, how the denoiser's weights are stored).
    """
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        raise SystemExit("usage: python -m kinema.train.export SOURCE DEST [steps=N sampler=NAME guidance=G guidance_interval=[LO,HI] shift=S dtype=float16]")
    defaults = {k: json.loads(v) if k not in ("sampler", "dtype") else v for k, v in (a.split("=", 1) for a in args[2:])}
    defaults.update({k: float(defaults[k]) for k in ("guidance", "shift") if k in defaults})  # "2.0", not "2"
    if defaults.get("guidance_interval") is not None:  # guidance_interval=[0.8,1] or null
        defaults["guidance_interval"] = tuple(float(v) for v in defaults["guidance_interval"])
    print(release_pipeline(Path(args[0]), Path(args[1]), **defaults))


if __name__ == "__main__":
    main()
