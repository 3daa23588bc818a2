"""``python -m minigpt4.cli.chat``: one-shot questions and a conversation read from standard input."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    stdin = "Describe this image.\n\n/image missing.png\nWhat colour?\n/reset\nAgain?\n/quit\nnever asked\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "minigpt4.cli.chat", "--cfg-path", str(tiny_eval_cfg), "--image", str(image)]
    result = subprocess.run(
        [*command, *GREEDY], input=stdin, capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "missing.png" in result.stderr  # the bad /image is reported, the conversation goes on
    expected = _expected(tiny_eval_cfg, image, [["Describe this image.", "What colour?"], ["Again?"]])
    assert result.stdout == expected


def test_unreadable_image_fails_cleanly(tiny_eval_cfg, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    out = io.StringIO()
    argv = ["--cfg-path", str(tiny_eval_cfg), "--image", str(bad), "--question", "hi", *GREEDY]
    assert chat_cli.main(argv, stdout=out) == 2
    assert out.getvalue() == ""
