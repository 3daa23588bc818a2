"""The stage-1 data pipeline alone: samples/s out of the runner's training iterator, per loader worker count.

Real webdataset shards (synthetic 256-512 px JPEGs, img2dataset layout, written by :mod:`bench.shards`) go
through the project's own path: the ``laion`` builder, the ``blip2_image_train`` processor at 224 px
(random-resized crop, bicubic, normalise) and ``blip_caption``, and ``build_train_iterator`` with
``run.num_workers`` = 0, 1, 2, batch 8, exactly as the runner draws batches.

Each worker count is measured with the reader built on the webdataset library (``rows``) and with the previous
hand-written ``tarfile`` reader (:mod:`bench.legacy_reader`, ``legacy_rows``) on the same shards, interleaved
(old, new, old, new, ...) so that a change in the machine's load hits both alike; ``comparison`` gives the ratio
of their mean samples/s.  ``python -m bench.data_bench`` runs this section alone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import random
import time
from typing import Any

from bench.common import loadavg
from bench.shards import write_shards

logger = logging.getLogger(__name__)


READERS = ("legacy", "webdataset")


def with_legacy_reader(datasets: dict[str, Any]) -> dict[str, Any]:
    """The same datasets with every webdataset source read by the previous reader (same shards and settings)."""
    from bench.legacy_reader import LegacyImageTextWebDataset
    from minigpt4.datasets.datasets.webdataset_source import ImageTextWebDataset

    def swap(ds: Any) -> Any:
        if not isinstance(ds, ImageTextWebDataset):
            return ds
        return LegacyImageTextWebDataset(
            ds.shards, ds.vis_processor, ds.text_processor, ds.resampled, ds.shuffle_buffer, ds.name
        )

    return {n: ({k: swap(d) for k, d in v.items()} if isinstance(v, dict) else swap(v)) for n, v in datasets.items()}


def time_reader(cfg: Any, reader: str, batches: int, warmup: int) -> dict[str, Any]:
    from minigpt4.tasks.base_task import BaseTask

    datasets = BaseTask().build_datasets(cfg)
    if reader == "legacy":
        datasets = with_legacy_reader(datasets)
    return time_datasets(datasets, cfg, batches, warmup)


def time_datasets(datasets: dict[str, Any], cfg: Any, batches: int, warmup: int) -> dict[str, Any]:
    from minigpt4.datasets.data_utils import build_train_iterator

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
        it.close()
    return {"samples": n, "seconds": elapsed, "samples_per_s": n / elapsed, "startup_s": startup, "loadavg": load}


def cpu_rates(cfg: Any, reader: str, raw: int, decoded: int) -> dict[str, Any]:
    """Load-independent figures of one stream in this process: raw samples (shard reading, grouping, shuffle
    buffer) and fully decoded samples (image decode + processors) per second of process CPU time."""
    from minigpt4.datasets.datasets.common import BadSampleCounter
    from minigpt4.tasks.base_task import BaseTask

    datasets = BaseTask().build_datasets(cfg)
    if reader == "legacy":
        datasets = with_legacy_reader(datasets)
    ds = datasets["laion"]["train"] if isinstance(datasets["laion"], dict) else datasets["laion"]
    if reader == "legacy":
        from bench.legacy_reader import shuffle_buffer

        stream = ds._tar_samples(0, 1, BadSampleCounter("bench"), lambda: False)
        samples = shuffle_buffer(stream, ds.shuffle_buffer, random.Random(0))
    else:
        samples = ds.raw_samples(0, 1, BadSampleCounter("bench"))
    t0 = time.process_time()
    n = sum(1 for _ in itertools.islice(samples, raw))
    raw_rate = n / (time.process_time() - t0)
    it = iter(ds)
    next(it)  # the shuffle buffer filled
    t0 = time.process_time()
    m = sum(1 for _ in itertools.islice(it, decoded))
    return {"reader": reader, "raw_per_cpu_s": raw_rate, "decoded_per_cpu_s": m / (time.process_time() - t0)}


def _mean_row(runs: list[dict[str, Any]], reader: str, workers: int) -> dict[str, Any]:
    rate = sum(r["samples_per_s"] for r in runs) / len(runs)
    return {
        "reader": reader,
        "num_workers": workers,
        "samples_per_s": rate,
        "per_worker": rate / max(1, workers),
        "rounds": [round(r["samples_per_s"], 1) for r in runs],
        "loadavg": [r["loadavg"] for r in runs],
        "startup_s": sum(r["startup_s"] for r in runs) / len(runs),
    }


def run_data(
    quick: bool, workdir: str, config: str = "bench_small", rounds: int = 2, workers: tuple[int, ...] = (0, 1, 2)
) -> dict[str, Any]:
    from bench.models import load_config

    shard_dir = os.path.join(workdir, "shards")
    per_shard = 16 if quick else 64
    pattern = write_shards(shard_dir, num_shards=4, per_shard=per_shard, seed=0)
    batches, warmup = (2, 1) if quick else (40, 3)
    rounds = 1 if quick else rounds
    rows, legacy_rows, comparison = [], [], []
    for n in workers:
        cfg = load_config(config, workdir, shards=pattern, options=[f"run.num_workers={n}"])
        runs: dict[str, list[dict[str, Any]]] = {r: [] for r in READERS}
        for _ in range(rounds):
            for reader in READERS:  # interleaved: old, new, old, new
                runs[reader].append(time_reader(cfg, reader, batches, warmup))
                logger.info("data %s, %d workers: %.1f samples/s", reader, n, runs[reader][-1]["samples_per_s"])
        new, old = _mean_row(runs["webdataset"], "webdataset", n), _mean_row(runs["legacy"], "legacy", n)
        rows.append(new)
        legacy_rows.append(old)
        comparison.append({"num_workers": n, "ratio": new["samples_per_s"] / old["samples_per_s"]})
    cpu = []
    for _ in range(rounds):
        for reader in READERS:
            cpu.append(cpu_rates(cfg, reader, raw=200 if quick else 3000, decoded=10 if quick else 150))
    return {
        "cpu": cpu,
        "description": f"{config} data config: laion builder, blip2_image_train 224 px, batch "
        f"{cfg.run_cfg.batch_size_train}, 4 shards x {per_shard} JPEGs of 256-512 px, {batches} timed batches "
        f"after {warmup} warm-up; webdataset reader vs the previous tarfile reader, {rounds} interleaved rounds "
        "each (mean shown); per-worker = samples/s / num_workers (the main process for 0)",
        "rows": rows,
        "legacy_rows": legacy_rows,
        "comparison": comparison,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", default="bench_assets", help="folder for the shards and the tiny assets")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per reader and worker count")
    parser.add_argument("--workers", default="0,1,2", help="loader worker counts, comma-separated")
    parser.add_argument("--quick", action="store_true", help="a few small batches (checks the harness)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of this (the main) process")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("minigpt4").setLevel(logging.WARNING)
    workdir = os.path.abspath(args.assets)
    os.makedirs(workdir, exist_ok=True)
    workers = tuple(int(w) for w in args.workers.split(","))
    result = run_data(args.quick, workdir, rounds=args.rounds, workers=workers)
    result["loadavg_end"] = loadavg()
    result["threads"] = args.threads
    for old, new, cmp in zip(result["legacy_rows"], result["rows"], result["comparison"]):
        logger.info(
            "%d workers: webdataset %.1f %s vs legacy %.1f %s samples/s = %.2fx",
            new["num_workers"],
            new["samples_per_s"],
            new["rounds"],
            old["samples_per_s"],
            old["rounds"],
            cmp["ratio"],
        )
    for row in result["cpu"]:
        logger.info(
            "%s, one stream, per CPU second: %.0f raw samples, %.1f decoded samples",
            row["reader"],
            row["raw_per_cpu_s"],
            row["decoded_per_cpu_s"],
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
