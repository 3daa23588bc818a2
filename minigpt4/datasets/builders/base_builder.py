"""Dataset builders: one validated ``datasets.<name>`` section -> processors -> ``{split: dataset}``."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from minigpt4.common.registry import registry
from minigpt4.processors.base_processor import BaseProcessor

logger = logging.getLogger(__name__)


@dataclass
class DatasetConfig:
    """Keys every ``datasets.<name>`` section has (builders extend it with their ``build_info``)."""

    type: str = "default"  # which default YAML of DATASET_CONFIG_DICT to start from
    data_type: str = "images"
    vis_processor: Dict[str, Any] = field(default_factory=dict)  # {split: {name: ..., **params}}
    text_processor: Dict[str, Any] = field(default_factory=dict)
    sample_ratio: float = 1.0  # relative probability that a training batch comes from this dataset
    batch_size: Optional[int] = None  # None: run.batch_size_train
    splits: List[str] = field(default_factory=lambda: ["train"])


class BaseDatasetBuilder:
    """Builds the datasets of one section.

    Subclasses set ``name``, ``config_schema`` (a dataclass extending :class:`DatasetConfig`),
    ``DATASET_CONFIG_DICT`` (``{type: path relative to the minigpt4 package}``) and implement :meth:`build`.

    Args:
        cfg: the section, already validated by :class:`~minigpt4.common.config.Config` or a plain mapping
            (validated here); None loads the default YAML (its required paths must then be set elsewhere).
    """

    name: ClassVar[str] = ""
    config_schema: ClassVar[type] = DatasetConfig
    DATASET_CONFIG_DICT: ClassVar[dict[str, str]] = {}

    def __init__(self, cfg: DictConfig | dict[str, Any] | None = None) -> None:
        if cfg is None:
            cfg = self.default_config()
        self.config: DictConfig = OmegaConf.merge(OmegaConf.structured(self.config_schema), cfg)

    @classmethod
    def default_config_path(cls, type: str = "default") -> str:  # noqa: A002 (LAVIS name)
        return os.path.join(registry.get_path("library_root"), cls.DATASET_CONFIG_DICT[type])

    @classmethod
    def default_config(cls, type: str = "default") -> DictConfig:  # noqa: A002
        return OmegaConf.load(cls.default_config_path(type)).datasets[cls.name]

    def build_processors(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``({split: vis_processor}, {split: text_processor})``; a split without one gets the identity."""

        def build(section: Any) -> dict[str, Any]:
            return {split: registry.get_processor_class(proc.name).from_config(proc) for split, proc in section.items()}

        return build(self.config.vis_processor), build(self.config.text_processor)

    def build_datasets(self) -> dict[str, Any]:
        """``{split: dataset}`` for every split in ``splits``."""
        vis, text = self.build_processors()
        datasets = {}
        for split in self.config.splits:
            datasets[split] = self.build(split, vis.get(split, BaseProcessor()), text.get(split, BaseProcessor()))
            logger.info("%s: built split %r", self.name, split)
        return datasets

    def build(self, split: str, vis_processor: Any, text_processor: Any) -> Any:
        raise NotImplementedError
