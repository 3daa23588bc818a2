"""Builders of the evaluation benchmarks, read from their published annotation files (never downloaded).

=============================  ==========================================================================
``coco_caption``, ``nocaps``,  captions: ``build_info.annotations`` in the COCO caption format or Karpathy's
``flickr30k``                  split format (``karpathy_split`` picks the split), images under ``images``
``vqav2``, ``okvqa``           ``build_info.questions`` + ``build_info.annotations`` (VQAv2 format); the image
                               file name is ``image_name`` formatted with ``image_id``
``gqa``                        ``build_info.annotations``: the GQA questions file; images ``<imageId>.jpg``
``pope``, ``pope_random``,     ``build_info.annotations``: a POPE JSON-lines file (one section per setting)
``pope_popular``,
``pope_adversarial``
=============================  ==========================================================================

``dataset/README_EVAL.md`` says where to get each set and how to lay it out. An item whose image file is missing
fails the build naming the file and the item, unless ``skip_missing_images`` is set: then it is left out, and the
count is logged and reported with the metrics.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from torch.utils.data import Dataset

from minigpt4.common.registry import registry
from minigpt4.datasets.builders.base_builder import BaseDatasetBuilder, DatasetConfig
from minigpt4.evaluation.annotations import (
    AnnotationError,
    EvalItem,
    check_unique,
    read_captions,
    read_gqa,
    read_pope,
    read_vqa,
)

logger = logging.getLogger(__name__)


@dataclass
class EvalBuildInfo:
    annotations: str = MISSING  # the annotation file (captions; VQA answers; GQA questions; POPE lines)
    images: str = MISSING  # the image folder
    questions: Optional[str] = None  # VQAv2 / OK-VQA: the questions file
    image_name: str = "COCO_val2014_{image_id:012d}.jpg"  # VQAv2 / OK-VQA: the image file of an image_id
    karpathy_split: str = "test"  # Karpathy-format caption files: the split to evaluate


@dataclass
class EvalDatasetConfig(DatasetConfig):
    build_info: EvalBuildInfo = field(default_factory=EvalBuildInfo)
    splits: List[str] = field(default_factory=lambda: ["test"])
    skip_missing_images: bool = False  # True: leave out (and count) items whose image file is missing


class EvalDataset(Dataset):
    """The items of one benchmark split (images are opened by the evaluation, not here).

    Args:
        items: the items, in the annotation file's order.
        name: the dataset name (for logs and records).
        source: the annotation file(s), quoted in errors.
        skipped: how many items were left out for a missing image.
        metric: how the task scores it, when a task has several ways (``exact_match`` for GQA).
    """

    def __init__(
        self, items: list[EvalItem], name: str, source: str, skipped: int = 0, metric: str = "default"
    ) -> None:
        self.items = items
        self.name = name
        self.source = source
        self.skipped = skipped
        self.metric = metric

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> EvalItem:
        return self.items[index]


def drop_missing_images(items: list[EvalItem], source: str, skip: bool) -> tuple[list[EvalItem], int]:
    """``items`` whose image exists; a missing one raises (naming file and item) unless ``skip``."""
    kept = [item for item in items if os.path.isfile(item.image)]
    missing = [item for item in items if not os.path.isfile(item.image)]
    if missing and not skip:
        first = missing[0]
        raise AnnotationError(
            f"{source}: item {first.item_id}: image file not found: {first.image} ({len(missing)} of {len(items)} "
            "images are missing; set skip_missing_images: True to evaluate without them)"
        )
    if missing:
        logger.warning("%s: %d of %d items skipped: image file missing", source, len(missing), len(items))
    return kept, len(missing)


class EvalBenchmarkBuilder(BaseDatasetBuilder):
    """Reads one benchmark's annotation file(s) into an :class:`EvalDataset` per configured split."""

    config_schema = EvalDatasetConfig
    metric: ClassVar[str] = "default"

    def __init__(self, cfg: DictConfig | dict[str, Any] | None = None, name: str | None = None) -> None:
        if cfg is None:
            raise ValueError(f"{type(self).__name__}: an evaluation dataset needs its build_info paths")
        self.name = name or type(self).name
        self.config: DictConfig = OmegaConf.merge(OmegaConf.structured(self.config_schema), cfg)

    @classmethod
    def check_splits(cls, cfg: Any, prefix: str) -> None:
        """Every split reads the one annotation file of ``build_info`` (nothing to check per split)."""
        del cfg, prefix

    def source(self) -> str:
        info = self.config.build_info
        return f"{info.questions} + {info.annotations}" if info.questions else str(info.annotations)

    def build_datasets(self) -> dict[str, EvalDataset]:
        items = self.read(self.config.build_info)
        check_unique(items, self.source())
        items, skipped = drop_missing_images(items, self.source(), self.config.skip_missing_images)
        datasets = {}
        for split in self.config.splits:
            datasets[split] = EvalDataset(items, self.name, self.source(), skipped, self.metric)
            logger.info("%s/%s: %d items from %s", self.name, split, len(items), self.source())
        return datasets

    def read(self, info: Any) -> list[EvalItem]:
        raise NotImplementedError


@registry.register_builder("coco_caption")
class CaptionEvalBuilder(EvalBenchmarkBuilder):
    """COCO (Karpathy test), NoCaps, Flickr30k: caption references per image."""

    name = "coco_caption"

    def read(self, info: Any) -> list[EvalItem]:
        return read_captions(info.annotations, info.images, info.karpathy_split)


@registry.register_builder("vqav2")
class VQAEvalBuilder(EvalBenchmarkBuilder):
    """VQAv2 and OK-VQA: questions with ten human answers."""

    name = "vqav2"

    def read(self, info: Any) -> list[EvalItem]:
        if not info.questions:
            raise AnnotationError(f"datasets.{self.name}.build_info.questions: the VQA questions file is not set")
        return read_vqa(info.questions, info.annotations, info.images, info.image_name)


@registry.register_builder("gqa")
class GQAEvalBuilder(EvalBenchmarkBuilder):
    name = "gqa"
    metric = "exact_match"

    def read(self, info: Any) -> list[EvalItem]:
        return read_gqa(info.annotations, info.images)


@registry.register_builder("pope")
class POPEEvalBuilder(EvalBenchmarkBuilder):
    name = "pope"

    def read(self, info: Any) -> list[EvalItem]:
        return read_pope(info.annotations, info.images)


# the same formats under the other benchmarks' names
registry.register_builder("nocaps")(CaptionEvalBuilder)
registry.register_builder("flickr30k")(CaptionEvalBuilder)
registry.register_builder("okvqa")(VQAEvalBuilder)
for _setting in ("random", "popular", "adversarial"):
    registry.register_builder(f"pope_{_setting}")(POPEEvalBuilder)
