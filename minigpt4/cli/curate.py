"""Make a stage-2 set the way MiniGPT-4's ``cc_sbu_align`` was made, one step at a time, from one YAML:

    python -m minigpt4.cli.curate generate --cfg-path curate_configs/curate_paper.yaml
    python -m minigpt4.cli.curate refine --cfg-path curate_configs/curate_paper.yaml
    python -m minigpt4.cli.curate filter --cfg-path curate_configs/curate_paper.yaml
    python -m minigpt4.cli.curate review --cfg-path curate_configs/curate_paper.yaml     # the review page
    python -m minigpt4.cli.curate review accept-passed --cfg-path curate_configs/curate_paper.yaml  # or no review
    python -m minigpt4.cli.curate export --cfg-path curate_configs/curate_paper.yaml [--overwrite]
    python -m minigpt4.cli.curate status --cfg-path curate_configs/curate_paper.yaml

Every step reads and appends to the JSONL store (``store`` in the YAML) and can be stopped and run again.
``generate`` runs sharded under torchrun: ``torchrun --nproc-per-node 4 -m minigpt4.cli.curate generate --cfg-path ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from minigpt4.common.config import add_debug_argument

logger = logging.getLogger(__name__)

PROG = "python -m minigpt4.cli.curate"
STEPS = ("generate", "refine", "filter", "review", "export", "status")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Make a stage-2 (cc_sbu_align) set, step by step")
    parser.add_argument("--cfg-path", required=True, help="the curation YAML, e.g. curate_configs/curate_paper.yaml")
    parser.add_argument("--options", nargs="+", default=None, help="override config values: key=value (dotted keys)")
    add_debug_argument(parser)
    parser.add_argument("step", choices=STEPS)
    parser.add_argument(
        "action", nargs="?", default=None, help="review: accept-passed (without it: serve the review page)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="review page: address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7861, help="review page: port (default 7861)")
    parser.add_argument("--overwrite", action="store_true", help="export: replace an existing folder")
    return parser.parse_args(argv)


def _generate(cfg: Any, source: str) -> dict[str, Any]:
    import torch

    from minigpt4.common.dist_utils import barrier, destroy_distributed, init_distributed_mode
    from minigpt4.curation.generate import run_generate
    from minigpt4.curation.store import Store, part_path

    dist_cfg = SimpleNamespace(device="cuda" if torch.cuda.is_available() else "cpu", dist_url="env://")
    init_distributed_mode(dist_cfg)
    rank, world = dist_cfg.rank, dist_cfg.world_size
    if cfg.generate.device is None and dist_cfg.gpu is not None:
        cfg.generate.device = f"cuda:{dist_cfg.gpu}"
    try:
        if rank == 0:
            Store(cfg.store).merge_parts()  # what an interrupted sharded run left
        barrier()
        store = Store(cfg.store, write_to=part_path(Path(cfg.store), rank) if world > 1 else None)
        report = run_generate(cfg, store, source, rank, world)
        store.close()
        barrier()
        if rank == 0 and world > 1:
            Store(cfg.store).merge_parts()
    finally:
        destroy_distributed()
    return asdict(report)


def run_step(args: argparse.Namespace) -> dict[str, Any]:
    """Run one step; returns its report (also logged as JSON)."""
    from minigpt4.curation.config import load_curate_config, require
    from minigpt4.curation.store import Store

    cfg = load_curate_config(args.cfg_path, args.options)
    require(cfg, "store", source=args.cfg_path)
    if args.step == "generate":
        require(cfg, "generate.model_cfg", source=args.cfg_path)
        return _generate(cfg, args.cfg_path)
    store = Store(cfg.store)
    if args.step == "refine":
        from minigpt4.curation.refine import run_refine

        report = run_refine(cfg, store)
        return {**asdict(report)}
    if args.step == "filter":
        from minigpt4.curation.filters import run_filter

        return asdict(run_filter(cfg, store))
    if args.step == "review":
        return _review(cfg, store, args)
    if args.step == "export":
        from minigpt4.curation.export import run_export

        require(cfg, "export.folder", source=args.cfg_path)
        overwrite = args.overwrite or cfg.export.overwrite
        return asdict(run_export(store, cfg.export.folder, overwrite, cfg.export.jpeg_quality))
    from minigpt4.curation.review import counts

    return {"records": len(store), **counts(store)}


def _review(cfg: Any, store: Any, args: argparse.Namespace) -> dict[str, Any]:
    from minigpt4.common.config import ConfigError
    from minigpt4.curation import review

    if args.action == "accept-passed":
        return asdict(review.accept_passed(store))
    if args.action is None:
        from minigpt4.curation.review_page import serve

        serve(store, args.host, args.port)
        return review.counts(store)
    raise ConfigError(f"review: the action is accept-passed, or none to serve the review page (got {args.action!r})")


def main(argv: list[str] | None = None) -> int:
    from minigpt4.common.logger import setup_logger

    args = parse_args(argv)
    setup_logger()
    report = run_step(args)
    logger.info("%s: %s", args.step, json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    from minigpt4.common.config import run_entry_point

    sys.exit(run_entry_point(main, prog=PROG))
