"""A pipeline: the components a task composes (denoiser network, schedule, VAE, text encoder).

On disk it is a pipeline dir (written by training's export, see kinema.train.export):

    model.json          PipelineConfig: network family, schedule, prediction, text encoder,
                        the VAE's folder (or null for pixel space), default clip and sampler
    config.json  model.safetensors  [ema.safetensors]     the denoiser network
    vae/config.json  vae/model.safetensors                the frozen VAE (latent models)

Loading is strict and every problem is a one-line KinemaError (a missing or corrupt
folder, a config that does not match its weights). `precision` (kinema.precision) sets the
dtype the denoiser network and the VAE's decoder compute in; weights are stored and loaded
as float32 and cast once at load.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from kinema.checkpoint import CheckpointError
from kinema.config import Config, ConfigError
from kinema.errors import KinemaError

if TYPE_CHECKING:
    import torch

PIPELINE_FILE = "model.json"
VAE_DIR = "vae"


@dataclasses.dataclass(frozen=True)
class PipelineConfig(Config):
    """model.json of a pipeline dir. `schedule` is the schedule's own config dict (its
    "kind" names the class in kinema.diffusion.schedules); folders are relative to the
    pipeline dir; frames/height/width/fps are the training clip's, the sampler settings
    the defaults `kinema generate` uses. `guidance_interval` (lo, hi): guide only at noise
    levels lo <= sigma <= hi (kinema.diffusion.guidance.ClassifierFree); None guides every step."""

    kind: ClassVar[str] = "pipeline"

    network: Literal["dit", "unet3d"]
    schedule: dict[str, Any]
    prediction: Literal["eps", "v", "x0", "flow"]
    text_encoder: Literal["minilm", "none"]
    denoiser: str = "."
    vae: str | None = VAE_DIR
    frames: int = 17
    height: int = 64
    width: int = 64
    fps: float = 8.0
    sampler: str = "euler"
    steps: int = 20
    guidance: float = 4.0
    guidance_interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        lo_hi = self.guidance_interval
        if lo_hi is not None and not 0 <= lo_hi[0] <= lo_hi[1]:
            raise ConfigError(f"guidance_interval needs 0 <= lo <= hi, got {list(lo_hi)}")


def schedule_from_dict(data: dict[str, Any]):
    """The schedule object a PipelineConfig.schedule dict describes."""
    from kinema.diffusion.schedules import CosineSchedule, FlowSchedule, VPSchedule

    by_kind = {cls.kind: cls for cls in (VPSchedule, CosineSchedule, FlowSchedule)}
    kind = data.get("kind")
    if kind not in by_kind:
        raise ConfigError(f"unknown schedule kind {kind!r}; expected one of {', '.join(by_kind)}")
    return by_kind[kind].from_dict(data)


@dataclasses.dataclass
class Pipeline:
    """Loaded components. `net` is the raw network (DESIGN rule 1: it knows nothing of the
    parameterization); `denoiser` wraps it into D(x, sigma, **cond) -> x0_hat."""

    config: PipelineConfig
    net: "torch.nn.Module"
    schedule: Any
    vae: "torch.nn.Module | None"
    text: Any  # a kinema.models.text.TextEncoder, or None for an unconditional model

    @property
    def denoiser(self):
        from kinema.diffusion.denoiser import Denoiser

        return Denoiser(self.net, self.schedule, self.config.prediction)

    @property
    def dtype(self) -> "torch.dtype":
        """The dtype the denoiser network computes in (float32, or bfloat16 at precision bf16)."""
        return next(self.net.parameters()).dtype

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels if self.vae is not None else 3

    def latent_shape(self, batch: int, frames: int, size: tuple[int, int]) -> tuple[int, ...]:
        """(B, C, t, h, w) of the clip the sampler works on, with a clear error for a clip
        geometry the VAE cannot take."""
        height, width = size
        if self.vae is None:
            return (batch, 3, frames, height, width)
        vc = self.vae.config
        s = vc.spatial_factor
        if height % s or width % s:
            raise KinemaError(f"this model's VAE needs height and width divisible by {s}; got {height}x{width}")
        try:
            t = vc.latent_frames(frames)
        except KinemaError:
            f = vc.temporal_factor
            raise KinemaError(
                f"this model makes 1 + {f}k frames (e.g. {1 + f * 2}, {1 + f * 4}, {1 + f * 8}); got {frames}"
            ) from None
        return (batch, vc.latent_channels, t, height // s, width // s)

    def decode(self, latents: "torch.Tensor") -> "torch.Tensor":
        """(B, C, t, h, w) latents -> (B, 3, T, H, W) frames in [-1, 1]."""
        video = self.vae.decode(latents) if self.vae is not None else latents
        return video.float().clamp(-1, 1)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", ema: bool = True, precision: str | None = None) -> "Pipeline":
        """Load a pipeline dir. precision: "fp32", "bf16", or "auto" (bf16 where the device runs
        it fast, else fp32; see kinema.precision) for the network and the VAE's decoder; None
        means kinema.precision.DEFAULT_PRECISION."""
        from kinema.models.registry import load_component_dir
        from kinema.precision import DEFAULT_PRECISION, check_precision, resolve_precision

        precision = DEFAULT_PRECISION if precision is None else precision

        check_precision(precision)
        path = Path(path)
        if not path.is_dir():
            raise KinemaError(f"model directory not found: {path}")
        if not (path / PIPELINE_FILE).is_file():
            raise KinemaError(f"{path} is not a kinema pipeline: it has no {PIPELINE_FILE}")
        try:
            config = PipelineConfig.load(path / PIPELINE_FILE)
            schedule = schedule_from_dict(config.schedule)
        except ConfigError as e:
            raise CheckpointError(f"{path / PIPELINE_FILE}: {e}") from None
        _, net = load_component_dir(path / config.denoiser, ema=ema)
        if net.config.kind != config.network:
            raise CheckpointError(f"{path}: model.json names a {config.network} network, its folder holds a {net.config.kind}")
        dtype = resolve_precision(precision, device)
        vae = None
        if config.vae is not None:
            _, vae = load_component_dir(path / config.vae, ema=ema)
            vae = vae.to(device).requires_grad_(False).decoder_to(dtype)
        net = net.to(device=device, dtype=dtype).requires_grad_(False)
        text = None
        if config.text_encoder == "minilm":
            from kinema.models.text import MiniLMEncoder

            text = MiniLMEncoder(device=device)
        return cls(config=config, net=net, schedule=schedule, vae=vae, text=text)
