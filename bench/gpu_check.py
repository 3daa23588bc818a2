"""One GPU check: everything only a CUDA GPU can tell, in one run of under 10 minutes, safe to start blind.

    bench/gpu_check.sh [--json gpu_check.json]         # = python -m bench.run --gpu-check ...
    python -m bench.gpu_check --device cpu --toy       # the same procedure on a CPU at toy sizes (tests/bench)

Rows, in order (each in its own process: an error, an out-of-memory or a hang in one row is recorded in its
entry and the next row starts with all GPU memory free again):

- ``cuda_tests``: the test-suite tests that only run with CUDA (found by scanning ``tests/`` for CUDA skips);
- ``nccl``: ``torchrun`` (one process) joins an NCCL process group through ``init_distributed_mode`` and runs
  an all-reduce and an object broadcast;
- ``peak``: the fp16 / bf16 matmul peak of the device (the MFU denominators) and its memory;
- ``stage1_fp16_scaler``, ``stage1_bf16``, ``stage2_fp16_scaler``, ``stage2_bf16``: training steps of the
  full-size architecture (EVA ViT-G + Q-Former + a LLaMA with 7B shapes, random weights built on the GPU)
  under the published fp16 autocast + GradScaler and under bf16: losses, samples/s, MFU, peak memory;
- ``memory_stage2_{7b,13b}[_llm_grad_ckpt]``: stage-2 peak memory at batch 12 with 7B / 13B shapes, with and
  without LLM gradient checkpointing;
- ``chat``: one chat turn (an image, a question, a 32-token answer) with the fp16 7B-shaped model.

Memory safety: before building, a row counts its weights on the meta device and compares them with the free
memory; it then measures one step at batch 1 and 2 and extrapolates the peak to the target batch. Training rows
scale the batch (or, when the weights alone do not fit, the LLM depth) down to what fits and say so; memory rows
never scale: they report the predicted peak and the largest batch that fits. A global time budget (default
540 s) stops the run cleanly: a row that would start too late is skipped with the reason, a running row is
killed at the deadline. The result is one JSON (``--json``) and a Markdown table on stdout for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bench.assets import LlamaDims
from bench.common import REPO_ROOT, machine, write_json

logger = logging.getLogger("bench.gpu_check")

LLAMA_SHAPES = {
    "7b": LlamaDims(4096, 32, 32, 32, 11008, 32000, 2048),
    "13b": LlamaDims(5120, 40, 40, 40, 13824, 32000, 2048),
}
#: toy sizes for a CPU dry run (same code path, seconds instead of minutes)
TOY_LLAMA_SHAPES = {"7b": LlamaDims(32, 1, 2, 2, 64, 1000, 512), "13b": LlamaDims(48, 2, 2, 2, 96, 1000, 512)}
TOY_MODEL = {"vit_width": 32, "vit_depth": 1, "vit_heads": 2, "vit_mlp_dim": 64, "image_size": 56,
             "qformer_hidden_size": 32, "qformer_num_layers": 2, "qformer_num_heads": 2,
             "qformer_intermediate_size": 64}  # fmt: skip
#: share of the free memory a row plans to use (the allocator's fragmentation and the CUDA context need the rest)
MEMORY_SHARE = 0.9
#: a row is not started with less time than this left before the deadline
MIN_ROW_S = 25.0
DEFAULT_BUDGET_S = 540.0  # 9 minutes: the whole check stays under 10
CUDA_SKIP = re.compile(r"torch\.cuda\.is_available\(\)")


@dataclass
class Row:
    """One isolated measurement. ``kind``: tests | nccl | peak | train | memory | chat."""

    name: str
    kind: str
    stage: str = "stage1"
    precision: str = "fp16"
    llm: str = "7b"
    batch: int = 1
    llm_grad_ckpt: bool = False
    steps: int = 5
    warmup: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


def plan(toy: bool) -> list[Row]:
    """The rows of a check, cheapest and most basic first."""
    steps, warmup = (1, 1) if toy else (5, 2)
    b1, b2 = (4, 2) if toy else (64, 12)  # published per-GPU batches: stage 1 64 (4 GPUs x 64), stage 2 12
    rows = [Row("cuda_tests", "tests"), Row("nccl", "nccl"), Row("peak", "peak")]
    for stage, batch in (("stage1", b1), ("stage2", b2)):
        for precision in ("fp16", "bf16"):
            suffix = "fp16_scaler" if precision == "fp16" else "bf16"
            rows.append(Row(f"{stage}_{suffix}", "train", stage, precision, "7b", batch, False, steps, warmup))
    for llm in ("7b", "13b"):
        for ckpt in (False, True):
            name = f"memory_stage2_{llm}" + ("_llm_grad_ckpt" if ckpt else "")
            rows.append(Row(name, "memory", "stage2", "fp16", llm, b2, ckpt, 1, 1))
    rows.append(Row("chat", "chat", precision="fp16", llm="7b", extra={"new_tokens": 4 if toy else 32}))
    return rows


# ----------------------------------------------------------------------------------------------------------
# the parent: runs each row in a child process under the time budget
# ----------------------------------------------------------------------------------------------------------


def run_row_process(row: Row, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """Run one row in a fresh process (its own process group, killed whole at the timeout)."""
    with tempfile.TemporaryDirectory(prefix="gpu_check_row_") as tmp:
        out = os.path.join(tmp, "row.json")
        cmd = [sys.executable, "-m", "bench.gpu_check", "--child", json.dumps(asdict(row)), "--json-out", out,
               "--device", args.device, "--tokenizer-dir", args.tokenizer_dir, *(["--toy"] if args.toy else []),
               *(["--inject-failure", args.inject_failure] if args.inject_failure else []),
               *(["--inject-hang", args.inject_hang] if args.inject_hang else [])]  # fmt: skip
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            return {"status": "timeout", "reason": f"killed at the time budget after {timeout:.0f} s",
                    "log_tail": output[-2000:]}  # fmt: skip
        if proc.returncode != 0 or not os.path.exists(out):
            oom = "OutOfMemoryError" in output or "out of memory" in output
            return {"status": "oom" if oom else "failed", "reason": f"exit status {proc.returncode}",
                    "log_tail": output[-3000:]}  # fmt: skip
        with open(out) as f:
            return json.load(f)


def add_utilisation(results: dict[str, Any]) -> None:
    """MFU of the training rows: model FLOPs per second over the measured matmul peak of their dtype."""
    peak = results["rows"].get("peak", {})
    for row in results["rows"].values():
        if row.get("status") == "ok" and "model_flops_per_step" in row and row["precision"] in peak.get("peak", {}):
            dtype_peak = peak["peak"][row["precision"]]["peak_flops"]
            row["mfu"] = row["model_flops_per_step"] / row["step_s"]["median_s"] / dtype_peak


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    start = time.monotonic()
    deadline = start + args.budget_s
    rows = [r for r in plan(args.toy) if not args.only or r.name in args.only]
    results: dict[str, Any] = {
        "command": "bench/gpu_check.sh " + " ".join(args.argv),
        "device": args.device,
        "toy": args.toy,
        "budget_s": args.budget_s,
        "machine": machine(with_cuda=False),  # the parent holds no CUDA context: the rows get all the memory
        "rows": {},
    }
    for row in rows:
        left = deadline - time.monotonic()
        if left < args.min_row_s:
            entry = {"status": "skipped", "reason": f"time budget: {left:.0f} s left of {args.budget_s:.0f} s"}
        else:
            logger.info("%s (%.0f s left)", row.name, left)
            t0 = time.monotonic()
            entry = run_row_process(row, args, timeout=left)
            entry["seconds"] = round(time.monotonic() - t0, 1)
        results["rows"][row.name] = {"kind": row.kind, **entry}
        logger.info("%s: %s", row.name, entry.get("status"))
    add_utilisation(results)
    results["total_s"] = round(time.monotonic() - start, 1)
    return results


# ----------------------------------------------------------------------------------------------------------
# the rows (in the child process)
# ----------------------------------------------------------------------------------------------------------


def cuda_test_ids(root: str = os.path.join(REPO_ROOT, "tests")) -> list[str]:
    """Node ids of the tests that skip without CUDA: a ``skipif`` decorator, or a ``pytest.skip`` under an
    ``if`` in the body, whose condition reads ``torch.cuda.is_available()`` negated."""
    found = []
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            if not (name.startswith("test_") and name.endswith(".py")):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            rel = os.path.relpath(path, REPO_ROOT)
            for node in tree.body:
                if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and _needs_cuda(node):
                    found.append(f"{rel}::{node.name}")
    return sorted(found)


def _needs_cuda(fn: ast.FunctionDef) -> bool:
    def negated_cuda(test: ast.expr) -> bool:
        return (
            isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and bool(CUDA_SKIP.search(ast.unparse(test)))
        )

    for dec in fn.decorator_list:
        if isinstance(dec, ast.Call) and ast.unparse(dec.func).endswith("skipif") and dec.args:
            if negated_cuda(dec.args[0]):
                return True
    for stmt in ast.walk(fn):
        if isinstance(stmt, ast.If) and negated_cuda(stmt.test) and "skip" in ast.unparse(stmt.body[0]):
            return True
    return False


def row_tests(row: Row, device: str) -> dict[str, Any]:
    ids = cuda_test_ids()
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *ids]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    skips = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    ok = proc.returncode == 0
    return {"status": "ok" if ok else "failed", "tests": ids, "counts": counts, "summary": summary,
            "skipped": skips, **({} if ok else {"log_tail": proc.stdout[-3000:]})}  # fmt: skip


def row_nccl(row: Row, device: str) -> dict[str, Any]:
    """One torchrun process through the project's ``init_distributed_mode``: nccl on CUDA, gloo on a CPU."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="gpu_check_nccl_") as tmp:
        out = os.path.join(tmp, "worker.json")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-addr", "127.0.0.1",
               "--master-port", str(port), "-m", "bench.gpu_check", "--dist-worker", "--device", device,
               "--json-out", out]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0 or not os.path.exists(out):
            return {"status": "failed", "reason": f"torchrun exited with {proc.returncode}",
                    "log_tail": (proc.stdout + proc.stderr)[-3000:]}  # fmt: skip
        with open(out) as f:
            return {"status": "ok", **json.load(f)}


def dist_worker(device: str) -> dict[str, Any]:
    from types import SimpleNamespace

    import torch.distributed as dist

    from minigpt4.common.dist_utils import init_distributed_mode

    run_cfg = SimpleNamespace(device=device, dist_url="env://")
    init_distributed_mode(run_cfg)
    on = torch.device("cuda", run_cfg.gpu) if run_cfg.gpu is not None else torch.device("cpu")
    value = torch.full((4,), float(run_cfg.rank + 1), device=on)
    dist.all_reduce(value)
    obj = [{"from": "rank0"} if run_cfg.rank == 0 else None]
    dist.broadcast_object_list(obj, src=0)
    result = {"backend": dist.get_backend(), "world_size": run_cfg.world_size,
              "all_reduce": value.tolist(), "broadcast": obj[0]}  # fmt: skip
    expected_backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.destroy_process_group()
    if result["backend"] != expected_backend or result["all_reduce"] != [1.0] * 4 or obj[0] != {"from": "rank0"}:
        raise RuntimeError(f"unexpected collective results: {result}")
    return result


def row_peak(row: Row, device: str, toy: bool) -> dict[str, Any]:
    from bench.gpu import free_memory_gib
    from bench.peak import measure_peak

    sizes, reps = ((128,), 2) if toy else ((4096, 8192), 10)
    result: dict[str, Any] = {"status": "ok", "free_gib": free_memory_gib(device)}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        result.update(device_name=props.name, total_gib=props.total_memory / 2**30)
    result["peak"] = measure_peak(sizes, reps=reps, device=device, dtypes=("bf16", "fp16"))
    return result


def _model_overrides(row: Row, toy: bool) -> dict[str, Any]:
    from bench.gpu import PRECISIONS, STAGE1, STAGE2

    stage = STAGE1 if row.stage == "stage1" else STAGE2
    return {**PRECISIONS[row.precision][1], **stage, **(TOY_MODEL if toy else {}),
            "llm_grad_checkpoint": row.llm_grad_ckpt}  # fmt: skip


def _fit_batch(model: Any, row: Row, device: str, budget_gib: float) -> dict[str, Any]:
    """Peak memory of one step at batch 1 and 2, extrapolated: the predicted peak at ``row.batch`` and the
    largest batch within ``budget_gib``. On a CPU (no per-step peak counter) nothing is predicted."""
    from bench.gpu import STAGE1, STAGE2, stage_samples, time_training

    if not device.startswith("cuda"):
        return {"fit_batch": row.batch}
    stage = STAGE1 if row.stage == "stage1" else STAGE2
    peaks = {}
    for b in (1, 2):
        torch.cuda.reset_peak_memory_stats()
        samples = stage_samples(model, b, stage, device)
        peaks[b] = time_training(model, samples, steps=1, warmup=0, device=device, precision=row.precision)[
            "peak_mem_gib"
        ]
    per_sample = max(peaks[2] - peaks[1], 1e-3)
    base = peaks[1] - per_sample
    return {
        "probe_peak_gib": peaks,
        "predicted_peak_gib": base + per_sample * row.batch,
        "fit_batch": max(int((budget_gib - base) / per_sample), 0),
    }


def row_train(row: Row, device: str, toy: bool, tok_dir: str) -> dict[str, Any]:
    """Training steps (``train``) or the stage-2 memory at the target batch (``memory``), memory-checked."""
    from bench.flops import train_step_flops
    from bench.gpu import STAGE1, STAGE2, build_random_model, free_memory_gib, stage_samples, time_training, weights_gib
    from bench.models import model_dims, seq_len_of

    shapes = TOY_LLAMA_SHAPES if toy else LLAMA_SHAPES
    llama = shapes[row.llm]
    overrides = _model_overrides(row, toy)
    budget = free_memory_gib(device) * MEMORY_SHARE
    need = weights_gib(overrides, llama, tok_dir)
    notes = []
    if need > budget:
        if row.kind == "memory":
            return {"status": "skipped", "weights_gib": need, "budget_gib": budget,
                    "reason": f"{row.llm} weights alone need {need:.1f} GiB; {budget:.1f} GiB usable here",
                    "fits": False}  # fmt: skip
        per_layer = (need - weights_gib(overrides, _layers(llama, 0), tok_dir)) / llama.num_hidden_layers
        layers = int((budget * 0.6 - (need - per_layer * llama.num_hidden_layers)) / per_layer)
        if layers < 1:
            return {"status": "skipped", "reason": f"not even one LLM layer fits: {budget:.1f} GiB usable"}
        notes.append(f"LLM depth {llama.num_hidden_layers} -> {layers}: {need:.1f} GiB of weights > {budget:.1f}")
        llama = _layers(llama, layers)
        need = weights_gib(overrides, llama, tok_dir)
    model = build_random_model(overrides, llama, device, tok_dir)
    fit = _fit_batch(model, row, device, budget)
    batch = row.batch
    if fit["fit_batch"] < row.batch:
        if row.kind == "memory" or fit["fit_batch"] < 1:
            return {"status": "skipped", "fits": False, "weights_gib": need, "budget_gib": budget, **fit,
                    "reason": f"batch {row.batch} needs ~{fit['predicted_peak_gib']:.1f} GiB; "
                    f"{budget:.1f} usable (batch {fit['fit_batch']} fits)"}  # fmt: skip
        notes.append(f"batch {row.batch} -> {fit['fit_batch']} to fit {budget:.1f} GiB")
        batch = fit["fit_batch"]
    samples = stage_samples(model, batch, STAGE1 if row.stage == "stage1" else STAGE2, device)
    timing = time_training(model, samples, row.steps, row.warmup, device, row.precision)
    seq = seq_len_of(model, samples) + (0 if row.stage == "stage1" else 16)  # + instruction tokens (approx.)
    flops = train_step_flops(model_dims(model), batch, seq)["total"]
    median = timing["step_s"]["median_s"]
    return {
        "status": "ok" if timing["loss_finite"] else "failed",
        **({} if timing["loss_finite"] else {"reason": f"non-finite loss: {timing['losses']}"}),
        "stage": row.stage, "precision": row.precision, "llm": row.llm, "llm_layers": llama.num_hidden_layers,
        "llm_grad_ckpt": row.llm_grad_ckpt, "batch": batch, "weights_gib": need, "budget_gib": budget,
        **fit, **timing, "fits": True, "samples_per_s": batch / median, "model_flops_per_step": flops,
        "notes": notes,
    }  # fmt: skip


def _layers(llama: LlamaDims, n: int) -> LlamaDims:
    return LlamaDims(**{**asdict(llama), "num_hidden_layers": n})


def row_chat(row: Row, device: str, toy: bool, tok_dir: str) -> dict[str, Any]:
    from bench.chat_bench import conversation
    from bench.gpu import build_random_model, free_memory_gib, weights_gib
    from minigpt4.common.registry import registry

    llama = (TOY_LLAMA_SHAPES if toy else LLAMA_SHAPES)[row.llm]
    overrides = _model_overrides(row, toy)
    need, budget = weights_gib(overrides, llama, tok_dir), free_memory_gib(device) * MEMORY_SHARE
    if need > budget:
        return {"status": "skipped", "reason": f"weights need {need:.1f} GiB; {budget:.1f} GiB usable"}
    model = build_random_model(overrides, llama, device, tok_dir).eval()
    vis = registry.get_processor_class("blip2_image_eval").from_config({"image_size": model.cfg.image_size})
    turns = conversation(1, True, model, vis, row.extra["new_tokens"], device=device)
    return {"status": "ok", "llm": row.llm, "precision": row.precision, "weights_gib": need, **turns[0]}


def run_row(
    row: Row, device: str, toy: bool, tok_dir: str, inject_failure: str | None = None, inject_hang: str | None = None
) -> dict[str, Any]:
    """One row, in this process (the parent runs each in its own). The injections test the isolation."""
    if row.name == inject_failure:
        raise RuntimeError(f"failure injected into row {row.name} (--inject-failure)")
    if row.name == inject_hang:
        time.sleep(3600)
    if device.startswith("cuda") and not torch.cuda.is_available():
        return {"status": "skipped", "reason": "no CUDA device (torch.cuda.is_available() is False)"}
    torch.manual_seed(0)
    if row.kind == "tests":
        return row_tests(row, device)
    if row.kind == "nccl":
        return row_nccl(row, device)
    if row.kind == "peak":
        return row_peak(row, device, toy)
    if row.kind in ("train", "memory"):
        return row_train(row, device, toy, tok_dir)
    if row.kind == "chat":
        return row_chat(row, device, toy, tok_dir)
    raise ValueError(f"unknown row kind {row.kind!r}")


# ----------------------------------------------------------------------------------------------------------
# report and entry point
# ----------------------------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = "{:.2f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else spec.format(value)


def to_markdown(results: dict[str, Any]) -> str:
    """The table to paste into BENCHMARKS.md."""
    rows = results["rows"]
    peak = rows.get("peak", {})
    name = peak.get("device_name", results["device"])
    lines = [f"GPU check on {name} ({results['machine']['date_utc']}, {results['total_s']} s"
             f"{', toy sizes' if results['toy'] else ''}): `{results['command']}`", ""]  # fmt: skip
    if peak.get("status") == "ok":
        p = peak["peak"]
        lines += [f"Matmul peak: fp16 {p['fp16']['peak_flops'] / 1e12:.3g} TFLOP/s, bf16 "
                  f"{p['bf16']['peak_flops'] / 1e12:.3g} TFLOP/s; free memory {peak['free_gib']:.1f} GiB", ""]  # fmt: skip
    lines += [
        "| row | status | batch | samples/s | step ms | MFU | peak GiB | losses | note |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for key, r in rows.items():
        note = r.get("reason") or "; ".join(r.get("notes", []))
        if r["kind"] == "tests":
            note = r.get("summary", note)
        elif r["kind"] == "nccl" and r.get("status") == "ok":
            note = f"backend {r['backend']}, all_reduce and broadcast ok"
        elif r["kind"] == "chat" and r.get("status") == "ok":
            note = f"first token {r['ttft_s'] * 1e3:.0f} ms, {_fmt(r.get('tokens_per_s'), '{:.1f}')} tokens/s"
        elif r["kind"] == "memory" and "predicted_peak_gib" in r:
            note = (note + "; " if note else "") + f"predicted {r['predicted_peak_gib']:.1f} GiB"
        losses = r.get("losses")
        step = r.get("step_s", {}).get("median_s")
        lines.append(
            f"| {key} | {r['status']} | {r.get('batch', '-')} | {_fmt(r.get('samples_per_s'))} | "
            f"{_fmt(step * 1e3 if step else None, '{:.0f}')} | {_fmt(r.get('mfu'), '{:.1%}')} | "
            f"{_fmt(r.get('peak_mem_gib'), '{:.1f}')} | "
            f"{'-' if not losses else f'{losses[0]:.3f} -> {losses[-1]:.3f}'} | {note.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/gpu_check.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a dry run, with --toy)")
    p.add_argument("--toy", action="store_true", help="toy model sizes and one step per row (CPU dry run)")
    p.add_argument("--json", default=None, help="write the results here (default: gpu_check_<time>.json)")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="stop cleanly after this many seconds")
    p.add_argument("--only", default="", help="comma-separated row names (default: all)")
    p.add_argument("--min-row-s", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--inject-failure", default=None, help=argparse.SUPPRESS)  # dry-run tests of row isolation
    p.add_argument("--inject-hang", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--tokenizer-dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dist-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    known = {r.name for r in plan(args.toy)}
    if set(args.only) - known:
        p.error(f"--only: unknown row(s) {sorted(set(args.only) - known)}; rows: {', '.join(sorted(known))}")
    if args.min_row_s is None:
        args.min_row_s = 0.0 if args.toy else MIN_ROW_S
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logger.setLevel(logging.INFO)
    args = parse_args(argv)
    if args.dist_worker:
        result = dist_worker(args.device)
        if int(os.environ.get("RANK", "0")) == 0:
            write_json(result, args.json_out)
        return result
    if args.child:
        row = Row(**json.loads(args.child))
        result = run_row(row, args.device, args.toy, args.tokenizer_dir, args.inject_failure, args.inject_hang)
        write_json(result, args.json_out)
        return result
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        args.tokenizer_dir = os.path.join(tmp, "tokenizer")  # written by the first model row, shared by the rest
        results = run_check(args)
    path = args.json or f"gpu_check_{time.strftime('%Y%m%d_%H%M%S')}.json"
    write_json(results, path)
    sys.stdout.write(to_markdown(results))
    logger.info("wrote %s", path)
    return results


if __name__ == "__main__":
    main()
