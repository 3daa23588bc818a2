"""Precision: native-bf16 detection from the CPU flags and the CUDA device, and what ``run.amp_dtype: auto`` picks."""

from __future__ import annotations

import pytest
import torch

from minigpt4.runners import precision
from minigpt4.runners.precision import native_bf16, resolve_precision
from tests.runners.toy import ToyConfig


def _cpuinfo(tmp_path, *flags: str) -> str:
    path = tmp_path / "cpuinfo"
    body = "".join(f"processor\t: {i}\nmodel name\t: x\nflags\t\t: fpu sse2 {' '.join(flags)}\n\n" for i in range(2))
    path.write_text(body)
    return str(path)


@pytest.mark.parametrize(
    "flags, native",
    [
        (("avx2", "fma"), False),
        (("avx2", "avx512f", "avx512_vnni"), False),
        (("avx512_bf16",), True),
        (("amx_bf16",), True),
    ],
)
def test_native_bf16_on_cpu_reads_the_flags(tmp_path, flags, native):
    found, why = native_bf16("cpu", _cpuinfo(tmp_path, *flags))
    assert found is native
    assert ("this CPU has avx" in why or "this CPU has amx" in why) if native else "bf16 would be emulated" in why


def test_unreadable_cpuinfo_means_no_native_bf16(tmp_path):
    found, why = native_bf16("cpu", str(tmp_path / "missing"))
    assert not found and "missing" in why


def test_auto_on_cpu(tmp_path):
    cfg = ToyConfig(tmp_path, amp=True, amp_dtype="auto").run_cfg
    bf16 = resolve_precision(cfg, torch.device("cpu"), _cpuinfo(tmp_path, "amx_bf16"))
    assert bf16.dtype == torch.bfloat16 and not bf16.use_scaler and "amx_bf16" in bf16.reason
    fp32 = resolve_precision(cfg, torch.device("cpu"), _cpuinfo(tmp_path, "avx2"))
    assert fp32.dtype is None and not fp32.use_scaler and "slower than float32" in fp32.reason
    off = resolve_precision(ToyConfig(tmp_path, amp=False, amp_dtype="auto").run_cfg, torch.device("cpu"))
    assert off.dtype is None and off.reason == "run.amp is False"


@pytest.mark.parametrize("bf16_gpu", [True, False], ids=["ampere-or-later", "older-gpu"])
def test_auto_on_cuda(tmp_path, monkeypatch, bf16_gpu):
    """A stand-in for a CUDA device (the decision only, no kernel runs): torch's own answers are replaced."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")

    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return bf16_gpu

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    chosen = resolve_precision(ToyConfig(tmp_path, amp=True, amp_dtype="auto").run_cfg, torch.device("cuda"))
    assert calls == [False]  # emulated bf16 does not count
    if bf16_gpu:
        assert chosen.dtype == torch.bfloat16 and not chosen.use_scaler
    else:  # the published fp16 path with its gradient scaler
        assert chosen.dtype == torch.float16 and chosen.use_scaler and "published fp16" in chosen.reason


def test_the_default_is_the_published_fp16(tmp_path):
    cfg = ToyConfig(tmp_path, amp=True).run_cfg
    assert cfg.amp_dtype == "float16" and precision.AUTO != cfg.amp_dtype
