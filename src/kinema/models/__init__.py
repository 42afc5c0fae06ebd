"""Networks, one file per family: vae3d, unet3d, dit, text."""
