"""Dataset builders, registered by dataset name: ``laion`` and ``cc_sbu`` (one webdataset builder), ``cc_sbu_align``;
the evaluation benchmarks in :mod:`~minigpt4.datasets.builders.eval_builders`."""

from minigpt4.datasets.builders.base_builder import BaseDatasetBuilder, DatasetConfig
from minigpt4.datasets.builders.eval_builders import EvalBenchmarkBuilder
from minigpt4.datasets.builders.image_text_pair_builder import CCSBUAlignBuilder, ImageTextWebDatasetBuilder

__all__ = [
    "BaseDatasetBuilder",
    "CCSBUAlignBuilder",
    "DatasetConfig",
    "EvalBenchmarkBuilder",
    "ImageTextWebDatasetBuilder",
]
