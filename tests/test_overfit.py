"""Each denoiser family overfits one Shapes clip with its caption (issue: denoisers).

The real pieces end to end: the Shapes renderer, the MiniLM text encoder, the flow-matching
Denoiser loss of kinema.diffusion. The loss on a fixed evaluation set of (noise, sigma)
must fall at least 10x; on this 2-core CPU it takes well under a minute.
"""

import pytest
import torch

from kinema.diffusion.denoiser import Denoiser
from kinema.diffusion.schedules import FlowSchedule
from kinema.media import frames_to_tensor
from kinema.models.dit import DiTConfig, VideoDiT
from kinema.models.text import MiniLMEncoder
from kinema.models.unet3d import UNet3D, UNet3DConfig
from kinema.world.render import render
from kinema.world.scene import parse_caption

CAPTION = "a large red square moving right on a black background"

NETS = {
    "dit": lambda: VideoDiT(DiTConfig(in_channels=3, patch_size=(1, 2, 2), dim=64, ffn_dim=128, heads=2,
                                      depth=2, text_dim=384, freq_dim=64)),
    "unet3d": lambda: UNet3D(UNet3DConfig(in_channels=3, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                                          attention_levels=(1,), head_dim=16, groups=8, text_dim=384)),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(NETS))
def test_denoiser_overfits_one_shapes_clip_with_its_caption(family):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    clip = render(parse_caption(CAPTION), frames=5, size=(16, 16), rng=0).video
    x0 = frames_to_tensor(clip)[None]  # (1, 3, 5, 16, 16)
    context, mask = MiniLMEncoder().encode([CAPTION])
    denoiser = Denoiser(NETS[family](), FlowSchedule(), "flow")
    g = torch.Generator().manual_seed(1)
    eval_noise, eval_sigma = torch.randn((8, *x0.shape[1:]), generator=g), torch.rand(8, generator=g)

    def eval_loss() -> float:
        with torch.no_grad():
            return denoiser.loss(x0.expand(8, -1, -1, -1, -1), eval_noise, eval_sigma,
                                 context=context.expand(8, -1, -1), context_mask=mask.expand(8, -1)).mean().item()

    start = eval_loss()
    opt = torch.optim.AdamW(denoiser.parameters(), lr=2e-3)
    best = start
    for step in range(300):
        noise, sigma = torch.randn((4, *x0.shape[1:]), generator=g), torch.rand(4, generator=g)
        loss = denoiser.loss(x0.expand(4, -1, -1, -1, -1), noise, sigma,
                             context=context.expand(4, -1, -1), context_mask=mask.expand(4, -1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24:
            best = min(best, eval_loss())
            if best < start / 10:
                break
    assert best < start / 10, f"{family}: eval loss {start:.4f} -> {best:.4f}"
