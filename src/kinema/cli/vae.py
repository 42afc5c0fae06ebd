"""`kinema vae`: use a trained VAE on its own.

  kinema vae reconstruct CLIP -o OUT [--model DIR] [--size HxW] [--frames N] [--json]

reconstruct encodes a clip to latents and decodes it back (the posterior mean, chunk by
chunk so memory does not grow with its length), writes the reconstruction, and prints
its PSNR and SSIM (kinema.eval.metrics) against the input as the VAE saw it (resized to
--size if given). The metrics are those of the reconstruction's 8-bit frames, before OUT's
own encoding: exact for .npy and PNG output, an upper bound for a lossy .mp4 or .gif.
With --json, an exact reconstruction's PSNR (infinite) is written as null.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kinema.cli.arguments import parse_size, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("vae", help="reconstruct clips with a VAE",
                                   description="Use a VAE on its own: reconstruct a clip and measure the loss.")
    commands = parser.add_subparsers(dest="vae_command", metavar="ACTION")
    commands.required = True

    rec = commands.add_parser(
        "reconstruct", help="encode and decode a clip; print PSNR and SSIM",
        description="Encode CLIP with the VAE, decode it, write the reconstruction to OUT and print "
        "its PSNR and SSIM against the input. Clips need 1 + 4k frames (1, 5, 9, 13, 17, ...).",
    )
    rec.add_argument("clip", help="a video file, .npy, image or directory of frames")
    rec.add_argument("-o", "--out", required=True, help="output: .mp4, .gif, .npy or a directory of PNG frames")
    rec.add_argument("--model", metavar="DIR",
                     help="a VAE component dir, or a pipeline dir with a vae/ (default: the shipped default VAE)")
    rec.add_argument("--size", type=parse_size, metavar="HxW",
                     help="resize (centre crop) to HxW first; multiples of 8 (default: the clip's own size)")
    rec.add_argument("--frames", type=positive_int, metavar="N",
                     help="use the first N frames, N = 1 + 4k (default: as many such frames as the clip has)")
    rec.add_argument("--json", action="store_true", help="print psnr, ssim, frames, size and seconds as JSON")
    rec.set_defaults(func=_reconstruct)


def vae_dir(model: str | None) -> Path:
    """The VAE component dir that --model names (a pipeline dir means its vae/)."""
    from kinema.errors import KinemaError
    from kinema.weights import DEFAULT_VAE_DIR

    if model is None:
        if not DEFAULT_VAE_DIR.is_dir():
            raise KinemaError(f"no default VAE is installed (expected {DEFAULT_VAE_DIR}); "
                              "pass --model DIR, e.g. the final/ dir of a VAE training run")
        return DEFAULT_VAE_DIR
    from kinema.pipeline import PIPELINE_FILE, PipelineConfig

    path = Path(model)
    if (path / PIPELINE_FILE).is_file():
        pipe = PipelineConfig.load(path / PIPELINE_FILE)
        if pipe.vae is None:
            raise KinemaError(f"{path} is a pixel-space pipeline: it has no VAE; pass a VAE dir to --model")
        return path / pipe.vae
    return path


def check_frames_arg(asked: int | None, factor: int) -> None:
    """--frames must be 1 + factor*k (checked before the clip is read)."""
    from kinema.errors import KinemaError

    if asked is not None and (asked - 1) % factor:
        accepted = f"1 + {factor}k frames (1, {1 + factor}, {1 + 2 * factor}, {1 + 3 * factor}, ...)"
        raise KinemaError(f"--frames {asked}: the VAE takes {accepted}")


def check_size_arg(size: tuple[int, int] | None, factor: int) -> None:
    """--size must be a multiple of the VAE's spatial factor (checked before the clip is read)."""
    from kinema.errors import KinemaError

    if size is not None and (size[0] % factor or size[1] % factor):
        raise KinemaError(f"--size {size[0]}x{size[1]}: height and width must be multiples of {factor} for this VAE")


def pick_frames(available: int, asked: int | None, factor: int) -> int:
    """How many frames to reconstruct: `asked` (see check_frames_arg), or else the most
    1 + factor*k frames the clip has."""
    from kinema.errors import KinemaError

    check_frames_arg(asked, factor)
    if asked is not None:
        if asked > available:
            raise KinemaError(f"--frames {asked}: the clip has only {available} frames")
        return asked
    return 1 + (available - 1) // factor * factor


def _reconstruct(args: argparse.Namespace) -> int:
    import json
    import sys
    import time

    import torch

    from kinema.eval.metrics import psnr, ssim
    from kinema.media import check_output_path, frames_to_tensor, probe, read_frames, tensor_to_frames, write_video
    from kinema.models.vae3d import VAE3D

    check_output_path(args.out)  # fail before any work
    device = "cuda" if torch.cuda.is_available() else "cpu"
    vae = VAE3D.load(vae_dir(args.model)).to(device)
    factor = vae.config.temporal_factor
    check_frames_arg(args.frames, factor)
    check_size_arg(args.size, vae.config.spatial_factor)
    frames = read_frames(args.clip, count=args.frames, size=args.size)
    count = pick_frames(len(frames), args.frames, factor)
    if count < len(frames):
        print(f"kinema: using the first {count} of {len(frames)} frames (the VAE takes 1 + {factor}k frames)",
              file=sys.stderr)
        frames = frames[:count]

    start = time.perf_counter()
    with torch.no_grad():
        x = frames_to_tensor(frames)[None].to(device)  # (1, 3, T, H, W) in [-1, 1]
        recon = vae.decode(vae.encode(x, chunk_latents=1), chunk_latents=1)[0]  # (3, T, H, W)
    if device == "cuda":
        torch.cuda.synchronize()  # kernels run asynchronously: wait before reading the clock
    seconds = time.perf_counter() - start
    recon_frames = tensor_to_frames(recon)  # uint8 (T, H, W, 3): what OUT holds

    # Metrics before writing: SSIM refuses frames under 11x11, and then nothing is written.
    report = {"psnr": psnr(frames, recon_frames), "ssim": ssim(frames, recon_frames),
              "frames": count, "size": list(frames.shape[1:3]), "seconds": round(seconds, 3)}
    path = write_video(args.out, recon_frames, fps=probe(args.clip)["fps"] or 8.0)
    report["out"] = str(path)
    if args.json:
        report["psnr"] = None if report["psnr"] == float("inf") else report["psnr"]  # JSON has no inf
        print(json.dumps(report, indent=2))
    else:
        h, w = report["size"]
        print(f"{path}\nPSNR {report['psnr']:.2f} dB  SSIM {report['ssim']:.4f}  "
              f"({count} frames at {h}x{w}, {seconds:.2f} s)")
    return 0
