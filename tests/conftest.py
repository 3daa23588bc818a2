"""Shared fixtures: the tiny world, built once per test session, and the browser of the page tests.

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


BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium (``apt-get install chromium``, as ``.ci/run`` does) driven by Playwright, headless: the
    browser of the demo and review page tests. Fails, naming the package, when chromium is missing."""
    import shutil

    from playwright import sync_api

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("the browser tests need the chromium executable: apt-get install chromium (as .ci/run does)")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        yield launched
        launched.close()
