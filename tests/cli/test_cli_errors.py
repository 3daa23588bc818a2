"""The command-line entry points: usage lines, help texts, and configuration errors as one line with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.tiny_chat import write_images

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "MINIGPT4_DEBUG"}
    full_env.update(PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=240)


def test_chat_help_names_the_module_and_the_in_chat_commands():
    result = _run(["-m", "minigpt4.cli.chat", "--help"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: python -m minigpt4.cli.chat ")
    for command in ("/image PATH", "/reset", "/quit"):
        assert command in result.stdout
    assert "--debug" in result.stdout


def test_caption_usage_names_the_module():
    result = _run(["-m", "minigpt4.cli.caption", "--help"])
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m minigpt4.cli.caption ")


@pytest.mark.parametrize(
    "entry, prog",
    [
        (["-m", "minigpt4.cli.chat", "--image", "IMAGE"], "python -m minigpt4.cli.chat"),
        (["-m", "minigpt4.cli.caption", "--images", "IMAGES", "--out", "OUT"], "python -m minigpt4.cli.caption"),
        ([str(REPO / "demo.py")], "demo.py"),
        ([str(REPO / "evaluate.py")], "evaluate.py"),
        ([str(REPO / "train.py")], "train.py"),
    ],
)
def test_config_error_is_one_line_with_exit_code_2(tmp_path, entry, prog):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("model:\n  arch: mini_gpt4\n  max_txt_len: [1\n")
    (image,) = write_images(tmp_path / "images", {"red.png": "red"})
    names = {"IMAGE": str(image), "IMAGES": str(image.parent), "OUT": str(tmp_path / "o.jsonl")}
    entry = [names.get(arg, arg) for arg in entry]
    result = _run([*entry, "--cfg-path", str(cfg)])
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{prog}: error: {cfg}:4:1: could not parse YAML") and "Traceback" not in result.stderr
    debug = _run([*entry, "--cfg-path", str(cfg), "--debug"])
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_chat_checks_every_weight_path_before_loading_the_model(tmp_path, monkeypatch):
    from minigpt4.cli import chat
    from minigpt4.common.config import ConfigError
    from minigpt4.models.mini_gpt4 import MiniGPT4

    built = []
    monkeypatch.setattr(MiniGPT4, "from_config", classmethod(lambda cls, cfg: built.append(cfg)))
    ckpt = tmp_path / "stage2.pth"
    ckpt.write_bytes(b"")
    cfg = tmp_path / "eval.yaml"
    model = f"  ckpt: {ckpt}\n  llama_model: {tmp_path}/vicuna\n  vit_path: {tmp_path}/eva_vit_g.pth\n"
    cfg.write_text("model:\n  arch: mini_gpt4\n  model_type: pretrain_vicuna0\n  q_former_model: null\n" + model)
    (image,) = write_images(tmp_path / "images", {"red.png": "red"})
    with pytest.raises(ConfigError) as err:
        chat.main(["--cfg-path", str(cfg), "--image", str(image), "--device", "cpu"])
    keys = [line.split(": ")[1] for line in str(err.value).splitlines()]
    assert keys == ["model.vit_path", "model.llama_model"] and built == []
