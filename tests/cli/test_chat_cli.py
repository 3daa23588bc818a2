"""``python -m minigpt4.cli.chat``: one-shot questions and a conversation read from standard input."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minigpt4.cli import chat as chat_cli
from tests.cli.tiny_chat import write_images

REPO = Path(__file__).resolve().parents[2]
GREEDY = ["--greedy", "--max-new-tokens", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("chat_cli"), {"red.png": "red"})[0]


def _expected(cfg: Path, image: Path, turns: list[list[str]]) -> str:
    """What the CLI should print, computed with the same Chat in this process (greedy is deterministic)."""
    args = chat_cli.parse_args(["--cfg-path", str(cfg), "--image", str(image), *GREEDY])
    loaded = chat_cli.load_chat(args)
    out = io.StringIO()
    session = chat_cli.TerminalChat(loaded.chat, loaded.template, chat_cli.generation_options(args), False, out)
    for questions in turns:
        session.start(str(image))
        for question in questions:
            session.ask(question)
    return out.getvalue()


def test_one_shot_questions(tiny_eval_cfg, image):
    out = io.StringIO()
    argv = ["--cfg-path", str(tiny_eval_cfg), "--image", str(image), *GREEDY]
    code = chat_cli.main([*argv, "--question", "Describe this image.", "--question", "What colour?"], stdout=out)
    assert code == 0
    assert out.getvalue() == _expected(tiny_eval_cfg, image, [["Describe this image.", "What colour?"]])
    stream = io.StringIO()
    chat_cli.main(
        [*argv, "--stream", "--question", "Describe this image.", "--question", "What colour?"], stdout=stream
    )
    assert stream.getvalue() == out.getvalue()


def test_stdin_conversation_subprocess(tiny_eval_cfg, image, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"  # a real JPEG cut in half (PIL: "Truncated File Read")
    noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(corrupt, quality=95)
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])
    stdin = (
        f"Describe this image.\n\n/image missing.png\n/image {corrupt}\nWhat colour?\n/reset\nAgain?\n/quit\nnever\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "minigpt4.cli.chat", "--cfg-path", str(tiny_eval_cfg), "--image", str(image)]
    result = subprocess.run(
        [*command, *GREEDY], input=stdin, capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the bad /image files are reported in plain words with their paths, the conversation goes on
    assert "no such image file: missing.png" in result.stderr
    assert f"this file is not an image we can read: {corrupt} (the file is cut short or damaged)" in result.stderr
    assert "Truncated File Read" not in result.stderr
    expected = _expected(tiny_eval_cfg, image, [["Describe this image.", "What colour?"], ["Again?"]])
    assert result.stdout == expected


@pytest.mark.parametrize("kind", ["missing", "not an image"])
def test_bad_image_is_refused_before_the_model_loads(tiny_eval_cfg, tmp_path, kind):
    bad = tmp_path / "bad.png"
    if kind == "not an image":
        bad.write_bytes(b"nope")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "minigpt4.cli.chat", "--cfg-path", str(tiny_eval_cfg), "--image", str(bad)]
    result = subprocess.run(
        [*command, "--question", "hi", *GREEDY], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )
    assert result.returncode == 2 and result.stdout == ""
    if kind == "missing":
        assert f"no such image file: {bad}" in result.stderr
    else:
        assert f"this file is not an image we can read: {bad} (not a known image format)" in result.stderr
    assert " ready on " not in result.stderr, "the model was loaded before the image was checked"
