"""DDP vs FSDP on the CPU: stage-1 training under ``torchrun --nproc-per-node 2`` (gloo), step time and peak RSS
per rank.

    python -m bench.parallel_bench --assets DIR --steps 12 --json out.json
    python -m bench.parallel_bench --config tiny --steps 6            # a quick check of the harness

Each mode is one ``train.py`` run of the bench configuration (random-weight assets and JPEG shards written once
into ``--assets``) with ``run.parallelism`` set to ``ddp`` or ``fsdp`` (the frozen LLM sharded; ``--fsdp-modules``
adds the ViT and the Q-Former), ``run.iters_per_epoch`` steps, one torch thread per rank. Reported from the run's
own ``summary.json`` and ``metrics.jsonl``: the step time (global batch over the logged samples/s, mean of the
log records after ``--warmup`` steps), every rank's peak RSS (``VmHWM``) and its resident frozen-parameter bytes,
and whether the ranks ended with identical trainable weights. On a CPU the collectives of FSDP (gloo all-gathers
of every sharded layer, forward and backward) cost time that a GPU interconnect hides; the point of the row is
the memory per rank, and that the same run trains.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, loadavg, machine, write_json
from bench.models import config_path, load_config
from bench.shards import write_shards

MODES = ("ddp", "fsdp")


def run_mode(args: argparse.Namespace, mode: str, paths: list[str], out: Path) -> dict[str, Any]:
    """One torchrun job of ``mode``; its figures, or the error and the log tail."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc)]
    cmd += [os.path.join(REPO_ROOT, "train.py"), "--cfg-path", config_path(args.config), "--options", *paths]
    cmd += [
        f"run.parallelism={mode}",
        f"run.fsdp_modules=[{args.fsdp_modules}]",
        "run.max_epoch=1",
        f"run.iters_per_epoch={args.steps}",
        f"run.output_dir={out}",
        f"run.job_name={mode}",
        "run.log_freq=1",
        "run.distributed=True",
        f"run.world_size={args.nproc}",
        "run.progress_bar=False",
        "run.tensorboard=False",
        f"run.seed={args.seed}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": REPO_ROOT}
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}", "tail": (done.stdout + done.stderr)[-3000:]}
    summary = json.loads((out / mode / "summary.json").read_text())
    records = [json.loads(line) for line in (out / mode / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["samples_per_sec"] for r in records if r["kind"] == "train" and r["step"] > args.warmup]
    batch = args.batch * args.nproc
    step_s = [batch / s for s in speeds if s > 0]
    return {
        "steps": summary["global_step"],
        "global_batch": batch,
        "step_s_mean": sum(step_s) / len(step_s) if step_s else None,
        "step_s_each": step_s,
        "run_time_s": summary["time_s"],
        "rank_peak_rss_mib": summary["rank_peak_rss_mib"],
        "rank_frozen_param_mib": [b / 2**20 for b in summary["rank_frozen_param_bytes"]],
        "ranks_in_sync": summary["ranks_in_sync"],
        "final_loss": next((r["loss"] for r in reversed(records) if r["kind"] == "train"), None),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    assets = Path(args.assets or tempfile.mkdtemp(prefix="parallel_bench_"))
    shards = write_shards(str(assets / "shards"), 4, 32, seed=0)
    cfg = load_config(args.config, str(assets), shards=shards)
    args.batch = int(cfg.datasets_cfg.laion.batch_size or cfg.run_cfg.batch_size_train)
    paths = [f"model.{k}={cfg.model_cfg[k]}" for k in ("llama_model", "vit_path")]
    paths.append(f"datasets.laion.build_info.storage={shards}")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="parallel_bench_out_") as tmp:
        for mode in MODES:
            rows[mode] = run_mode(args, mode, paths, Path(tmp))
    return {
        "bench": "parallel",
        "config": args.config,
        "nproc": args.nproc,
        "threads_per_rank": args.threads,
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "fsdp_modules": args.fsdp_modules,
        "rows": rows,
        "loadavg": loadavg(),
        "machine": machine(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.parallel_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="bench_small", help="bench configuration (bench/configs): bench_small, tiny")
    p.add_argument("--assets", default=None, help="cache folder of the random-weight assets and shards")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2, help="steps left out of the step time")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--fsdp-modules", default="llama_model", help="comma-separated run.fsdp_modules for the fsdp row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=int, default=1800, help="seconds per mode")
    p.add_argument("--json", default=None, help="write the result here (default: stdout)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    write_json(run(args), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
