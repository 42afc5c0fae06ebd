"""Tasks: thin functions composing a pipeline's components (DESIGN rule 4). No task has its
own sampling loop: each builds wrappers around one denoiser and calls one sampler."""
