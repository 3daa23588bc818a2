"""Evaluate MiniGPT-4 on benchmarks (captioning, VQA, POPE) from a YAML config.

Single process::

    python evaluate.py --cfg-path eval_configs/minigpt4_eval_coco_caption.yaml --options model.ckpt=ckpt.pth

Several GPUs (or CPU processes, gloo)::

    torchrun --nproc-per-node 8 evaluate.py --cfg-path eval_configs/minigpt4_eval_vqav2.yaml

``run.task`` names the benchmark kind (``captioning``, ``vqa``, ``pope``), ``datasets`` the benchmark sets
(annotation files on disk, see ``dataset/README_EVAL.md``), ``evaluation`` the prompt and decoding, and
``model.ckpt`` the trained checkpoint. The output folder is ``run.output_dir/<run.job_name or the config file's
name>``: ``predictions.jsonl`` (one line per item: dataset, split, id, question, answer), ``metrics.json``
(``{"<dataset>/<split>": {metric: value}}``) and the logs; the metrics are also logged as a table.

Resumable: every rank appends its answers to ``predictions.rank<r>.jsonl`` as each batch finishes; items already
answered (in ``predictions.jsonl`` or any part file) are not asked again, so re-running the same command after an
interruption, with any number of ranks, finishes the job without duplicates. Rank ``r`` of ``W`` answers every
``W``-th pending item; rank 0 merges the parts in the sets' order and computes the metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("minigpt4.evaluate")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from minigpt4.common.config import add_config_args

    parser = argparse.ArgumentParser(prog="evaluate.py", description="Evaluate MiniGPT-4 on a benchmark.")
    add_config_args(parser, "path to the evaluation YAML", "model.ckpt=ckpt.pth evaluation.limit=100")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]] | None:
    """Parse arguments, evaluate, and return the metrics (on rank 0; None on the other ranks)."""
    from minigpt4.common import dist_utils
    from minigpt4.common.config import Config
    from minigpt4.common.logger import setup_logger
    from minigpt4.evaluation.runner import check_config, evaluate, output_dir

    args = parse_args(argv)
    cfg = Config(args)  # every config error surfaces here, before anything heavy is built
    task_cls = check_config(cfg)
    dist_utils.init_distributed_mode(cfg.run_cfg)
    try:
        out_dir = output_dir(cfg)
        setup_logger(output_dir=out_dir, rank=dist_utils.get_rank())
        if dist_utils.is_main_process():
            cfg.pretty_print()
        return evaluate(cfg, task_cls.setup_task(cfg), out_dir)
    finally:
        dist_utils.destroy_distributed()


def load_metrics(out_dir: str | Path) -> dict[str, Any]:
    """The ``metrics.json`` of an evaluation folder."""
    from minigpt4.evaluation.runner import METRICS

    with open(Path(out_dir) / METRICS, encoding="utf-8") as f:
        return json.load(f)


if __name__ == "__main__":
    import sys

    from minigpt4.common.config import run_entry_point

    sys.exit(run_entry_point(main, prog="evaluate.py"))
