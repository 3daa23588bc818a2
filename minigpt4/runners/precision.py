"""Mixed precision: what ``run.amp`` / ``run.amp_dtype`` mean on a device, and whether it runs bf16 natively.

``amp: False`` runs in fp32. With ``amp: True``:

- ``float16`` (the published default): fp16 autocast with a gradient scaler, on CUDA and on the CPU;
- ``bfloat16``: bf16 autocast, no scaler;
- ``auto``: bf16 where the device runs it natively (:func:`native_bf16`), else the published fp16 path on CUDA,
  else fp32 (a CPU without bf16 instructions emulates bf16, which is slower than fp32).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
AUTO = "auto"
#: the CPU flags (``/proc/cpuinfo``) of instructions that compute in bf16
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = "/proc/cpuinfo"


def cpu_flags(cpuinfo: str = CPUINFO) -> set[str]:
    """The ``flags`` of the first CPU in ``cpuinfo`` (empty when the file cannot be read, e.g. not Linux)."""
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device | str, cpuinfo: str | None = None) -> tuple[bool, str]:
    """Whether ``device`` computes in bf16 natively (not emulated), and why, in words.

    CUDA: ``torch.cuda.is_bf16_supported(including_emulation=False)`` (Ampere and later). CPU: a flag of
    :data:`NATIVE_BF16_CPU_FLAGS` in ``cpuinfo`` (default ``/proc/cpuinfo``).
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} supports bf16"
        return False, f"{name} has no native bf16 (it needs compute capability 8.0 or later)"
    if device.type == "cpu":
        path = cpuinfo or CPUINFO
        found = sorted(cpu_flags(path) & set(NATIVE_BF16_CPU_FLAGS))
        if found:
            return True, f"this CPU has {' and '.join(found)} ({path})"
        return False, f"this CPU has no {' or '.join(NATIVE_BF16_CPU_FLAGS)} in {path}: bf16 would be emulated"
    return False, f"no native-bf16 check for device type {device.type!r}"


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: autocast dtype (None: fp32), whether a GradScaler is used, and why."""

    dtype: torch.dtype | None
    use_scaler: bool
    reason: str = ""

    @property
    def autocast(self) -> bool:
        return self.dtype is not None

    @property
    def name(self) -> str:
        return "float32" if self.dtype is None else str(self.dtype).removeprefix("torch.")


def check_amp_dtype(amp_dtype: str) -> None:
    """Raises ValueError (naming ``run.amp_dtype``) unless it is ``float16``, ``bfloat16`` or ``auto``."""
    if amp_dtype not in (*AMP_DTYPES, AUTO):
        raise ValueError(f"run.amp_dtype: expected one of {', '.join((*AMP_DTYPES, AUTO))}, got {amp_dtype!r}")


def resolve_precision(run_cfg: Any, device: torch.device, cpuinfo: str | None = None) -> Precision:
    """``run.amp`` + ``run.amp_dtype`` on ``device`` (see the module docstring)."""
    amp_dtype = str(run_cfg.amp_dtype)
    check_amp_dtype(amp_dtype)
    if not run_cfg.amp:
        return Precision(None, False, "run.amp is False")
    if amp_dtype != AUTO:
        dtype = AMP_DTYPES[amp_dtype]
        return Precision(dtype, dtype == torch.float16, f"run.amp_dtype={amp_dtype}")
    native, why = native_bf16(device, cpuinfo)
    if native:
        return Precision(torch.bfloat16, False, f"run.amp_dtype=auto: {why}")
    if device.type == "cuda":
        return Precision(torch.float16, True, f"run.amp_dtype=auto: {why}; the published fp16 path with a scaler")
    return Precision(None, False, f"run.amp_dtype=auto: {why}, which is slower than float32")
