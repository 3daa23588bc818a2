"""The stage-1 data pipeline alone: samples/s out of the runner's training iterator, per loader worker count.

Real webdataset shards (synthetic 256-512 px JPEGs, img2dataset layout, written by :mod:`bench.shards`) go
through the project's own path: the ``laion`` builder, the ``blip2_image_train`` processor at 224 px
(random-resized crop, bicubic, normalise) and ``blip_caption``, and ``build_train_iterator`` with
``run.num_workers`` = 0, 1, 2, batch 8, exactly as the runner draws batches.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.common import loadavg
from bench.shards import write_shards


def time_iterator(cfg: Any, batches: int, warmup: int) -> dict[str, Any]:
    from minigpt4.datasets.data_utils import build_train_iterator
    from minigpt4.tasks.base_task import BaseTask

    datasets = BaseTask().build_datasets(cfg)
    it = build_train_iterator(datasets, cfg.datasets_cfg, cfg.run_cfg, device="cpu", seed=0)
    try:
        t0 = time.perf_counter()
        for _ in range(warmup):  # worker start-up, first shard opened
            next(it)
        startup = time.perf_counter() - t0
        load = loadavg()
        n, t0 = 0, time.perf_counter()
        for _ in range(batches):
            n += next(it)["image"].shape[0]
        elapsed = time.perf_counter() - t0
    finally:
        if hasattr(it, "close"):
            it.close()
    return {"samples": n, "seconds": elapsed, "samples_per_s": n / elapsed, "startup_s": startup, "loadavg": load}


def run_data(quick: bool, workdir: str, config: str = "bench_small") -> dict[str, Any]:
    from bench.models import load_config

    shard_dir = os.path.join(workdir, "shards")
    per_shard = 16 if quick else 64
    pattern = write_shards(shard_dir, num_shards=4, per_shard=per_shard, seed=0)
    batches, warmup = (2, 1) if quick else (40, 3)
    rows = []
    for workers in (0, 1, 2):
        cfg = load_config(config, workdir, shards=pattern, options=[f"run.num_workers={workers}"])
        row = time_iterator(cfg, batches, warmup)
        row["num_workers"] = workers
        row["per_worker"] = row["samples_per_s"] / max(1, workers)
        rows.append(row)
    return {
        "description": f"{config} data config: laion builder, blip2_image_train 224 px, batch "
        f"{cfg.run_cfg.batch_size_train}, 4 shards x {per_shard} JPEGs of 256-512 px, {batches} timed batches "
        f"after {warmup} warm-up; per-worker = samples/s / num_workers (the main process for 0)",
        "rows": rows,
    }
