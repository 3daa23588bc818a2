"""Train MiniGPT-4 (stage 1 or stage 2) from a YAML config.

Single process::

    python train.py --cfg-path train_configs/minigpt4_stage1_pretrain.yaml

Several GPUs (or CPU processes, gloo)::

    torchrun --nproc-per-node 8 train.py --cfg-path train_configs/minigpt4_stage1_pretrain.yaml \\
        --options run.batch_size_train=32 model.llama_model=/path/to/vicuna

The run folder is ``run.output_dir/<run.job_name or a timestamp>``; it holds ``config.yaml``, checkpoints,
``metrics.jsonl``, ``tensorboard/``, the logs and ``summary.json``. Restart an interrupted run with the same
command plus ``--options run.auto_resume=True`` (needs ``run.job_name``).
"""

from __future__ import annotations

import argparse
import logging
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

logger = logging.getLogger("minigpt4.train")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train MiniGPT-4.")
    parser.add_argument("--cfg-path", required=True, help="path to the training YAML")
    parser.add_argument(
        "--options",
        nargs="+",
        default=None,
        help="override config values: dotted key=value pairs, e.g. run.init_lr=1e-4 run.max_epoch=1",
    )
    return parser.parse_args(argv)


def setup_seeds(seed: int) -> None:
    """Seed Python, NumPy and torch (every rank calls this with ``run.seed + rank``)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, build everything from the config and train. Returns the runner's summary."""
    from minigpt4.common import dist_utils
    from minigpt4.common.config import Config
    from minigpt4.common.logger import setup_logger
    from minigpt4.common.registry import registry
    from minigpt4.runners.runner_base import check_run_config, job_id_from_config
    from minigpt4.tasks import setup_task

    args = parse_args(argv)
    cfg = Config(args)  # every config error surfaces here, before anything heavy is built
    run_cfg = cfg.run_cfg
    check_run_config(run_cfg)  # cross-key checks, also before anything is built
    dist_utils.init_distributed_mode(run_cfg)
    try:
        job_id = job_id_from_config(run_cfg)
        rank = dist_utils.get_rank()
        run_dir = f"{run_cfg.output_dir}/{job_id}"
        setup_logger(output_dir=run_dir, rank=rank)
        setup_seeds(int(run_cfg.seed) + rank)
        if dist_utils.is_main_process():
            cfg.pretty_print()

        task = setup_task(cfg)
        datasets = task.build_datasets(cfg)
        model = task.build_model(cfg)
        runner = registry.get_runner_class(run_cfg.runner)(
            cfg=cfg, task=task, model=model, datasets=datasets, job_id=job_id
        )
        summary = runner.train()
        _log_summary(summary)
        return summary
    finally:
        dist_utils.destroy_distributed()


def _log_summary(summary: dict[str, Any]) -> None:
    if "evaluation" in summary:
        logger.info("evaluation results: %s (run folder %s)", summary["evaluation"], summary["run_dir"])
        return
    logger.info(
        "done: %d steps (%d in this run) in %.1f s, %.1f samples/s; %d non-finite steps skipped; bad samples %s",
        summary["global_step"],
        summary["steps_this_run"],
        summary["time_s"],
        summary["samples_per_sec"],
        summary["nonfinite_skipped"],
        summary["bad_samples"] or "none",
    )
    logger.info(
        "run folder %s: last checkpoint %s, best checkpoint %s",
        summary["run_dir"],
        summary["last_checkpoint"],
        summary["best_checkpoint"],
    )


if __name__ == "__main__":
    main()
