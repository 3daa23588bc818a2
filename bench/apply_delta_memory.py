"""Peak memory and time of ``minigpt4.cli.apply_delta`` on a LLaMA-shaped random base and delta.

    python -m bench.apply_delta_memory                      # 7B widths, 4 layers (~2.1 GB per model in fp16)
    python -m bench.apply_delta_memory --layers 32          # a whole 7B (~13.5 GB per model; ~40 GB of disk)
    python -m bench.apply_delta_memory --json-out result.json --workdir /big/disk

The base is written as safetensors shards and the delta as ``pytorch_model-*.bin`` shards (as the published v0
delta is), both float16, the delta with one more token row. The merge runs in a fresh process, whose peak RSS
(``VmHWM``) is reported next to its RSS just before the merge (Python, torch and the module imported), the size
of one model and of its largest tensor: a streaming merge peaks at the baseline plus a few of the largest tensor,
where loading base and delta whole would need at least two models' worth.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import loadavg, machine, rss_mib, run_child, write_json

SHARD_BYTES = 10**9


def llama_shapes(vocab: int, hidden: int, intermediate: int, layers: int) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes of a ``LlamaForCausalLM`` checkpoint (full multi-head attention)."""
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{p}.self_attn.{proj}.weight"] = (hidden, hidden)
        shapes[f"{p}.mlp.gate_proj.weight"] = (intermediate, hidden)
        shapes[f"{p}.mlp.up_proj.weight"] = (intermediate, hidden)
        shapes[f"{p}.mlp.down_proj.weight"] = (hidden, intermediate)
        shapes[f"{p}.input_layernorm.weight"] = (hidden,)
        shapes[f"{p}.post_attention_layernorm.weight"] = (hidden,)
    shapes["model.norm.weight"] = (hidden,)
    shapes["lm_head.weight"] = (vocab, hidden)
    return shapes


def write_random_model(folder: Path, shapes: dict[str, tuple[int, ...]], fmt: str, config: dict, seed: int) -> None:
    """Random float16 tensors in ~1 GB shards (safetensors or .bin) with an index and ``config.json``."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(seed)
    groups: list[list[str]] = [[]]
    size = 0
    for name, shape in shapes.items():
        nbytes = 2 * int(torch.Size(shape).numel())
        if groups[-1] and size + nbytes > SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    weight_map = {}
    ext = "safetensors" if fmt == "safetensors" else "bin"
    stem = "model" if fmt == "safetensors" else "pytorch_model"
    for i, names in enumerate(groups, start=1):
        file = f"{stem}-{i:05d}-of-{len(groups):05d}.{ext}"
        part = {n: torch.randn(shapes[n], generator=gen, dtype=torch.float32).half() for n in names}
        if ext == "safetensors":
            save_file(part, str(folder / file), metadata={"format": "pt"})
        else:
            torch.save(part, folder / file)
        weight_map.update(dict.fromkeys(names, file))
        del part
    index = "model.safetensors.index.json" if ext == "safetensors" else "pytorch_model.bin.index.json"
    (folder / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config))


def llama_config(vocab: int, hidden: int, intermediate: int, layers: int, heads: int) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "rms_norm_eps": 1e-6,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float16",
    }


def vm_hwm_mib() -> float:
    """This process's peak RSS (``VmHWM``); unlike ``ru_maxrss`` it does not carry the parent's peak over exec."""
    from minigpt4.common.utils import proc_status_mib

    peak = proc_status_mib("VmHWM").get("VmHWM")
    if peak is None:
        raise RuntimeError("no VmHWM in /proc/self/status")
    return peak


def child_merge(args: argparse.Namespace) -> None:
    """In the measured process: the merge, with the RSS before it and the peak."""
    from minigpt4.cli.apply_delta import apply_delta

    before_rss, before_max = rss_mib(), vm_hwm_mib()
    t0 = time.perf_counter()
    apply_delta(args.base, args.delta, args.target, progress=False)
    seconds = time.perf_counter() - t0
    write_json(
        {
            "rss_before_merge_mib": before_rss,
            "peak_rss_before_merge_mib": before_max,
            "peak_rss_mib": vm_hwm_mib(),
            "merge_s": seconds,
        },
        args.json_out,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="apply_delta_bench_", dir=args.workdir))
    try:
        base_shapes = llama_shapes(args.vocab, args.hidden, args.intermediate, args.layers)
        delta_shapes = llama_shapes(args.vocab + 1, args.hidden, args.intermediate, args.layers)
        cfg = (args.hidden, args.intermediate, args.layers, args.heads)
        t0 = time.perf_counter()
        write_random_model(workdir / "base", base_shapes, "safetensors", llama_config(args.vocab, *cfg), seed=0)
        delta_cfg = llama_config(args.vocab + 1, *cfg)
        write_random_model(workdir / "delta", delta_shapes, "bin", delta_cfg, seed=1)
        (workdir / "delta" / "tokenizer.model").write_bytes(b"placeholder: the merge copies it, never reads it")
        write_s = time.perf_counter() - t0
        child = run_child(
            "bench.apply_delta_memory",
            [
                "--child",
                "--base",
                str(workdir / "base"),
                "--delta",
                str(workdir / "delta"),
                "--target",
                str(workdir / "target"),
            ],
        )
        model_bytes = sum(2 * _numel(s) for s in delta_shapes.values())
        largest = max(2 * _numel(s) for s in delta_shapes.values())
        return {
            "bench": "apply_delta_memory",
            "shapes": {
                "vocab": args.vocab,
                "hidden": args.hidden,
                "intermediate": args.intermediate,
                "layers": args.layers,
                "tensors": len(base_shapes),
            },
            "model_fp16_mib": model_bytes / 2**20,
            "largest_tensor_mib": largest / 2**20,
            "write_inputs_s": write_s,
            **child,
            "loadavg": loadavg(),
            "machine": machine(),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.apply_delta_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab", type=int, default=32000, help="the base's vocabulary (the delta has one more row)")
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=11008)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--workdir", default=None, help="where the inputs and the target are written (then removed)")
    p.add_argument("--json-out", default=None, help="write the result here (default: stdout)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--base", help=argparse.SUPPRESS)
    p.add_argument("--delta", help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_merge(args)
        return 0
    write_json(run(args), args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
