"""Builders of the MiniGPT-4 datasets: ``laion`` and ``cc_sbu`` (webdataset shards), ``cc_sbu_align`` (stage 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from minigpt4.common.registry import registry
from minigpt4.datasets.builders.base_builder import BaseDatasetBuilder, DatasetConfig
from minigpt4.datasets.datasets.cc_sbu_align_dataset import CCSBUAlignDataset
from minigpt4.datasets.datasets.webdataset_source import ImageTextWebDataset


@dataclass
class WebDatasetBuildInfo:
    storage: str = MISSING  # brace pattern(s) of tar shards, e.g. /data/laion/{00000..10488}.tar; several: a::b


@dataclass
class WebDatasetConfig(DatasetConfig):
    build_info: WebDatasetBuildInfo = field(default_factory=WebDatasetBuildInfo)
    resampled: bool = True  # draw shards with replacement forever (published stage 1); False: epochs
    shuffle_buffer: int = 1000  # raw samples held for shuffling (<= 1: none)


@dataclass
class AlignBuildInfo:
    storage: str = MISSING  # folder with filter_cap.json and image/<image_id>.jpg
    skip_missing: bool = False  # True: drop annotations whose image is missing (logged) instead of failing


@dataclass
class CCSBUAlignConfig(DatasetConfig):
    build_info: AlignBuildInfo = field(default_factory=AlignBuildInfo)


class ImageTextWebDatasetBuilder(BaseDatasetBuilder):
    """Image-caption pairs from img2dataset webdataset shards; subclasses only name the dataset and its YAML."""

    config_schema = WebDatasetConfig

    def build(self, split: str, vis_processor: Any, text_processor: Any) -> ImageTextWebDataset:
        cfg = self.config
        return ImageTextWebDataset(
            storage=cfg.build_info.storage,
            vis_processor=vis_processor,
            text_processor=text_processor,
            resampled=cfg.resampled,
            shuffle_buffer=cfg.shuffle_buffer,
            name=self.name,
        )


@registry.register_builder("laion")
class LaionBuilder(ImageTextWebDatasetBuilder):
    name = "laion"
    DATASET_CONFIG_DICT = {"default": "configs/datasets/laion/defaults.yaml"}


@registry.register_builder("cc_sbu")
class CCSBUBuilder(ImageTextWebDatasetBuilder):
    name = "cc_sbu"
    DATASET_CONFIG_DICT = {"default": "configs/datasets/cc_sbu/defaults.yaml"}


@registry.register_builder("cc_sbu_align")
class CCSBUAlignBuilder(BaseDatasetBuilder):
    """The stage-2 set: ``filter_cap.json`` + ``image/`` (captions used as written)."""

    name = "cc_sbu_align"
    config_schema = CCSBUAlignConfig
    DATASET_CONFIG_DICT = {"default": "configs/datasets/cc_sbu/align.yaml"}

    def build(self, split: str, vis_processor: Any, text_processor: Any) -> CCSBUAlignDataset:
        info = self.config.build_info
        return CCSBUAlignDataset(
            storage=info.storage,
            vis_processor=vis_processor,
            text_processor=text_processor,
            skip_missing=info.skip_missing,
        )
