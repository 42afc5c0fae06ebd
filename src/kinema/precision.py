"""Inference precision: float32, or bfloat16 where the hardware runs it fast.

`kinema generate --precision auto|bf16|fp32` and `Pipeline.load(..., precision=...)` take a
name; `resolve_precision` turns it into the dtype the denoiser network and the VAE's decoder
compute in. The sampler's state, the schedule and the guidance arithmetic stay float32
whatever the choice (kinema.diffusion.denoiser casts the network's input and output), and
so does the VAE's encoder.

"auto" picks bfloat16 only where it is fast: on CUDA when the GPU supports it, on a CPU when
it has native bf16 instructions (AMX tiles or AVX512-BF16, as torch.cpu reports them) and a
small timed matrix product confirms that bf16 beats float32 here. The probe is there because
the flags alone have misled us: one of the project's machines listed amx_bf16 while torch
ran at its AVX2 level, and there a bf16 DiT forward took 4x as long as a float32 one
(docs/MEASURED.md). Anywhere else "auto" falls back to float32. The answer is computed once
per process and device type.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

from kinema.errors import KinemaError

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads PRECISIONS before loading torch
    import torch

PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")
# What `kinema generate` and the other generating commands use unless told: float32 until the
# default model's Shapes pass rate in bf16 is measured against float32 (then "auto").
DEFAULT_PRECISION = "fp32"
DTYPE_NAMES: dict[str, str] = {"bf16": "bfloat16", "fp32": "float32"}

# bf16 must be at least this much faster than float32 on the probe to be picked by "auto":
# a native bf16 path is 2-4x faster (this CPU's AMX: ~3.5x), an emulated one slower.
PROBE_MIN_SPEEDUP = 1.2
PROBE_SIZE = 384


def _cpu_flag(name: str) -> bool:
    import torch

    check = getattr(torch.cpu, name, None)  # private helpers; absent in some torch builds
    try:
        return bool(check()) if check is not None else False
    except Exception:  # noqa: BLE001 - a failing capability query means "not supported"
        return False


def cpu_has_bf16_instructions() -> bool:
    """Whether this CPU has native bf16 arithmetic (AMX tiles or AVX512-BF16) that torch sees."""
    return _cpu_flag("_is_amx_tile_supported") or _cpu_flag("_is_avx512_bf16_supported")


def _matmul_seconds(dtype: torch.dtype, device: torch.device, n: int = PROBE_SIZE, repeats: int = 3) -> float:
    """The best of `repeats` timings of an n x n x n matrix product in `dtype`."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    a @ b  # warm-up: kernel selection, oneDNN's primitive cache
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


def bf16_probe_speedup(device: torch.device | str = "cpu") -> float:
    """float32 time over bf16 time of a PROBE_SIZE^3 matrix product on `device` (> 1: bf16 faster)."""
    import torch

    device = torch.device(device)
    with torch.no_grad():
        return _matmul_seconds(torch.float32, device) / _matmul_seconds(torch.bfloat16, device)


@functools.lru_cache(maxsize=8)
def _fast_bf16(device_type: str) -> bool:
    import torch

    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return cpu_has_bf16_instructions() and bf16_probe_speedup("cpu") >= PROBE_MIN_SPEEDUP
    return False


def fast_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 inference is supported and faster than float32 on `device` (cached)."""
    import torch

    return _fast_bf16(torch.device(device).type)


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise KinemaError(f"unknown precision {name!r}; expected one of {', '.join(PRECISIONS)}")
    return name


def resolve_precision(name: str, device: torch.device | str = "cpu") -> torch.dtype:
    """The compute dtype for precision `name` on `device`: "fp32" and "bf16" as asked (bf16
    runs wherever torch has kernels for it, fast or not); "auto" bf16 if `fast_bf16`, else
    float32."""
    import torch

    check_precision(name)
    if name == "auto":
        name = "bf16" if fast_bf16(device) else "fp32"
    return getattr(torch, DTYPE_NAMES[name])


def precision_name(dtype: torch.dtype) -> str:
    """"bf16" or "fp32" for a dtype `resolve_precision` returns."""
    import torch

    for name, attr in DTYPE_NAMES.items():
        if getattr(torch, attr) == dtype:
            return name
    raise KinemaError(f"no precision name for {dtype}")
