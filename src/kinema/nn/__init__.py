"""Network primitives shared by kinema's denoisers (DiT, 3D U-Net) and other networks.

Submodules, imported explicitly by their users so `import kinema.nn` stays cheap:
`attention` (one SDPA call, masks, the Attention layer), `rope` (factorized 3D rotary
position embedding), `embeddings` (sinusoidal timestep embedding), `norms` (FP32 LayerNorm,
RMSNorm, adaLN `modulate`).
"""
