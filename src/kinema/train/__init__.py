"""kinema's one training system.

A run is a TOML file (`config.py`) naming a model, its data, its objective and the
optimizer. `loop.train` reads top to bottom as lr, loss, backward, clip, step, EMA, log,
checkpoint. Around it, one job per module: what a step computes for a diffusion denoiser or
a VAE (`objectives.py`), batches as a pure function of (seed, step, rank) (`data.py`), the
optional latent/text cache (`cache.py`), float32 EMA weights (`ema.py`), atomic strict
training checkpoints (`state.py`), the metrics log, progress line and loss curve
(`monitor.py`), sample GIFs and Shapes validation (`validate.py`), the final model or
pipeline directory (`export.py`), and torchrun process groups (`distributed.py`).
Nothing here is imported by `import kinema`.
"""
