"""Build time and peak memory of constructing MiniGPT-4 from weight files on disk.

    python -m bench.build_memory --assets /big/disk/build_assets          # full size: ViT-G, Q-Former, LLaMA-7B
    python -m bench.build_memory --assets DIR --llm-layers 4              # LLaMA-7B widths, 4 of its 32 layers
    python -m bench.build_memory --assets DIR --small                     # smoke test of the harness

The assets are random weights in the published formats, written once into ``--assets`` and reused: an
``eva_vit_g.pth`` state dict (EVA ViT-G, 39 x 1408, conv/linear weights in fp16 as published), a BLIP-2-style
``{"model": ...}`` checkpoint with the Q-Former, ``query_tokens`` and ``ln_vision`` (fp32), and a LLaMA
``save_pretrained``-style folder (float16 safetensors shards, a sentencepiece tokenizer). Their names and shapes come
from the project's own modules built on the meta device, so they load exactly as the released files do. Writing
holds one tensor (the ViT file: the whole ViT) at a time.

The measurement runs ``MiniGPT4.from_config`` in a fresh process and reports the wall time, the peak RSS
(``VmHWM``) before and after the build, the peak of the anonymous part of the RSS (``RssAnon``, sampled every
5 ms: the memory the process owns, without the reclaimable pages of memory-mapped weight files that ``VmHWM``
also counts), the RSS after it, and the bytes of the built model's weights: a construction that never
materialises a second copy peaks near baseline + weights. ``--low-memory-build false`` measures the published
construction (random initialisation, then a load over it). On a CPU the LLM is built in
bfloat16 and the ViT in bf16 (``torch_dtype: float16`` / ``vit_precision: fp16`` fall back to fp32 without CUDA).
A watchdog kills the measured process when the machine's available memory drops under ``--min-available-gib``,
so a configuration too large for the machine fails instead of pushing others into swap or the OOM killer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from bench.apply_delta_memory import vm_hwm_mib
from bench.assets import write_tokenizer
from bench.common import REPO_ROOT, loadavg, machine, rss_mib, write_json

LLAMA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32}
SHARD_BYTES = 2 * 10**9


def available_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def _random_like(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random tensor of ``t``'s shape and dtype (``t`` may be on the meta device)."""
    out = torch.empty(t.shape, dtype=torch.float32)
    out.normal_(0.0, 0.02, generator=gen)
    return out.to(t.dtype)


def _random_state(meta: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights for the floating-point entries; integer buffers (position ids) are left to the model's own
    values (the files load non-strictly)."""
    return {k: _random_like(v, gen) for k, v in meta.items() if v.is_floating_point()}


# ----------------------------------------------------------------------------------------------------------
# assets
# ----------------------------------------------------------------------------------------------------------


def write_vit(path: Path, vit_depth: int, gen: torch.Generator) -> None:
    from minigpt4.models.eva_vit import create_eva_vit_g

    meta = create_eva_vit_g(224, 0.0, False, "fp16", None, depth=vit_depth, device="meta")
    torch.save(_random_state(meta.state_dict(), gen), path)


def write_qformer(path: Path, vit_width: int, qformer_layers: int, gen: torch.Generator) -> None:
    from minigpt4.models.blip2 import Blip2Base, LayerNorm

    qformer, query_tokens = Blip2Base.init_Qformer(32, vit_width, 2, num_hidden_layers=qformer_layers, device="meta")
    with torch.device("meta"):
        ln_vision = LayerNorm(vit_width)
    model = {f"Qformer.{k}": v for k, v in _random_state(qformer.state_dict(), gen).items()}
    model.update({f"ln_vision.{k}": v for k, v in _random_state(ln_vision.state_dict(), gen).items()})
    model["query_tokens"] = _random_like(query_tokens, gen)
    torch.save({"model": model}, path)


def write_llama(folder: Path, dims: dict[str, int], gen: torch.Generator) -> None:
    """A float16 LLaMA folder written one tensor at a time into safetensors shards with an index."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    from minigpt4.cli.apply_delta import plan_shards, write_safetensors_streaming

    write_tokenizer(str(folder))
    tok = LlamaTokenizer.from_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    config = LlamaConfig(
        **dims, vocab_size=32000, max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=False, dtype="float16",
    )  # fmt: skip
    with torch.device("meta"):
        meta = LlamaForCausalLM(config).state_dict()
    plan = [(name, tuple(t.shape)) for name, t in meta.items()]
    shards = plan_shards(plan, 2, SHARD_BYTES)
    weight_map, total = {}, 0
    for i, entries in enumerate(shards, start=1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        tensors = (_random_like(meta[name], gen).half() for name, _ in entries)
        write_safetensors_streaming(folder / file, entries, torch.float16, tensors)
        weight_map.update({name: file for name, _ in entries})
        total += sum(2 * meta[name].numel() for name, _ in entries)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.save_pretrained(str(folder))


def ensure_assets(root: Path, sizes: dict[str, int]) -> dict[str, str]:
    """The three assets under ``root/<sizes>``, written when missing; returns the config paths."""
    folder = root / "vit{vit_depth}_qf{qformer_layers}_llm{llm_layers}".format(**sizes)
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    paths = {
        "vit_path": folder / "eva_vit_g.pth",
        "q_former_model": folder / "blip2_qformer.pth",
        "llama_model": folder / "llama",
    }
    if not paths["vit_path"].is_file():
        write_vit(paths["vit_path"], sizes["vit_depth"], gen)
    if not paths["q_former_model"].is_file():
        write_qformer(paths["q_former_model"], 1408, sizes["qformer_layers"], gen)
    if not (paths["llama_model"] / "model.safetensors.index.json").is_file():
        paths["llama_model"].mkdir(exist_ok=True)
        write_llama(paths["llama_model"], {**LLAMA_7B, "num_hidden_layers": sizes["llm_layers"]}, gen)
    return {k: str(v) for k, v in paths.items()}


# ----------------------------------------------------------------------------------------------------------
# measurement
# ----------------------------------------------------------------------------------------------------------


def _weights_mib(model: torch.nn.Module) -> dict[str, float]:
    """The bytes of every parameter and buffer, per dtype, in MiB."""
    out: dict[str, float] = {}
    seen: set[int] = set()
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        key = str(t.dtype).removeprefix("torch.")
        out[key] = out.get(key, 0.0) + t.numel() * t.element_size() / 2**20
    return out


def rss_parts_mib() -> dict[str, float]:
    """This process's resident memory split as the kernel counts it: ``RssAnon`` (memory the process owns) and
    ``RssFile`` (pages of mapped files: reclaimable, re-read from disk when needed)."""
    from minigpt4.common.utils import proc_status_mib

    return proc_status_mib("RssAnon", "RssFile")


class AnonPeak:
    """The highest ``RssAnon`` seen, sampled every ``interval`` seconds in a thread (the kernel keeps a peak of the
    whole RSS only, ``VmHWM``, which also counts the pages of memory-mapped weight files)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak, self.stop = interval, 0.0, threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def watch(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_parts_mib().get("RssAnon", 0.0))
            time.sleep(self.interval)

    def __enter__(self) -> AnonPeak:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss_parts_mib().get("RssAnon", 0.0))


def child_build(args: argparse.Namespace) -> None:
    """In the measured process: import, then ``MiniGPT4.from_config`` on the assets."""
    from minigpt4.models import MiniGPT4

    cfg = json.loads(args.child_cfg)
    before = {"rss_mib": rss_mib(), "peak_rss_mib": vm_hwm_mib(), "anon_mib": rss_parts_mib()["RssAnon"]}
    t0 = time.perf_counter()
    with AnonPeak() as anon:
        model = MiniGPT4.from_config(cfg)
    seconds = time.perf_counter() - t0
    weights = _weights_mib(model)
    after = rss_parts_mib()
    result = {
        "build_s": seconds,
        "before_build": before,
        "rss_after_build_mib": rss_mib(),
        "anon_after_build_mib": after["RssAnon"],
        "file_after_build_mib": after["RssFile"],
        "peak_rss_mib": vm_hwm_mib(),
        "peak_anon_mib": anon.peak,
        "weights_mib": weights,
        "weights_total_mib": sum(weights.values()),
    }
    result["peak_over_weights"] = (result["peak_rss_mib"] - before["rss_mib"]) / result["weights_total_mib"]
    result["peak_anon_over_weights"] = (anon.peak - before["anon_mib"]) / result["weights_total_mib"]
    write_json(result, args.json_out)


def run_guarded(cmd: list[str], min_available_gib: float) -> tuple[int, str, float]:
    """Run ``cmd``; kill it when the machine's available memory drops under ``min_available_gib``."""
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lowest = [available_gib()]
    killed = threading.Event()

    def watch() -> None:
        while proc.poll() is None:
            lowest[0] = min(lowest[0], available_gib())
            if lowest[0] < min_available_gib:
                killed.set()
                proc.kill()
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output, _ = proc.communicate()
    watcher.join()
    if killed.is_set():
        output += f"\nkilled: the machine's available memory fell under {min_available_gib} GiB"
    return proc.returncode, output, lowest[0]


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = {"vit_depth": 39, "qformer_layers": 12, "llm_layers": args.llm_layers}
    if args.small:
        sizes = {"vit_depth": 2, "qformer_layers": 2, "llm_layers": 1}
    root = Path(args.assets or tempfile.mkdtemp(prefix="build_memory_"))
    t0 = time.perf_counter()
    assets = ensure_assets(root, sizes)
    write_s = time.perf_counter() - t0
    cfg = {
        "arch": "mini_gpt4",
        "model_type": "pretrain_vicuna0",
        "vit_depth": sizes["vit_depth"],
        "qformer_num_layers": sizes["qformer_layers"],
        "vit_precision": args.vit_precision,
        "torch_dtype": args.torch_dtype,
        "low_memory_build": args.low_memory_build == "true",
        **assets,
    }
    with tempfile.TemporaryDirectory(prefix="build_memory_out_") as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "bench.build_memory", "--child", json.dumps(cfg), "--json-out", out]
        code, output, lowest = run_guarded(cmd, args.min_available_gib)
        child = json.loads(Path(out).read_text()) if code == 0 else {"error": f"exit {code}", "tail": output[-3000:]}
    return {
        "bench": "build_memory",
        "sizes": sizes,
        "config": {k: v for k, v in cfg.items() if k not in assets},
        "assets_write_s": write_s,
        **child,
        "lowest_available_gib": lowest,
        "loadavg": loadavg(),
        "machine": machine(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.build_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--assets", default=None, help="cache folder of the random-weight assets (default: a temp dir)")
    p.add_argument("--llm-layers", type=int, default=32, help="LLaMA-7B layers to keep (32: the whole 7B)")
    p.add_argument("--small", action="store_true", help="tiny depths everywhere: a smoke test of the harness")
    cuda = torch.cuda.is_available()
    p.add_argument("--torch-dtype", default="float16" if cuda else "bfloat16")
    p.add_argument("--vit-precision", default="fp16" if cuda else "bf16")
    p.add_argument("--low-memory-build", choices=("true", "false"), default="true", help="model.low_memory_build")
    p.add_argument("--min-available-gib", type=float, default=2.0, help="kill the build below this much free memory")
    p.add_argument("--json-out", default=None, help="write the result here (default: stdout)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        args.child_cfg = args.child
        child_build(args)
        return 0
    write_json(run(args), args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
