"""Where kinema's shipped default model lives once it is trained and packaged.

The default is a pipeline dir (kinema.train.export): the denoiser with its `model.json`,
and the VAE it was trained with in `vae/`. Nothing here is loaded on import; commands
check that the directories exist and say so in one line when they do not.
"""

from pathlib import Path

DEFAULT_PIPELINE_DIR = Path(__file__).parent / "default"
DEFAULT_VAE_DIR = DEFAULT_PIPELINE_DIR / "vae"
# The default model guidance-distilled (configs/default-t2v-distill.toml): its own pipeline
# dir that shares the default VAE (model.json names "../vae"); `--fast` on the commands.
DEFAULT_FAST_PIPELINE_DIR = DEFAULT_PIPELINE_DIR / "fast"
# The cascade's upscalers (kinema.tasks.upscale), trained by configs/upscale-*.toml.
DEFAULT_SPATIAL_UPSCALER_DIR = DEFAULT_PIPELINE_DIR / "upscale-spatial"
DEFAULT_TEMPORAL_UPSCALER_DIR = DEFAULT_PIPELINE_DIR / "upscale-temporal"
