"""Evaluation tasks of ``evaluate.py``: what to ask about each benchmark item and how to score the answers.

=============  ===================================================  =============================================
task           datasets                                             metrics
=============  ===================================================  =============================================
``captioning`` ``coco_caption``, ``nocaps``, ``flickr30k``          BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap)
``vqa``        ``vqav2``, ``okvqa`` (VQA accuracy), ``gqa`` (exact)  accuracy (and per question type when given)
``pope``       ``pope``, ``pope_random|popular|adversarial``        accuracy, precision, recall, F1, yes ratio
=============  ===================================================  =============================================

The question asked is the ``evaluation.prompt`` key (``{question}`` stands for the benchmark's question), wrapped in
the model's conversation template as the chat does; unset, it is the task's ``DEFAULT_PROMPT``. Short-answer tasks
default to a few new tokens (``DEFAULT_MAX_NEW_TOKENS``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar

from minigpt4.common.registry import registry
from minigpt4.conversation.generation import GREEDY, GenerationConfig
from minigpt4.datasets.builders.eval_builders import EvalDataset
from minigpt4.evaluation.annotations import EvalItem
from minigpt4.evaluation.captioning import caption_scores
from minigpt4.evaluation.pope import parse_yes_no, pope_scores
from minigpt4.evaluation.vqa import exact_match, vqa_accuracy
from minigpt4.tasks.base_task import BaseTask

logger = logging.getLogger(__name__)

QUESTION = "{question}"


class EvaluationTask(BaseTask):
    """A benchmark kind: the prompt per item, the decoding options, and the metrics.

    Args:
        options: the ``evaluation`` section (:class:`minigpt4.evaluation.config.EvaluationConfig`).
    """

    DEFAULT_PROMPT: ClassVar[str] = QUESTION
    DEFAULT_MAX_NEW_TOKENS: ClassVar[int] = 10
    DATASETS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Any) -> None:
        self.options = options

    @classmethod
    def setup_task(cls, cfg: Any = None) -> EvaluationTask:
        return cls(cfg.evaluation_cfg)

    def build_datasets(self, cfg: Any) -> dict[str, dict[str, EvalDataset]]:
        """``{dataset name: {split: EvalDataset}}``; every dataset must be one this task scores."""
        if len(cfg.datasets_cfg) == 0:
            raise ValueError(f"{cfg.cfg_path}: no datasets configured (add a 'datasets' section)")
        datasets = {}
        for name, dataset_cfg in cfg.datasets_cfg.items():
            if name not in self.DATASETS:
                raise ValueError(
                    f"{cfg.cfg_path}: datasets.{name}: not a dataset of task {self.name()!r} "
                    f"(its datasets: {', '.join(self.DATASETS)})"
                )
            datasets[name] = registry.get_builder_class(name)(dataset_cfg, name=name).build_datasets()
        return datasets

    @classmethod
    def name(cls) -> str:
        return next(n for n in registry.names("task") if registry.get_task_class(n) is cls)

    def prompt(self) -> str:
        return self.options.prompt if self.options.prompt is not None else self.DEFAULT_PROMPT

    def question(self, item: EvalItem) -> str:
        """The user message after the image: the prompt with the item's question in place of ``{question}``."""
        return self.prompt().replace(QUESTION, item.question or "")

    def generation_options(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`Chat.answer_batch`: ``config``, :data:`GREEDY` with the decoding keys the
        ``evaluation`` section sets, and the task's ``max_new_tokens`` where the section leaves it unset."""
        overrides = {name: self.options[name] for name in GenerationConfig.names() if self.options[name] is not None}
        overrides.setdefault("max_new_tokens", self.DEFAULT_MAX_NEW_TOKENS)
        return {"config": dataclasses.replace(GREEDY, **overrides)}

    def score(self, items: Sequence[EvalItem], answers: Sequence[str], dataset: EvalDataset) -> dict[str, float]:
        """The metrics of ``answers[i]`` to ``items[i]``."""
        raise NotImplementedError


@registry.register_task("captioning")
class CaptioningTask(EvaluationTask):
    """COCO-style captioning, scored by the official COCO caption evaluation."""

    DEFAULT_PROMPT = "Describe this image in one short sentence."
    DEFAULT_MAX_NEW_TOKENS = 30
    DATASETS = ("coco_caption", "nocaps", "flickr30k")

    def score(self, items: Sequence[EvalItem], answers: Sequence[str], dataset: EvalDataset) -> dict[str, float]:
        predictions = {item.item_id: answer for item, answer in zip(items, answers)}
        references = {item.item_id: list(item.references) for item in items}
        return caption_scores(predictions, references, spice=self.options.spice)


@registry.register_task("vqa")
class VQATask(EvaluationTask):
    """Short answers: VQA accuracy (VQAv2, OK-VQA) or exact match after normalisation (GQA)."""

    DEFAULT_PROMPT = "{question} Answer the question using a single word or phrase."
    DEFAULT_MAX_NEW_TOKENS = 10
    DATASETS = ("vqav2", "okvqa", "gqa")

    def score(self, items: Sequence[EvalItem], answers: Sequence[str], dataset: EvalDataset) -> dict[str, float]:
        if dataset.metric == "exact_match":
            scores = [exact_match(answer, item.references[0]) for item, answer in zip(items, answers)]
        else:
            scores = [vqa_accuracy(answer, item.references) for item, answer in zip(items, answers)]
        metrics = {"accuracy": sum(scores) / len(scores)}
        by_type: dict[str, list[float]] = defaultdict(list)
        for item, value in zip(items, scores):
            if item.extra.get("question_type"):
                by_type[item.extra["question_type"]].append(value)
        for kind, values in sorted(by_type.items()):
            metrics[f"accuracy/{kind}"] = sum(values) / len(values)
        return metrics


@registry.register_task("pope")
class POPETask(EvaluationTask):
    """POPE yes/no object probing; answers parsed as POPE does (a no/not in the first sentence is "no")."""

    DEFAULT_PROMPT = QUESTION
    DEFAULT_MAX_NEW_TOKENS = 10
    DATASETS = ("pope", "pope_random", "pope_popular", "pope_adversarial")

    def score(self, items: Sequence[EvalItem], answers: Sequence[str], dataset: EvalDataset) -> dict[str, float]:
        return pope_scores([parse_yes_no(a) for a in answers], [item.references[0] for item in items])
