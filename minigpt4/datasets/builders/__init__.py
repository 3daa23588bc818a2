"""Dataset builders, registered by dataset name (``laion``, ``cc_sbu``, ``cc_sbu_align``)."""

from minigpt4.datasets.builders.base_builder import BaseDatasetBuilder, DatasetConfig
from minigpt4.datasets.builders.image_text_pair_builder import (
    CCSBUAlignBuilder,
    CCSBUBuilder,
    ImageTextWebDatasetBuilder,
    LaionBuilder,
)

__all__ = [
    "BaseDatasetBuilder",
    "CCSBUAlignBuilder",
    "CCSBUBuilder",
    "DatasetConfig",
    "ImageTextWebDatasetBuilder",
    "LaionBuilder",
]
