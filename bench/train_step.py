"""One training-step benchmark in its own process (peak memory is then this configuration's own).

    python -m bench.train_step --config bench_small --precision bf16 --steps 8 --assets DIR --json-out out.json

The step is the real one: ``task.train_step(model, samples)`` (the model's forward and loss) under the runner's
autocast choice (``torch.autocast("cpu", dtype=torch.bfloat16)`` for bf16), ``loss.backward()``, and AdamW on
the trainable parameters with the runner's parameter groups. The same batch (random pixels, synthetic captions
of 10-19 words) is used every step so that shapes, and so timings, are comparable between configurations.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
from typing import Any

import torch

from bench.common import loadavg, maxrss_mib, rss_mib, summarize, write_json
from bench.flops import train_step_flops
from bench.models import build_model, head_rows, make_samples, model_dims, seq_len_of

logger = logging.getLogger("bench.train_step")


def build_optimizer(model: torch.nn.Module, lr: float = 1e-4, weight_decay: float = 0.05) -> torch.optim.Optimizer:
    """AdamW as ``RunnerBase.build_optimizer`` makes it: weight decay on >= 2-d weights only."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.999))


def autocast(precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def loss_fn(model: torch.nn.Module, cfg: Any) -> Any:
    """The configured task's ``train_step`` (what the runner calls inside its autocast)."""
    from minigpt4.common.registry import registry

    task = registry.get_task_class(cfg.run_cfg.task).setup_task(cfg)
    return lambda samples: task.train_step(model, samples)


def count_flops(step: Any) -> int:
    """FLOPs of one step as torch's FlopCounterMode sees them (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    if args.precision == "auto":  # bf16 only where the CPU computes it natively, as run.amp_dtype: auto
        from minigpt4.runners.precision import native_bf16

        native, why = native_bf16("cpu")
        args.precision = "bf16" if native else "fp32"
        logger.info("--precision auto: %s (%s)", args.precision, why)
    if args.compile:  # a fresh inductor cache: the first step then shows the real compilation time
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_inductor_")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, cfg = build_model(args.config, args.assets, llm_grad_ckpt=args.llm_grad_ckpt, options=args.set)
    model.train()
    build_s = time.perf_counter() - t0
    rss_built, maxrss_built = rss_mib(), maxrss_mib()

    samples = make_samples(model, args.batch or cfg.run_cfg.batch_size_train, seed=0)
    optimizer = build_optimizer(model)
    forward = loss_fn(model, cfg)
    if args.compile == "model":
        forward = torch.compile(forward)
    elif args.compile == "networks":  # what run.compile does: the ViT, Q-Former and LLM decoder; glue stays eager
        model.compile_networks()

    def step() -> float:
        with autocast(args.precision):
            loss = forward(samples)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    t0 = time.perf_counter()
    first_loss = step()
    first_step_s = time.perf_counter() - t0  # includes compilation with --compile
    for _ in range(args.warmup - 1):
        step()
    load_before = loadavg()
    times, cpu_times = [], []
    for _ in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        last_loss = step()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    load_after = loadavg()

    batch = samples["image"].shape[0]
    seq_len = seq_len_of(model, samples)
    flops = train_step_flops(model_dims(model), batch, seq_len, head_rows(model, samples))
    stats = summarize(times)
    result = {
        "name": args.config,
        "variant": args.precision
        + (f"+compile_{args.compile}" if args.compile else "")
        + ("+llm_grad_ckpt" if args.llm_grad_ckpt else "")
        + "".join(f"+{o.split('.')[-1]}" for o in args.set),
        "precision": args.precision,
        "batch": batch,
        "llm_seq_len": seq_len,
        "steps": args.steps,
        "build_s": build_s,
        "first_step_s": first_step_s,
        "step_s": stats,
        "samples_per_s": batch / stats["median_s"],
        "cpu_s_per_step": summarize(cpu_times),  # process CPU time: less sensitive to other load than wall time
        "flops": flops,
        "achieved_flops": flops["total"] / stats["median_s"],
        "loss_first_last": [first_loss, last_loss],
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "memory": {
            "rss_after_build_mib": rss_built,
            "maxrss_after_build_mib": maxrss_built,
            "peak_rss_mib": maxrss_mib(),
            "train_delta_mib": maxrss_mib() - rss_built,
        },
        "loadavg": load_before,
        "loadavg_after": load_after,
        "torch_threads": torch.get_num_threads(),
    }
    if not args.compile:
        result["flops_counted_by_torch"] = count_flops(lambda: step())
    return result


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    p = argparse.ArgumentParser(prog="python -m bench.train_step")
    p.add_argument("--config", required=True, help="tiny or bench_small")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "auto"),
        default="fp32",
        help="auto: bf16 where the CPU runs it natively",
    )
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--compile",
        choices=("model", "networks"),
        default=None,
        help="torch.compile the whole step, or the networks (as run.compile does)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--llm-grad-ckpt", action="store_true")
    p.add_argument("--set", action="append", default=[], help="config option key=value (repeatable)")
    p.add_argument("--assets", required=True)
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    args.warmup = max(args.warmup, 1)
    write_json(run(args), args.json_out)


if __name__ == "__main__":
    main()
