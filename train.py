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
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

logger = logging.getLogger("minigpt4.train")


EPILOG = """\
useful run keys (set them in the YAML or with --options):
  run.job_name=NAME      the run folder is run.output_dir/NAME (default: a timestamp, new for every start)
  run.auto_resume=True   continue from the newest complete checkpoint in the run folder, if any
                         (needs run.job_name, so that a restart finds the same folder)
  run.resume_ckpt_path=P resume everything (weights, optimizer, schedule, RNG, data position) from P
  run.output_dir=DIR     where run folders go (default: output)

what a run writes, in run.output_dir/<job name or timestamp>/:
  config.yaml                      the merged configuration
  checkpoint_<epoch>.pth           at every epoch end (checkpoint_step<N>.pth every run.save_freq steps)
  checkpoint_best.pth              the lowest validation loss on run.valid_splits, when set
  metrics.jsonl, tensorboard/      loss, LR, samples/s every run.log_freq steps
  log.txt, log_rank<r>.txt         the logs
  summary.json                     steps, time, samples/s, where the checkpoints are

errors in the configuration (a key, a value out of range, a path that does not exist) are reported before
anything is built, as one line naming the key and the file; the exit code is 2. --debug (or MINIGPT4_DEBUG=1)
shows the traceback.
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from minigpt4.common.config import add_config_args

    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train MiniGPT-4 (stage 1 or stage 2) from a YAML config, in one process or under torchrun.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(parser, "path to the training YAML", "run.init_lr=1e-4 run.max_epoch=1")
    return parser.parse_args(argv)


def setup_seeds(seed: int) -> None:
    """Seed Python, NumPy and torch (every rank calls this with ``run.seed + rank``)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, build everything from the config and train. Returns the runner's summary."""
    from minigpt4.common import dist_utils
    from minigpt4.common.config import Config, ConfigError
    from minigpt4.common.preflight import check_or_raise
    from minigpt4.runners.runner_base import check_run_config

    args = parse_args(argv)
    cfg = Config(args)  # every config error surfaces here, before anything heavy is built
    run_cfg = cfg.run_cfg
    try:
        check_run_config(run_cfg)  # cross-key checks, also before anything is built
    except ValueError as err:
        raise ConfigError(f"{args.cfg_path}: {err}") from None
    cfg.check_paths()  # every model and data path, still before anything is built
    check_or_raise(cfg)  # the pre-flight check: weights, tokenizer, checkpoint, data, memory (headers only)
    dist_utils.init_distributed_mode(run_cfg)
    try:
        summary = _train(cfg)
        _log_summary(summary)
        return summary
    finally:
        # _train's runner, model and DDP wrapper are gone by now, so the process group is not still held by them
        # while the interpreter shuts down (see dist_utils.destroy_distributed)
        dist_utils.destroy_distributed()


def _train(cfg: Any) -> dict[str, Any]:
    """Build the task, datasets, model and runner of ``cfg`` on this rank and train; the runner's summary."""
    from minigpt4.common import dist_utils
    from minigpt4.common.logger import setup_logger
    from minigpt4.common.registry import registry
    from minigpt4.runners.runner_base import job_id_from_config
    from minigpt4.tasks import setup_task

    run_cfg = cfg.run_cfg
    job_id = job_id_from_config(run_cfg)
    rank = dist_utils.get_rank()
    setup_logger(output_dir=f"{run_cfg.output_dir}/{job_id}", rank=rank)
    setup_seeds(int(run_cfg.seed) + rank)
    if dist_utils.is_main_process():
        cfg.pretty_print()

    task = setup_task(cfg)
    datasets = task.build_datasets(cfg)
    model = task.build_model(cfg)
    runner = registry.get_runner_class(run_cfg.runner)(
        cfg=cfg, task=task, model=model, datasets=datasets, job_id=job_id
    )
    return runner.train()


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
    from minigpt4.common.config import run_entry_point

    sys.exit(run_entry_point(main, prog="train.py"))
