"""Datasets, their builders (registered by name) and the training iterator."""

from minigpt4.datasets import builders, data_utils, datasets
from minigpt4.datasets.data_utils import build_train_iterator

__all__ = ["build_train_iterator", "builders", "data_utils", "datasets"]
