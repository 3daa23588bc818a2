"""Shared helpers: machine description, load average, timing, JSON I/O, child processes."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARIES = ("torch", "torchvision", "transformers", "webdataset", "sentencepiece", "pillow", "numpy", "peft", "timm")


def loadavg() -> list[float]:
    """The 1/5/15-minute load averages, rounded (always recorded next to a measurement)."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The CPU features that matter for matmul speed (AVX-512, bf16, AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    keep = (
                        "avx2",
                        "fma",
                        "avx512f",
                        "avx512_bf16",
                        "avx512_fp16",
                        "avx512_vnni",
                        "amx_bf16",
                        "amx_tile",
                    )
                    return [f for f in keep if f in flags]
    except OSError:
        pass
    return []


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine(with_cuda: bool = True) -> dict[str, Any]:
    """The machine and library versions; ``with_cuda`` also names the GPU (which creates a CUDA context)."""
    import torch

    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_flags": cpu_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mem_gib": mem_gib,
        "cuda": torch.cuda.get_device_name(0) if with_cuda and torch.cuda.is_available() else None,
        "versions": versions(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def maxrss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def time_reps(fn: Callable[[], Any], reps: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``reps`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summarize(times: list[float]) -> dict[str, float]:
    s = sorted(times)
    return {"best_s": s[0], "median_s": s[len(s) // 2], "mean_s": sum(s) / len(s), "n": len(s)}


def write_json(obj: Any, path: str | None) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=str)
    if path is None or path == "-":
        sys.stdout.write(text + "\n")
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text + "\n")


def run_child(module: str, args: list[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``python -m module args --json-out FILE`` in a fresh process and return its JSON result.

    One process per configuration isolates peak memory (``ru_maxrss``) and allocator state.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench_child_") as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", module, *args, "--json-out", out]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout)[-3000:]
            return {"error": f"{' '.join(cmd[1:])} exited with {proc.returncode}", "stderr_tail": tail}
        with open(out) as f:
            return json.load(f)
