"""Datasets, their builders (registered by name) and the training iterator."""

from minigpt4.datasets import builders, data_utils, datasets

__all__ = ["builders", "data_utils", "datasets"]
