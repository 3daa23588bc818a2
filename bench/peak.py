"""Matmul peak: the best FLOP/s of large square matmuls per dtype, measured in the same run as the model benches."""

from __future__ import annotations

import time
from typing import Any

import torch

from bench.common import loadavg

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def matmul_flops_per_s(n: int, dtype: torch.dtype, reps: int, device: str = "cpu") -> float:
    """Best-of-``reps`` FLOP/s of an ``n x n @ n x n`` matmul (2 n^3 FLOPs)."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    out = torch.empty(n, n, dtype=dtype, device=device)
    torch.matmul(a, b, out=out)  # warm-up: oneDNN/MKL pick kernels, pages get touched
    best = float("inf")
    for _ in range(reps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def measure_peak(
    sizes: tuple[int, ...] = (2048, 4096),
    reps: int = 5,
    device: str = "cpu",
    dtypes: tuple[str, ...] = ("fp32", "bf16"),
) -> dict[str, Any]:
    """The peak per dtype = the best over sizes and repetitions; per-size figures are kept for the record.

    ``dtypes`` name entries of ``DTYPES``; fp16 is for GPUs (most CPUs have no fast fp16 matmul)."""
    result: dict[str, Any] = {"device": device, "sizes": list(sizes), "reps": reps, "loadavg_before": loadavg()}
    for name in dtypes:
        dtype = DTYPES[name]
        per_size = {str(n): matmul_flops_per_s(n, dtype, reps, device) for n in sizes}
        result[name] = {"peak_flops": max(per_size.values()), "per_size_flops": per_size}
    if "bf16" in result and "fp32" in result:
        result["bf16_over_fp32"] = result["bf16"]["peak_flops"] / result["fp32"]["peak_flops"]
    result["loadavg_after"] = loadavg()
    return result
