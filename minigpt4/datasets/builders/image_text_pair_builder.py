"""Builders of the MiniGPT-4 datasets: ``laion`` and ``cc_sbu`` (one webdataset builder, configured by each
name's default YAML), ``cc_sbu_align`` (stage 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

from omegaconf import MISSING

from minigpt4.common.config import bounded, path_field
from minigpt4.common.registry import registry
from minigpt4.datasets.builders.base_builder import TRAIN_SPLIT, BaseDatasetBuilder, DatasetConfig
from minigpt4.datasets.datasets.cc_sbu_align_dataset import CCSBUAlignDataset
from minigpt4.datasets.datasets.webdataset_source import (
    DEFAULT_CAPTION_KEY,
    DEFAULT_IMAGE_KEY,
    ImageTextWebDataset,
)


@dataclass
class WebDatasetBuildInfo:
    # the train split: brace pattern(s) of tar shards, e.g. /data/laion/{00000..10488}.tar; several: a::b
    storage: str = path_field(MISSING, kind="shards")
    # other splits: {split: shard pattern}, e.g. {val: /data/laion_val/{00000..00009}.tar}
    split_storage: Dict[str, str] = path_field({}, kind="shards")


@dataclass
class WebDatasetConfig(DatasetConfig):
    build_info: WebDatasetBuildInfo = field(default_factory=WebDatasetBuildInfo)
    resampled: bool = True  # draw shards with replacement forever (published stage 1); False: epochs
    shuffle_buffer: int = bounded(1000, ge=0)  # raw samples held for shuffling (<= 1: none)
    image_key: str = DEFAULT_IMAGE_KEY  # image member extensions, the first present is used
    caption_key: str = DEFAULT_CAPTION_KEY  # caption members or JSON fields ("json:caption"), first non-empty used


@dataclass
class AlignBuildInfo:
    # the train split: folder with filter_cap.json and image/<image_id>.jpg
    storage: str = path_field(MISSING, kind="folder")
    # other splits: {split: folder of the same layout}, e.g. {val: /data/cc_sbu_align_val}
    split_storage: Dict[str, str] = path_field({}, kind="folder")
    skip_missing: bool = False  # True: drop annotations whose image is missing (logged) instead of failing


@dataclass
class CCSBUAlignConfig(DatasetConfig):
    build_info: AlignBuildInfo = field(default_factory=AlignBuildInfo)


@registry.register_builder("laion")
@registry.register_builder("cc_sbu")
class ImageTextWebDatasetBuilder(BaseDatasetBuilder):
    """Image-caption pairs from img2dataset webdataset shards: one class for every such dataset name, whose
    default YAML is ``configs/datasets/<name>/defaults.yaml``."""

    name = "webdataset"
    config_schema = WebDatasetConfig
    DATASET_CONFIG_DICT = {"default": "configs/datasets/{name}/defaults.yaml"}

    def build(self, split: str, storage: str, vis_processor: Any, text_processor: Any) -> ImageTextWebDataset:
        cfg = self.config
        return ImageTextWebDataset(
            storage=storage,
            vis_processor=vis_processor,
            text_processor=text_processor,
            resampled=cfg.resampled,
            shuffle_buffer=cfg.shuffle_buffer,
            name=self.name if split == TRAIN_SPLIT else f"{self.name}/{split}",
            image_key=cfg.image_key,
            caption_key=cfg.caption_key,
        )


@registry.register_builder("cc_sbu_align")
class CCSBUAlignBuilder(BaseDatasetBuilder):
    """The stage-2 set: ``filter_cap.json`` + ``image/`` (captions used as written)."""

    name = "cc_sbu_align"
    config_schema = CCSBUAlignConfig
    DATASET_CONFIG_DICT = {"default": "configs/datasets/cc_sbu/align.yaml"}

    def build(self, split: str, storage: str, vis_processor: Any, text_processor: Any) -> CCSBUAlignDataset:
        return CCSBUAlignDataset(
            storage=storage,
            vis_processor=vis_processor,
            text_processor=text_processor,
            skip_missing=self.config.build_info.skip_missing,
        )
