"""bf16 against fp32 on this CPU: square matrix products and a 3D convolution, side by side.

docs/BENCHMARKS.md row 7 ("bf16 GEMM and conv on this CPU"). What the hardware gives bf16
before any model is involved, so the model figures (bench/dit_forward.py's MFU, the bf16
speedups of bench/precision.py) can be read against it:
  matmul  N x N x N products for each --sizes N, fp32 and bf16: GFLOP/s (2 N^3 FLOPs over
          the median time), the peak bench/dit_forward.py measures its MFU against.
  conv3d  Conv3d 16 -> 16 channels, 3x3x3 kernel, padding 1, on a (1, 16, 7, 64, 64) input
          (the shape of row 7's original probe): fp32, bf16 (contiguous), and bf16 with input
          and weight in channels_last_3d; milliseconds, GFLOP/s (2 FLOPs per
          multiply-add, counted from the output shape), and each bf16 variant's relative
          error against fp32.
Every case runs once per repeat, all cases in turn (fp32, bf16, fp32, bf16, ...), so all see
the same load on the machine; medians of --repeats are reported. A case shorter than about
20 ms is called several times per sample (the count fixed after a warm-up) and its time
divided. Ratios are bf16 over fp32 (speedup: fp32 time over bf16 time). On a CPU without
native bf16 (no AMX or AVX512-BF16, e.g. AVX2 only) bf16 products are emulated and can be 100x
slower: a case whose warm-up call takes over --max-call-s seconds (or would, scaled as N^3 from
the next smaller product) is reported as skipped.

    OMP_NUM_THREADS=1 python bench/cpu_peak.py [--threads 1] [--repeats 9]
                                               [--sizes 512 1024 2048] [--max-call-s 5]
                                               [--out docs/cpu_peak.json]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from pathlib import Path

import torch

from benchio import emit_json
from dit_forward import _timed, cpu_model

CONV_INPUT = (1, 16, 7, 64, 64)
CONV_KERNEL = 3
SAMPLE_S = 0.02  # each timed sample lasts at least about this long


class Case:
    """One timed thing: `fn` called `number` times per sample, `flops` per call. The warm-up
    call (oneDNN builds its primitives on the first) sets `number`; one slower than
    `max_call_s` marks the case skipped (bf16 without native bf16 instructions)."""

    def __init__(self, fn, flops: float, max_call_s: float, predicted_s: float = 0.0) -> None:
        self.fn, self.flops, self.times = fn, flops, []
        if predicted_s > max_call_s:  # not even the warm-up: scaled from a smaller product's
            self.warmup_s, self.skipped, self.number = predicted_s, True, 0
            return
        self.warmup_s = _timed(fn)
        self.skipped = self.warmup_s > max_call_s
        self.number = max(1, math.ceil(SAMPLE_S / max(self.warmup_s, 1e-6)))

    def sample(self) -> None:
        fn, number = self.fn, self.number
        start = time.perf_counter()
        for _ in range(number):
            fn()
        self.times.append((time.perf_counter() - start) / number)

    def row(self) -> dict:
        if self.skipped:
            took = "would take about" if self.number == 0 else "took"
            return {"skipped": f"warm-up call {took} {self.warmup_s:.1f} s (over --max-call-s)"}
        median = statistics.median(self.times)
        return {"median_ms": round(median * 1e3, 3), "min_ms": round(min(self.times) * 1e3, 3),
                "GFLOPs": round(self.flops / median / 1e9, 1), "calls_per_sample": self.number}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=9, help="samples per case; medians are reported")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048], help="N of the N^3 matrix products")
    parser.add_argument("--max-call-s", type=float, default=5.0,
                        help="skip a case whose warm-up call takes longer (default 5)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cases: dict[str, Case] = {}
    extra: dict[str, dict] = {}
    with torch.inference_mode():
        last: dict[str, tuple[int, float]] = {}  # precision -> (N, warm-up s) of the last product
        for n in sorted(args.sizes):
            a, b = torch.randn(n, n), torch.randn(n, n)
            for name, (ai, bi) in (("fp32", (a, b)), ("bf16", (a.bfloat16(), b.bfloat16()))):
                prev_n, prev_s = last.get(name, (n, 0.0))
                case = Case(lambda a=ai, b=bi: a @ b, 2 * n**3, args.max_call_s, prev_s * (n / prev_n) ** 3)
                cases[f"matmul {n} {name}"] = case
                last[name] = (n, case.warmup_s)

        conv = torch.nn.Conv3d(CONV_INPUT[1], CONV_INPUT[1], CONV_KERNEL, padding=CONV_KERNEL // 2).eval()
        x = torch.randn(CONV_INPUT)
        reference = conv(x)
        conv_flops = 2 * reference.numel() * CONV_INPUT[1] * CONV_KERNEL**3
        conv16 = copy.deepcopy(conv).bfloat16()
        conv16_cl = copy.deepcopy(conv16).to(memory_format=torch.channels_last_3d)
        x16 = x.bfloat16()
        x16_cl = x16.contiguous(memory_format=torch.channels_last_3d)
        for name, module, xi in (("conv3d fp32", conv, x), ("conv3d bf16", conv16, x16),
                                 ("conv3d bf16 channels_last_3d", conv16_cl, x16_cl)):
            cases[name] = Case(lambda m=module, xi=xi: m(xi), conv_flops, args.max_call_s)
            if name != "conv3d fp32" and not cases[name].skipped:
                out = module(xi).float()
                extra[name] = {"rel_err_vs_fp32": float(f"{float((out - reference).norm() / reference.norm()):.3g}")}

        for _ in range(args.repeats):
            for case in cases.values():
                if not case.skipped:
                    case.sample()

    rows = {name: case.row() | extra.get(name, {}) for name, case in cases.items()}
    result: dict = {
        "machine": {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "amx_tile": torch.cpu._is_amx_tile_supported(),
                    "avx512_bf16": torch.cpu._is_avx512_bf16_supported()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "repeats": args.repeats,
        "matmul": {},
        "conv3d": {"input": list(CONV_INPUT), "out_channels": CONV_INPUT[1], "kernel": CONV_KERNEL,
                   "padding": CONV_KERNEL // 2, "flops_G": round(conv_flops / 1e9, 4)},
    }

    def line(name: str, row: dict, ratio: float | None = None) -> None:
        if "skipped" in row:
            print(f"{name:<30}  skipped: {row['skipped']}")
        else:
            tail = f"{ratio:>10.2f}x" if ratio is not None else ""
            print(f"{name:<30}{row['median_ms']:>11.3f}{row['GFLOPs']:>10.1f}{tail}")

    def speedup(fp32: dict, bf16: dict) -> float | None:
        if "skipped" in fp32 or "skipped" in bf16:
            return None
        return round(fp32["median_ms"] / bf16["median_ms"], 2)

    print(f"{'case':<30}{'median ms':>11}{'GFLOP/s':>10}{'bf16/fp32':>11}")
    for n in sorted(args.sizes):
        fp32, bf16 = rows[f"matmul {n} fp32"], rows[f"matmul {n} bf16"]
        ratio = speedup(fp32, bf16)
        result["matmul"][str(n)] = {"fp32": fp32, "bf16": bf16, "bf16_speedup": ratio}
        line(f"matmul {n} fp32", fp32)
        line(f"matmul {n} bf16", bf16, ratio)
    fp32 = rows["conv3d fp32"]
    result["conv3d"]["fp32"] = fp32
    line("conv3d fp32", fp32)
    for name, key in (("conv3d bf16", "bf16"), ("conv3d bf16 channels_last_3d", "bf16_channels_last_3d")):
        ratio = speedup(fp32, rows[name])
        result["conv3d"][key] = rows[name] | {"bf16_speedup": ratio}
        line(name, rows[name], ratio)
    if not (result["machine"]["amx_tile"] or result["machine"]["avx512_bf16"]):
        print("note: torch sees no native bf16 on this CPU (no AMX, no AVX512-BF16): bf16 is emulated here")
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
