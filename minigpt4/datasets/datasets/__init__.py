"""Dataset classes: webdataset image-text streams (stage 1) and the ``cc_sbu_align`` folder (stage 2)."""

from minigpt4.datasets.datasets.cc_sbu_align_dataset import CCSBUAlignDataset
from minigpt4.datasets.datasets.webdataset_source import ImageTextWebDataset, expand_shards

__all__ = ["CCSBUAlignDataset", "ImageTextWebDataset", "expand_shards"]
