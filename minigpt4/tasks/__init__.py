"""Tasks: the training step and loss, and how models and datasets are built from a config."""

from __future__ import annotations

from typing import Any

from minigpt4.common.registry import registry
from minigpt4.tasks.base_task import BaseTask
from minigpt4.tasks.evaluation_tasks import CaptioningTask, EvaluationTask, POPETask, VQATask
from minigpt4.tasks.image_text_pretrain import ImageTextPretrainTask


def setup_task(cfg: Any) -> BaseTask:
    """The task named by ``run.task``."""
    return registry.get_task_class(cfg.run_cfg.task).setup_task(cfg=cfg)


__all__ = [
    "BaseTask",
    "CaptioningTask",
    "EvaluationTask",
    "ImageTextPretrainTask",
    "POPETask",
    "VQATask",
    "setup_task",
]
