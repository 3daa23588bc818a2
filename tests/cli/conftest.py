"""Fixtures of the entry-point tests: a tiny eval config (model, checkpoint, processors) built once."""

from __future__ import annotations

import os

import pytest

from tests.cli.tiny_chat import write_tiny_eval_config


@pytest.fixture(scope="session")
def tiny_eval_cfg(tmp_path_factory: pytest.TempPathFactory):
    os.environ["HF_HUB_OFFLINE"] = "1"
    return write_tiny_eval_config(tmp_path_factory.mktemp("tiny_eval"))
