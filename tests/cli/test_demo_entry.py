"""``demo.py`` is thin and import-safe; its options and their defaults."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from minigpt4.cli import web

REPO = Path(__file__).resolve().parents[2]


def test_import_loads_nothing():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('demo', {str(REPO / 'demo.py')!r})\n"
        "demo = importlib.util.module_from_spec(spec); spec.loader.exec_module(demo)\n"
        "assert callable(demo.main)\n"
        "heavy = [m for m in ('gradio', 'torch', 'transformers', 'minigpt4') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_defaults_are_local_and_private():
    args = web.parse_args(["--cfg-path", "x.yaml"])
    assert (args.host, args.port, args.share, args.concurrency) == ("127.0.0.1", 7860, False, 1)
    assert args.device is None and args.gpu_id == 0 and args.options is None
    args = web.parse_args(["--cfg-path", "x.yaml", "--options", "model.ckpt=a", "run.seed=1", "--share"])
    assert args.options == ["model.ckpt=a", "run.seed=1"] and args.share


def test_main_help(capsys):
    spec = importlib.util.spec_from_file_location("demo_entry", REPO / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--help"])
    assert exit_info.value.code == 0
    assert "--cfg-path" in capsys.readouterr().out


def test_missing_checkpoint_is_refused(tmp_path):
    from minigpt4.cli.common import load_chat

    cfg = tmp_path / "no_ckpt.yaml"
    paths = "  llama_model: x\n  vit_path: y\n  q_former_model: z\n"
    cfg.write_text("model:\n  arch: mini_gpt4\n  model_type: pretrain_vicuna0\n  ckpt: null\n" + paths)
    with pytest.raises(SystemExit, match="model.ckpt"):
        load_chat(web.parse_args(["--cfg-path", str(cfg)]))
