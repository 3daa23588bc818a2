"""Dataset builders: one validated ``datasets.<name>`` section -> processors -> ``{split: dataset}``.

Splits: ``splits`` lists the splits to build (``[train]`` unless set). Each split reads its own storage: the
``train`` split reads ``build_info.storage`` (the published key), any other split the path given for it in
``build_info.split_storage`` (``{val: /data/val_folder}``; a ``train`` entry there overrides ``storage``), and
each split needs its own ``vis_processor`` and ``text_processor`` entry. A split without a storage or processors
is an error naming the dataset and the split: it never silently reads the training data.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from minigpt4.common.config import bounded
from minigpt4.common.registry import registry
from minigpt4.processors.base_processor import BaseProcessor

logger = logging.getLogger(__name__)

TRAIN_SPLIT = "train"


@dataclass
class DatasetConfig:
    """Keys every ``datasets.<name>`` section has (builders extend it with their ``build_info``)."""

    type: str = "default"  # which default YAML of DATASET_CONFIG_DICT to start from
    data_type: str = "images"  # read by nothing: kept so that LAVIS-style dataset YAMLs (which all set it) validate
    vis_processor: Dict[str, Any] = field(default_factory=dict)  # {split: {name: ..., **params}}
    text_processor: Dict[str, Any] = field(default_factory=dict)
    sample_ratio: float = bounded(1.0, gt=0)  # relative probability that a training batch comes from this dataset
    batch_size: Optional[int] = bounded(None, gt=0)  # None: run.batch_size_train
    splits: List[str] = field(default_factory=lambda: [TRAIN_SPLIT])


def split_storage(build_info: Any, split: str) -> str | None:
    """The storage of ``split``: ``build_info.split_storage[split]``, else ``build_info.storage`` for ``train``."""
    per_split = build_info.get("split_storage") or {}
    if split in per_split:
        return per_split[split]
    return build_info.get("storage") if split == TRAIN_SPLIT else None


class BaseDatasetBuilder:
    """Builds the datasets of one section.

    Subclasses set ``config_schema`` (a dataclass extending :class:`DatasetConfig`), ``DATASET_CONFIG_DICT``
    (``{type: path relative to the minigpt4 package}``; ``{name}`` in it is the dataset name, so that one builder
    class can serve several registered names) and implement :meth:`build`. ``name`` is the default dataset name
    (the one a builder of several datasets uses in its logs when built without ``name=``).

    Args:
        cfg: the section, already validated by :class:`~minigpt4.common.config.Config` or a plain mapping
            (validated here); None loads the default YAML (its required paths must then be set elsewhere).
        name: the dataset name (the registry name the section is under); defaults to the class's ``name``.
    """

    name: ClassVar[str] = ""
    config_schema: ClassVar[type] = DatasetConfig
    DATASET_CONFIG_DICT: ClassVar[dict[str, str]] = {}

    def __init__(self, cfg: DictConfig | dict[str, Any] | None = None, name: str | None = None) -> None:
        self.name = name or type(self).name
        if cfg is None:
            cfg = self.default_config(name=self.name)
        self.config: DictConfig = OmegaConf.merge(OmegaConf.structured(self.config_schema), cfg)

    @classmethod
    def default_config_path(cls, type: str = "default", name: str | None = None) -> str:  # noqa: A002 (LAVIS name)
        return os.path.join(
            registry.get_path("library_root"), cls.DATASET_CONFIG_DICT[type].format(name=name or cls.name)
        )

    @classmethod
    def default_config(cls, type: str = "default", name: str | None = None) -> DictConfig:  # noqa: A002
        name = name or cls.name
        return OmegaConf.load(cls.default_config_path(type, name)).datasets[name]

    @classmethod
    def check_splits(cls, cfg: Any, prefix: str) -> None:
        """Every split in ``splits`` has a storage and both processors.

        Raises:
            ValueError: naming the dataset (``prefix``, e.g. ``datasets.cc_sbu_align``), the split and the key to set.
        """
        for split in cfg.splits:
            if not split_storage(cfg.build_info, split):
                raise ValueError(
                    f"{prefix}: split {split!r} has no storage: set {prefix}.build_info.split_storage.{split} "
                    f"(build_info.storage is the {TRAIN_SPLIT!r} split's)"
                )
            for section in ("vis_processor", "text_processor"):
                if split not in cfg[section]:
                    raise ValueError(
                        f"{prefix}: split {split!r} has no {section}: set {prefix}.{section}.{split} "
                        f"(e.g. {{name: {'blip2_image_eval' if section == 'vis_processor' else 'blip_caption'}}})"
                    )

    def build_processors(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``({split: vis_processor}, {split: text_processor})``."""

        def build(section: Any) -> dict[str, Any]:
            return {split: registry.get_processor_class(proc.name).from_config(proc) for split, proc in section.items()}

        return build(self.config.vis_processor), build(self.config.text_processor)

    def build_datasets(self) -> dict[str, Any]:
        """``{split: dataset}`` for every split in ``splits``, each from its own storage.

        Raises:
            ValueError: a split without a storage or processors (see :meth:`check_splits`).
        """
        self.check_splits(self.config, f"datasets.{self.name}")
        vis, text = self.build_processors()
        datasets = {}
        for split in self.config.splits:
            storage = split_storage(self.config.build_info, split)
            datasets[split] = self.build(
                split, storage, vis.get(split, BaseProcessor()), text.get(split, BaseProcessor())
            )
            logger.info("%s: built split %r from %s", self.name, split, storage)
        return datasets

    def build(self, split: str, storage: str, vis_processor: Any, text_processor: Any) -> Any:
        """The dataset of ``split``, read from ``storage``."""
        raise NotImplementedError
