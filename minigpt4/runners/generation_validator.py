"""Validation by a generation metric: the model being trained answers a small benchmark split, scored as
``evaluate.py`` scores it (CIDEr, VQA accuracy, POPE F1), so ``run.best_metric`` can pick ``checkpoint_best.pth``
by what the model says rather than by its loss.

``run.valid_generation`` names an evaluation YAML, the file ``evaluate.py`` reads: its ``run.task``
(``captioning``, ``vqa``, ``pope``), its ``datasets`` (the annotation files) and its ``evaluation`` section (prompt,
decoding, ``limit`` to answer only the first N items of each set). Its ``model`` section is not used: the model is
the one being trained, asked through :class:`~minigpt4.conversation.conversation.Chat` with the training config's
conversation template and eval image processor, exactly as ``evaluate.py`` asks a saved checkpoint. Validation
runs at the end of every epoch, next to the loss validation of ``run.valid_splits`` (either may be set alone).

The metrics are ``<dataset>/<split>/<metric>``, e.g. ``coco_caption/test/CIDEr`` with ``run.best_metric`` set to
it and ``run.best_mode: max``. Rank ``r`` of ``W`` answers every ``W``-th item; the answers are gathered on rank 0,
scored there, and the metrics broadcast, so every rank agrees on whether the checkpoint is the best. Nothing is
written to disk but the metrics (``metrics.jsonl``, like every validation).

The validator has no state of its own.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from minigpt4.common.config import Config, ConfigError
from minigpt4.common.registry import registry
from minigpt4.conversation.conversation import Chat, template_for
from minigpt4.evaluation.runner import answer_batch, evaluation_task_class, list_pending, score_answers

logger = logging.getLogger(__name__)


class GenerationValidator:
    """Answers and scores the sets of one evaluation YAML with the model being trained.

    Args:
        eval_cfg_path: the evaluation YAML (``run.valid_generation``).
        train_cfg: the training job's :class:`~minigpt4.common.config.Config` (its model's conversation template,
            its ``preprocess.vis_processor.eval``).
        device: where the images go.
        autocast: the runner's autocast context (the training precision).
        rank, world_size: this process's place in the job.

    Raises:
        ConfigError: the YAML is not an evaluation config, or its sets cannot be read (naming the file).
    """

    def __init__(
        self,
        eval_cfg_path: str,
        train_cfg: Config,
        device: torch.device,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        eval_cfg = Config.load(eval_cfg_path)
        self.task = evaluation_task_class(eval_cfg).setup_task(eval_cfg)
        self.datasets = self.task.build_datasets(eval_cfg)
        self.items = list_pending(self.datasets, self.task.options.limit)
        if not self.items:
            raise ConfigError(f"run.valid_generation={eval_cfg_path}: its datasets have no items")
        self.source = eval_cfg_path
        self.batch_size = int(eval_cfg.run_cfg.batch_size_eval)
        self.template = template_for(train_cfg.model_cfg)
        self.vis_processor = self._vis_processor(train_cfg, eval_cfg)
        self.device, self.autocast = device, autocast
        self.rank, self.world_size = rank, world_size

    @staticmethod
    def _vis_processor(train_cfg: Config, eval_cfg: Config) -> Any:
        """The training config's eval image processor (the model's own preprocessing), else the YAML's."""
        for cfg in (train_cfg, eval_cfg):
            vis = cfg.preprocess_cfg.get("vis_processor") or {}
            if vis.get("eval") is not None:
                return registry.get_processor_class(vis.eval.name).from_config(vis.eval)
        raise ConfigError(
            f"run.valid_generation: neither {train_cfg.cfg_path} nor {eval_cfg.cfg_path} sets "
            "preprocess.vis_processor.eval (the image processor the answers are asked with)"
        )

    def keys(self) -> list[str]:
        """``<dataset>/<split>`` of every set; the metrics are ``<dataset>/<split>/<metric>``."""
        return [f"{name}/{split}" for name, splits in self.datasets.items() for split in splits]

    def describe(self) -> str:
        return f"{self.task.name()} on {', '.join(self.keys())} ({len(self.items)} items, {self.source})"

    def run(self, model: nn.Module) -> dict[str, float]:
        """The metrics of ``model`` (every rank takes part; every rank returns the same values)."""
        was_training = model.training
        model.eval()
        chat = Chat(model, self.vis_processor, device=self.device, reuse_cache=False)
        mine = self.items[self.rank :: self.world_size]
        records: list[dict] = []
        try:
            with torch.no_grad(), self.autocast():
                for start in range(0, len(mine), self.batch_size):
                    records += answer_batch(chat, self.template, self.task, mine[start : start + self.batch_size])
        finally:
            model.train(was_training)
        if self.world_size > 1:
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, records)
            records = [r for part in gathered for r in part]
        flat: dict[str, float] = {}
        if self.rank == 0:
            answers = {(r["dataset"], r["split"], r["id"]): r["answer"] for r in records}
            metrics = score_answers(self.task, self.datasets, self.items, answers, f"validation by {self.source}")
            flat = {
                f"{key}/{name}": float(value)
                for key, values in metrics.items()
                for name, value in values.items()
                if isinstance(value, (int, float))
            }
        if self.world_size > 1:
            box = [flat]
            dist.broadcast_object_list(box, src=0)
            flat = box[0]
        return flat
