"""The evaluation loop of ``evaluate.py``: shard the pending items across ranks, answer them in batches through
:meth:`Chat.answer_batch`, append each rank's answers to its part file, merge on rank 0, score, report."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt4.common import dist_utils
from minigpt4.common.config import Config, ConfigError
from minigpt4.common.jsonl_shards import append_in_batches, done_records, merge_parts, part_path
from minigpt4.common.registry import RegistryError, registry
from minigpt4.conversation.batch import ask_batch
from minigpt4.conversation.conversation import Chat, Conversation, template_for
from minigpt4.datasets.builders.eval_builders import EvalDataset
from minigpt4.evaluation.annotations import AnnotationError, EvalItem
from minigpt4.tasks.evaluation_tasks import EvaluationTask

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"


@dataclass(frozen=True)
class Pending:
    """One item of one benchmark set, with its place in the output."""

    dataset: str
    split: str
    item: EvalItem

    @property
    def key(self) -> tuple[str, str, str]:
        return self.dataset, self.split, self.item.item_id


def record_key(record: dict) -> tuple[str, str, str]:
    return str(record["dataset"]), str(record["split"]), str(record["id"])


def check_config(cfg: Config) -> type[EvaluationTask]:
    """The evaluation task class of ``run.task``; a training task or an unset ``model.ckpt`` fails here."""
    task_cls = evaluation_task_class(cfg)
    if not cfg.model_cfg.ckpt:
        raise ConfigError(
            f"{cfg.cfg_path}: model.ckpt is not set: give the trained MiniGPT-4 checkpoint in the config or with "
            "--options model.ckpt=PATH (without it the image projection is untrained)"
        )
    return task_cls


def evaluation_task_class(cfg: Config) -> type[EvaluationTask]:
    """The evaluation task class of ``run.task``; a training task fails here, naming the evaluation tasks."""
    try:
        task_cls = registry.get_task_class(cfg.run_cfg.task)
    except RegistryError as err:
        raise ConfigError(f"{cfg.cfg_path}: run.task: {err}") from None
    if not (isinstance(task_cls, type) and issubclass(task_cls, EvaluationTask)):
        known = [n for n in registry.names("task") if issubclass(registry.get_task_class(n), EvaluationTask)]
        raise ConfigError(
            f"{cfg.cfg_path}: run.task {cfg.run_cfg.task!r} is not an evaluation task (known: {', '.join(known)})"
        )
    return task_cls


def output_dir(cfg: Config) -> Path:
    """``run.output_dir/<run.job_name or the config file's name>`` (stable, so a re-run resumes)."""
    run = cfg.run_cfg
    return Path(run.output_dir) / (run.job_name or Path(cfg.cfg_path).stem)


def build_chat(cfg: Config, task: EvaluationTask) -> Chat:
    """The model (``model.ckpt`` loaded) on this rank's device, in eval mode, behind a :class:`Chat`."""
    run = cfg.run_cfg
    device = torch.device(f"cuda:{run.gpu}" if run.gpu is not None else "cpu")
    model = task.build_model(cfg)
    if not cfg.model_cfg.low_resource:  # an 8-bit LLM is already placed by its device map
        model = model.to(device)
    model.eval()
    vis_cfg = cfg.preprocess_cfg.vis_processor.eval
    vis_processor = registry.get_processor_class(vis_cfg.name).from_config(vis_cfg)
    return Chat(model, vis_processor, device=device, reuse_cache=False)


def list_pending(datasets: dict[str, dict[str, EvalDataset]], limit: int | None) -> list[Pending]:
    """Every item of every set, in order (the first ``limit`` of each set when set)."""
    return [
        Pending(name, split, item)
        for name, splits in datasets.items()
        for split, dataset in splits.items()
        for item in dataset.items[:limit]
    ]


def answer_batch(chat: Chat, template: Conversation, task: EvaluationTask, batch: Sequence[Pending]) -> list[dict]:
    """The records of one batch. An unreadable image fails naming the set, the item and the file."""
    images = []
    for entry in batch:
        try:
            images.append(chat.load_image(entry.item.image))
        except (OSError, ValueError, SyntaxError) as err:
            raise AnnotationError(
                f"{entry.dataset}/{entry.split}: item {entry.item.item_id}: cannot read image {entry.item.image}: {err}"
            ) from err
    questions = [task.question(entry.item) for entry in batch]
    answers = ask_batch(chat, template, images, questions, **task.generation_options())
    return [
        {"dataset": e.dataset, "split": e.split, "id": e.item.item_id, "question": q, "answer": a}
        for e, q, a in zip(batch, questions, answers)
    ]


def run_share(
    chat: Chat,
    template: Conversation,
    task: EvaluationTask,
    pending: Sequence[Pending],
    out: Path,
    batch_size: int,
    progress: bool,
) -> int:
    """Answer this rank's share of ``pending`` (every rank passes the same list) into its part file."""
    rank, world_size = dist_utils.get_rank(), dist_utils.get_world_size()
    mine = pending[rank::world_size]
    return append_in_batches(
        part_path(out, rank),
        mine,
        batch_size,
        lambda batch: answer_batch(chat, template, task, batch),
        desc="evaluate",
        show_progress=rank == 0 and progress,
        durable=True,
    )


def score_all(
    task: EvaluationTask, datasets: dict[str, dict[str, EvalDataset]], items: Sequence[Pending], out: Path
) -> dict[str, dict[str, float]]:
    """``{"<dataset>/<split>": metrics}`` from the merged predictions."""
    answers = {record_key(r): str(r["answer"]) for r in done_records(out)}
    return score_answers(task, datasets, items, answers, str(out))


def score_answers(
    task: EvaluationTask,
    datasets: dict[str, dict[str, EvalDataset]],
    items: Sequence[Pending],
    answers: dict[tuple[str, str, str], str],
    where: str,
) -> dict[str, dict[str, float]]:
    """``{"<dataset>/<split>": metrics}`` of ``answers`` (keyed by :attr:`Pending.key`); ``where`` names the source
    of the answers in the error for an item without one."""
    metrics = {}
    for name, splits in datasets.items():
        for split, dataset in splits.items():
            mine = [p for p in items if p.dataset == name and p.split == split]
            missing = [p.key for p in mine if p.key not in answers]
            if missing:
                raise RuntimeError(f"{where}: {len(missing)} items have no prediction, e.g. {missing[0]}")
            scores = task.score([p.item for p in mine], [answers[p.key] for p in mine], dataset)
            metrics[f"{name}/{split}"] = {**scores, "items": len(mine), "skipped_missing_images": dataset.skipped}
    return metrics


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """The metrics as a text table: one row per set, one column per metric."""
    columns = list(dict.fromkeys(k for m in metrics.values() for k in m))
    width = max([len("set"), *map(len, metrics)])
    lines = [f"{'set':<{width}}  " + "  ".join(f"{c:>10}" for c in columns)]
    for name, values in metrics.items():
        cells = []
        for column in columns:
            value = values.get(column)
            cells.append(
                f"{'-':>10}" if value is None else f"{value:>10.4f}" if isinstance(value, float) else f"{value:>10}"
            )
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def evaluate(cfg: Config, task: EvaluationTask, out_dir: Path) -> dict[str, dict[str, float]] | None:
    """Answer every pending item, merge, score. Returns the metrics on rank 0, None elsewhere."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / PREDICTIONS
    datasets = task.build_datasets(cfg)
    items = list_pending(datasets, task.options.limit)
    done = {record_key(r) for r in done_records(out)}
    pending = [p for p in items if p.key not in done]
    logger.info("%d items, %d already answered, %d to answer", len(items), len(items) - len(pending), len(pending))
    dist_utils.barrier()  # every rank has the same pending list before anyone writes
    if pending:
        chat = build_chat(cfg, task)
        template = template_for(cfg.model_cfg)
        run_share(chat, template, task, pending, out, cfg.run_cfg.batch_size_eval, task.options.progress_bar)
    dist_utils.barrier()
    metrics = None
    if dist_utils.is_main_process():
        order = {p.key: i for i, p in enumerate(items)}
        logger.info("%d predictions in %s", merge_parts(out, record_key, order), out)
        metrics = score_all(task, datasets, items, out)
        with open(out_dir / METRICS, "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=1)
        logger.info("metrics (%s):\n%s", out_dir / METRICS, format_table(metrics))
    dist_utils.barrier()
    return metrics
