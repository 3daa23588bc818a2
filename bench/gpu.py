"""GPU mode: the full-size MiniGPT-4 architecture with random weights on one CUDA device.

    python -m bench.run --gpu [--json out.json]

Builds EVA ViT-G (39 x 1408, fp16 weights as published), the BLIP-2 Q-Former (12 x 768, 32 queries) and a
LLaMA-7B-shaped LLM (32 x 4096, 11008 MLP, 32000 vocabulary, bf16) directly on the GPU with random weights:
nothing is downloaded or read from disk except a small sentencepiece tokenizer written on the fly. The model is
the project's ``MiniGPT4`` (its own ``__init__``, builders and forward); only two construction steps are
replaced: the ViT skips loading ``vit_path``, and, while the model is built, ``from_pretrained`` instantiates a
random LLaMA from a ``LlamaConfig`` instead of reading a folder.

Reports: the measured bf16 matmul peak of the device, stage-1 samples/s at batch 64 (bf16 autocast, the step of
:mod:`bench.train_step`), model-FLOPs utilisation, and the stage-2 peak memory at batch 12, with and without LLM gradient checkpointing (instruction template,
answers filling ``max_txt_len`` 160).

``bench/gpu_check.sh`` (:mod:`bench.gpu_check`) builds on these pieces for the fuller, memory-safe check: fp16 +
GradScaler and bf16 rows, 7B / 13B memory rows, NCCL, the CUDA-only tests and a chat turn, each row isolated.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import torch

from bench.assets import LlamaDims, write_tokenizer
from bench.common import loadavg, summarize
from bench.flops import train_step_flops

FULL_LLAMA = LlamaDims(
    hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
    intermediate_size=11008, vocab_size=32000, max_position_embeddings=2048,
)  # fmt: skip
STAGE1 = {"prompt_path": "", "prompt_template": "", "max_txt_len": 32, "end_sym": "\n"}
STAGE2 = {"prompt_path": "prompts/alignment.txt", "prompt_template": "###Human: {} ###Assistant: ",
          "max_txt_len": 160, "end_sym": "###"}  # fmt: skip


def require_cuda() -> None:
    if not torch.cuda.is_available():
        raise SystemExit(
            "bench --gpu needs a CUDA device (torch.cuda.is_available() is False on this machine). "
            "Run it on a GPU host; the CPU benchmarks are `python -m bench.run` without --gpu."
        )


def random_model_class() -> type:
    """``MiniGPT4`` whose ViT keeps its random initialisation instead of loading ``vit_path``."""
    from minigpt4.models.mini_gpt4 import MiniGPT4

    class RandomMiniGPT4(MiniGPT4):
        @classmethod
        def init_vision_encoder(cls, *args: Any, path: str | None = None, **kwargs: Any) -> Any:
            return super().init_vision_encoder(*args, path=None, **kwargs)  # random init, nothing loaded

    return RandomMiniGPT4


@contextlib.contextmanager
def random_llama(dims: LlamaDims) -> Iterator[None]:
    """While active, ``LlamaForCausalLM.from_pretrained(folder, dtype=...)`` builds a random model of ``dims``
    (on the current default device) instead of reading weights: the model's own ``_build_llm`` runs unchanged."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    had_own = "from_pretrained" in LlamaForCausalLM.__dict__
    original = LlamaForCausalLM.__dict__.get("from_pretrained")

    def from_config(cls: type, path: str, *args: Any, **kwargs: Any) -> Any:
        tokenizer = LlamaTokenizer.from_pretrained(path)
        config = LlamaConfig(
            hidden_size=dims.hidden_size, num_hidden_layers=dims.num_hidden_layers,
            num_attention_heads=dims.num_attention_heads, num_key_value_heads=dims.num_key_value_heads,
            intermediate_size=dims.intermediate_size, vocab_size=dims.vocab_size,
            max_position_embeddings=dims.max_position_embeddings, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
        )  # fmt: skip
        dtype = kwargs.get("dtype", kwargs.get("torch_dtype")) or torch.float32
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            return cls(config)
        finally:
            torch.set_default_dtype(previous)

    LlamaForCausalLM.from_pretrained = classmethod(from_config)
    try:
        yield
    finally:
        if had_own:
            LlamaForCausalLM.from_pretrained = original
        else:
            del LlamaForCausalLM.from_pretrained  # the inherited one is visible again


def build_random_model(overrides: dict[str, Any], llama: LlamaDims, device: str, tokenizer_dir: str) -> Any:
    """The project's MiniGPT4 at the given sizes, random weights, built directly on ``device``."""
    from omegaconf import OmegaConf

    from minigpt4.models.mini_gpt4 import MiniGPT4Config

    if not os.path.exists(os.path.join(tokenizer_dir, "tokenizer.model")):
        write_tokenizer(tokenizer_dir)
    base = {"vit_path": "(random init)", "llama_model": tokenizer_dir, "q_former_model": None}
    cfg = OmegaConf.merge(OmegaConf.structured(MiniGPT4Config), base, overrides)
    with torch.device(device), random_llama(llama):
        model = random_model_class()(cfg)
    return model


def weights_gib(overrides: dict[str, Any], llama: LlamaDims, tokenizer_dir: str) -> float:
    """GiB of every parameter and buffer of the model these settings build, counted on the meta device."""
    model = build_random_model(overrides, llama, "meta", tokenizer_dir)
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**30


def stage_samples(model: Any, batch: int, stage: dict[str, Any], device: str) -> dict[str, Any]:
    from bench.assets import captions

    words = (10, 19) if stage is STAGE1 else (150, 200)  # stage 2: answers fill max_txt_len
    size = model.cfg.image_size
    return {
        "image": torch.randn(batch, 3, size, size, device=device),
        "answer": captions(batch, 0, *words),
    }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def free_memory_gib(device: str) -> float:
    """Memory this process may still use: free CUDA memory, or available RAM on a CPU."""
    if device.startswith("cuda"):
        return torch.cuda.mem_get_info()[0] / 2**30
    import psutil

    return psutil.virtual_memory().available / 2**30


def reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_gib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    from bench.common import maxrss_mib

    return maxrss_mib() / 1024  # CPU dry runs only: the process's peak RSS


#: training precision of a GPU row -> (autocast dtype, model overrides, GradScaler). ``fp16`` is the published
#: recipe (``run.amp: True``: fp16 autocast with a GradScaler, fp16 ViT and LLM weights); ``bf16`` is this
#: project's bf16 path (bf16 autocast, bf16 ViT and LLM weights, no scaler)
PRECISIONS: dict[str, tuple[torch.dtype, dict[str, str], bool]] = {
    "fp16": (torch.float16, {"torch_dtype": "float16", "vit_precision": "fp16"}, True),
    "bf16": (torch.bfloat16, {"torch_dtype": "bfloat16", "vit_precision": "bf16"}, False),
}


def time_training(
    model: Any, samples: dict[str, Any], steps: int, warmup: int, device: str, precision: str = "bf16"
) -> dict[str, Any]:
    """Train ``warmup + steps`` steps (autocast of ``precision``, with a GradScaler for fp16, as the runner);
    time the last ``steps``. Returns step times, peak memory, every loss and the final loss scale."""
    from bench.train_step import build_optimizer

    dtype, _, use_scaler = PRECISIONS[precision]
    kind = torch.device(device).type
    scaler = torch.amp.GradScaler(kind, enabled=use_scaler)
    optimizer = build_optimizer(model)
    model.train()
    losses = []

    def step() -> None:
        with torch.autocast(kind, dtype=dtype):
            loss = model(samples)["loss"]
        scaler.scale(loss).backward()
        scaler.step(optimizer)  # skipped (and the scale lowered) when the fp16 gradients overflowed
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())

    for _ in range(warmup):
        step()
    _sync(device)
    reset_peak_memory(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    values = [float(v) for v in torch.stack(losses).float().cpu()]  # one read, after the timed steps
    return {
        "step_s": summarize(times),
        "peak_mem_gib": _peak_memory_gib(device),
        "losses": values,
        "loss_finite": all(math.isfinite(v) for v in values),
        "loss_scale": scaler.get_scale() if use_scaler else None,
    }


def run_gpu(
    quick: bool = False, device: str = "cuda", sizes: dict[str, Any] | None = None, llama: LlamaDims = FULL_LLAMA
) -> dict[str, Any]:
    """The GPU benchmark. ``device``, ``sizes`` (model overrides) and ``llama`` exist for dry runs on a CPU
    at toy sizes (tests); the real measurement is ``run_gpu()`` on CUDA at full size."""
    if device.startswith("cuda"):
        require_cuda()
    from bench.models import model_dims, seq_len_of
    from bench.peak import measure_peak

    on_cuda = device.startswith("cuda")
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if on_cuda else device, "loadavg": loadavg()}
    result["peak"] = measure_peak((4096, 8192) if not quick else (512,), reps=10 if not quick else 2, device=device)
    bf16_peak = result["peak"]["bf16"]["peak_flops"]
    tok_dir = os.path.join(tempfile.mkdtemp(prefix="minigpt4_gpu_tok_"), "tokenizer")
    overrides = {"torch_dtype": "bfloat16", "vit_precision": "fp16", **(sizes or {})}
    rows = (
        ("stage1", STAGE1, 64, {}),
        ("stage2", STAGE2, 12, {}),
        ("stage2_llm_grad_ckpt", STAGE2, 12, {"llm_grad_checkpoint": True}),  # the memory option
    )
    for name, stage, batch, extra in rows:
        model = build_random_model({**overrides, **stage, **extra}, llama, device, tok_dir)
        samples = stage_samples(model, batch if not quick else 2, stage, device)
        steps, warmup = (10, 3) if not quick else (1, 1)
        timing = time_training(model, samples, steps=steps, warmup=warmup, device=device)
        seq = seq_len_of(model, samples) + (0 if stage is STAGE1 else 16)  # + instruction tokens (approx.)
        flops = train_step_flops(model_dims(model), samples["image"].shape[0], seq)
        median = timing["step_s"]["median_s"]
        result[name] = {
            "batch": samples["image"].shape[0],
            **timing,
            "samples_per_s": samples["image"].shape[0] / median,
            "model_flops_per_step": flops["total"],
            "utilisation_vs_bf16_peak": flops["total"] / median / bf16_peak,
        }
        del model, samples
        if on_cuda:
            torch.cuda.empty_cache()
    return result
