"""Shared fixtures: the tiny world, built once per test session.

``tiny_world`` is the path of a small tiny world (``python -m minigpt4.tiny.build --small``): stage-1 shards,
``cc_sbu_align``, held-out images, a sentencepiece tokenizer, a pretrained tiny LLaMA and pretrained tiny towers.
It is built under the session's pytest temporary folder, or, when ``MINIGPT4_TINY_WORLD`` names a folder, there
(kept between sessions: a complete world of the same seed and size is reused as it is).
"""

from __future__ import annotations

import os

import pytest

TINY_WORLD_ENV = "MINIGPT4_TINY_WORLD"
TINY_WORLD_SEED = 0


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> str:
    import torch

    from minigpt4.tiny.build import build

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = os.environ.get(TINY_WORLD_ENV) or str(tmp_path_factory.mktemp("tiny") / "tiny_world")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the builder's default: the same world on every machine
    try:
        build(out, seed=TINY_WORLD_SEED, small=True)
    finally:
        torch.set_num_threads(threads)
    return out
