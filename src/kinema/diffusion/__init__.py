"""The diffusion core: noise paths and schedules, the denoiser contract, samplers, guidance.

A noise level is a std `sigma` on a path x = alpha(sigma) * x0 + sigma * eps (VP or
rectified flow). `schedules` turns a training schedule into sampling grids (a 1-D tensor of
sigmas), `denoiser.Denoiser` turns any network into D(x, sigma, **cond) -> x0_hat and owns
the loss, `samplers` are pure functions over that contract, `guidance` wraps denoisers and
`density` draws training noise levels. Import the submodules directly; this package
imports nothing heavy.
"""
