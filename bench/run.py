"""The benchmark entry point.

    python -m bench.run                       # everything this machine can run (CPU): peak, train, data, chat
    python -m bench.run --only peak,train     # a subset
    python -m bench.run --quick               # tiny shapes, a few steps: a smoke test of the whole harness
    python -m bench.run --json out.json --append-md
    python -m bench.run --gpu                 # full-size architecture on CUDA (random weights); fails without CUDA
    python -m bench.run --gpu-check [...]     # the one GPU check (bench/gpu_check.py, bench/gpu_check.sh)

Each training / chat configuration runs in its own process so that its peak memory (``ru_maxrss``) is its own.
The load average is recorded with every figure: numbers taken on a busy machine are not comparable.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tempfile
from typing import Any

from bench.common import REPO_ROOT, loadavg, machine, run_child, write_json

logger = logging.getLogger("bench")
SECTIONS = ("peak", "train", "data", "chat")
BENCHMARKS_MD = os.path.join(REPO_ROOT, "BENCHMARKS.md")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument(
        "--quick", action="store_true", help="tiny shapes and few repetitions (smoke test, not a measurement)"
    )
    p.add_argument("--json", default=None, help="write the results here (default: stdout)")
    p.add_argument("--append-md", action="store_true", help="append a Markdown section to BENCHMARKS.md")
    p.add_argument("--md-path", default=BENCHMARKS_MD, help=argparse.SUPPRESS)
    p.add_argument("--assets", default=None, help="cache folder for the random-weight assets (default: a temp dir)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps per configuration")
    p.add_argument(
        "--compile", action="store_true", help="also time torch.compile (run.compile) on bench-small fp32 and bf16"
    )
    p.add_argument(
        "--extra",
        action="store_true",
        help="also time more options (published LM head, bf16 LLM only, LLM grad checkpointing)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads in the training/chat processes")
    p.add_argument("--gpu", action="store_true", help="full-size architecture on CUDA instead of the CPU benches")
    p.add_argument(
        "--gpu-check", action="store_true", help="the one GPU check (bench/gpu_check.py; its options follow)"
    )
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SECTIONS))
    if unknown:
        p.error(f"--only: unknown section(s) {unknown}; choose from {SECTIONS}")
    return args


#: the frozen LLM stored in bf16
BF16_LLM = ["--set", "model.torch_dtype=bfloat16"]
#: bf16 on CPU as this project recommends it: bf16 autocast, and the frozen LLM and ViT weights stored in bf16
#: (autocast re-casts a frozen fp32 weight at every call: its cast cache only keeps weights that require grad)
BF16_WEIGHTS = [*BF16_LLM, "--set", "model.vit_precision=bf16"]
EXTRA_VARIANTS = (
    BF16_LLM,  # only the LLM weights in bf16
    ["--set", "model.sparse_lm_head=false"],  # the published LM head over every position
    ["--llm-grad-ckpt"],  # memory option: recompute LLM activations in the backward
)


#: chat runs: the LLM in bf16 (how a CPU chat runs best: decoding streams every weight once per token) with 32-token
#: answers, the same with 128-token answers (MiniGPT-4's detailed descriptions are longer), and the fp32 LLM as
#: bench-small configures it
CHAT_RUNS = (("chat", BF16_LLM), ("chat_long", [*BF16_LLM, "--new-tokens", "128"]), ("chat_fp32", []))


def train_configs(args: argparse.Namespace) -> list[list[str]]:
    """The (config, precision, options) rows of the training bench."""
    if args.quick:
        return [["--config", "tiny", "--precision", p, "--steps", "2", "--warmup", "1"] for p in ("fp32", "bf16")]
    steps = str(args.steps or 8)
    rows = [
        ["--config", c, "--precision", p, "--steps", steps, "--warmup", "2"]
        for c in ("tiny", "bench_small")
        for p in ("fp32", "bf16")
    ]
    small_fp32 = ["--config", "bench_small", "--precision", "fp32", "--steps", steps, "--warmup", "2"]
    small_bf16 = ["--config", "bench_small", "--precision", "bf16", "--steps", steps, "--warmup", "2"]
    rows.append([*small_bf16, *BF16_WEIGHTS])
    if args.extra:
        rows += [[*small_bf16, *extra] for extra in EXTRA_VARIANTS]
        rows.append([*small_fp32, "--set", "model.sparse_lm_head=false"])
    if args.compile:
        rows.append([*small_fp32[:-1], "3", "--compile", "networks"])
        rows.append([*small_bf16[:-1], "3", *BF16_WEIGHTS, "--compile", "networks"])
    return rows


def run_train(args: argparse.Namespace, assets: str, peak: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for cfg in train_configs(args):
        logger.info("train: %s (load %s)", " ".join(cfg), loadavg())
        threads = ["--threads", str(args.threads)] if args.threads else []
        row = run_child("bench.train_step", [*cfg, *threads, "--assets", assets])
        row.setdefault("name", cfg[1])
        row.setdefault("variant", cfg[3])
        if peak and "error" not in row:
            dtype_peak = peak[row["precision"]]["peak_flops"]
            row["utilisation"] = row["achieved_flops"] / dtype_peak
            row["peak_used"] = dtype_peak
        rows.append(row)
    return rows


def _find(rows: list[dict[str, Any]], name: str, variant: str) -> dict[str, Any] | None:
    return next((r for r in rows if r.get("name") == name and r.get("variant") == variant and "error" not in r), None)


def _best(rows: list[dict[str, Any]], name: str, precision: str) -> dict[str, Any] | None:
    ok = [r for r in rows if r.get("name") == name and r.get("precision") == precision and "error" not in r]
    return max(ok, key=lambda r: r["samples_per_s"]) if ok else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The project's performance targets, evaluated on whatever this run measured."""
    out = []
    rows = results.get("train", [])
    name = "tiny" if results["quick"] else "bench_small"
    fp32, bf16, best = _find(rows, name, "fp32"), _find(rows, name, "bf16"), _best(rows, name, "bf16")
    for label, row in (("as configured", bf16), (f"best variant ({best['variant'] if best else '-'})", best)):
        if fp32 and row and (label == "as configured" or row is not bf16):
            ratio = row["samples_per_s"] / fp32["samples_per_s"]
            cpu = fp32["cpu_s_per_step"]["median_s"] / row["cpu_s_per_step"]["median_s"]
            out.append(
                {
                    "target": f"{name} bf16 {label}: training throughput >= 2x fp32",
                    "measured": f"{ratio:.2f}x wall clock ({cpu:.2f}x in process CPU time)",
                    "met": ratio >= 2,
                }
            )
        if row and "utilisation" in row and (label == "as configured" or row is not bf16):
            u = row["utilisation"]
            out.append(
                {
                    "target": f"{name} bf16 {label}: utilisation vs measured bf16 peak >= 25%",
                    "measured": f"{u:.1%}",
                    "met": u >= 0.25,
                }
            )
    for key, _ in CHAT_RUNS:
        chat = results.get(key)
        if chat and "error" not in chat and chat.get("reuse_cache") and chat.get("recompute"):
            cached, full = chat["reuse_cache"][-1]["ttft_s"], chat["recompute"][-1]["ttft_s"]
            out.append(
                {
                    "target": f"chat ({chat.get('llm_dtype', '?')} LLM, {chat.get('new_tokens', '?')}-token answers): "
                    "3rd-turn time to first token with cache <= 1/3 of recompute",
                    "measured": f"{cached * 1e3:.1f} ms vs {full * 1e3:.1f} ms = {cached / full:.2f}",
                    "met": cached / full <= 1 / 3,
                }
            )
    data = results.get("data")
    consumers = [c for c in (bf16 or fp32,) if c]
    if best is not None and all(best is not c for c in consumers):
        consumers.append(best)  # the pipeline must also keep up with the fastest training variant
    for consumer in consumers if data and "error" not in data else []:
        for row in data["rows"]:
            r = row["samples_per_s"] / consumer["samples_per_s"]
            out.append(
                {
                    "target": f"data pipeline ({row['num_workers']} workers) >= 4x what training consumes "
                    f"({consumer['name']} {consumer['variant']})",
                    "measured": f"{row['samples_per_s']:.1f} vs {consumer['samples_per_s']:.1f} samples/s = {r:.1f}x",
                    "met": r >= 4,
                }
            )
    for cmp in data.get("comparison", []) if data and "error" not in data else []:
        out.append(
            {
                "target": f"webdataset reader ({cmp['num_workers']} workers) >= 0.9x the previous tarfile reader",
                "measured": f"{cmp['ratio']:.2f}x",
                "met": cmp["ratio"] >= 0.9,
            }
        )
    return out


def run_cpu(args: argparse.Namespace, results: dict[str, Any], assets: str) -> None:
    if "peak" in args.only or "train" in args.only:
        import torch

        from bench.peak import measure_peak

        if args.threads:  # the peak is measured with the thread count the model rows use
            torch.set_num_threads(args.threads)

        logger.info("peak (load %s)", loadavg())
        results["peak"] = measure_peak((256, 512) if args.quick else (2048, 3072, 4096), reps=2 if args.quick else 5)
    if "train" in args.only:
        results["train"] = run_train(args, assets, results.get("peak"))
    if "data" in args.only:
        from bench.data_bench import run_data

        logger.info("data (load %s)", loadavg())
        results["data"] = run_data(quick=args.quick, workdir=assets)
    if "chat" in args.only:
        logger.info("chat (load %s)", loadavg())
        quick = ["--config", "tiny", "--repeats", "1", "--new-tokens", "4"]
        chat_args = quick if args.quick else ["--config", "bench_small"]
        threads = ["--threads", str(args.threads)] if args.threads else []
        for key, extra in CHAT_RUNS[:1] if args.quick else CHAT_RUNS:
            results[key] = run_child("bench.chat_bench", [*chat_args, *extra, *threads, "--assets", assets])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--gpu-check" in argv:  # its own options: see bench/gpu_check.py
        from bench.gpu_check import main as gpu_check

        return gpu_check([a for a in argv if a != "--gpu-check"])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logger.setLevel(logging.INFO)
    args = parse_args(argv)
    results: dict[str, Any] = {
        "command": "python -m bench.run " + shlex.join(argv),
        "quick": args.quick,
        "machine": machine(),
        "loadavg_start": loadavg(),
        "threads": args.threads,
    }
    if args.gpu:
        from bench.gpu import run_gpu

        results["gpu"] = run_gpu(quick=args.quick)
    else:
        with tempfile.TemporaryDirectory(prefix="minigpt4_bench_") as tmp:
            run_cpu(args, results, args.assets or tmp)
        results["targets"] = targets(results)
    results["loadavg_end"] = loadavg()
    write_json(results, args.json)
    if args.append_md:
        from bench.report import to_markdown

        with open(args.md_path, "a") as f:
            f.write(to_markdown(results))
    return results


if __name__ == "__main__":
    main()
