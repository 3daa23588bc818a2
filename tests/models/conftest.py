"""Shared fixtures of the model tests: tiny assets in the released formats, built once per session."""

from __future__ import annotations

import os

import pytest

from tests.models.builders import build_assets, tiny_model_cfg


@pytest.fixture(scope="session", autouse=True)
def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """{llama_model, vit_path, q_former_model, prompt_path}: HF folder + eva_vit-style .pth + BLIP-2-style .pth."""
    return build_assets(str(tmp_path_factory.mktemp("tiny_model_assets")))


@pytest.fixture(scope="session")
def tiny_model(tiny_assets: dict[str, str]):
    """A tiny Q-Former MiniGPT-4 built through ``from_config`` (shared: tests must not change its weights)."""
    from minigpt4.models import MiniGPT4

    return MiniGPT4.from_config(tiny_model_cfg(tiny_assets))
