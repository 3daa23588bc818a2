"""``image_text_pretrain``: the task of both MiniGPT-4 stages (image -> caption / answer language modelling)."""

from __future__ import annotations

from minigpt4.common.registry import registry
from minigpt4.tasks.base_task import BaseTask


@registry.register_task("image_text_pretrain")
class ImageTextPretrainTask(BaseTask):
    """The loss is the model's own: mean cross-entropy over the answer tokens of the batch."""
